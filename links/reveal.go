package links

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net/http"
	"strings"

	"github.com/ferry-matrix/ferry/store"
)

// RevealPath is where one-time secret links point.
const RevealPath = "/reveal/"

// NewRevealToken returns a fresh unguessable token for a one-time link.
func NewRevealToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// RevealHandler serves one-time secret links (/reveal/<token>): a GET
// shows a page with a button and reveals nothing, so link previews and
// scanners can't use the link up; the POST that button sends returns the
// secret and deletes it. A used, expired or unknown token gets 410 Gone.
// Every reveal and refusal is in the audit log (without the secret).
type RevealHandler struct {
	Store *store.Store
}

func (h *RevealHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.URL.Path, RevealPath)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>Ferry: your key</title>
<p>This link shows your key <b>once</b>. Save it in a file before you leave the page; it can't be shown again.</p>
<form method="post" action="%s"><button>Show my key</button></form>`, html.EscapeString(RevealPath+token))
		return
	case http.MethodPost:
	default:
		http.Error(w, "only GET and POST", http.StatusMethodNotAllowed)
		return
	}
	secret, purpose, err := h.Store.RevealSecret(r.Context(), token)
	entry := store.AuditEntry{Actor: "link", Via: "reveal " + r.RemoteAddr, Action: "secret.reveal", Target: purpose, Outcome: "ok"}
	if err != nil {
		entry.Outcome, entry.Detail = "refused", err.Error()
		h.Store.Audit(r.Context(), entry)
		status := http.StatusGone
		if !errors.Is(err, store.ErrGone) {
			status = http.StatusInternalServerError
		}
		http.Error(w, fmt.Sprintf("%d: %v. Ask for a new export (!mydata) to get a new key.", status, err), status)
		return
	}
	h.Store.Audit(r.Context(), entry)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, secret)
}
