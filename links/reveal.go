package links

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
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
// scanners can't use the link up; the POST that button sends returns a
// page with the secret (in <pre id="key">) and, through Render, what it
// opens, and deletes the secret. A used, expired or unknown token gets 410 Gone.
// Every reveal and refusal is in the audit log (without the secret).
type RevealHandler struct {
	Store *store.Store
	// Render, if set, writes HTML after the key on the revealed page (the
	// readable view of a personal export), given the secret's purpose.
	Render func(ctx context.Context, w io.Writer, purpose, secret string) error
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
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>Ferry: your key and your data</title>
<style>body{font-family:sans-serif;max-width:60em;margin:auto} pre{background:#eee;padding:1em} .mine{background:#eef6ff} td{padding:0 .5em;vertical-align:top}</style>
<h1>Your key</h1><p>Save this line as <code>mydata-key.txt</code> now: this page can't be shown again.</p>
<pre id="key">%s</pre>
`, html.EscapeString(secret))
	if h.Render != nil {
		if err := h.Render(r.Context(), w, purpose, secret); err != nil {
			fmt.Fprintf(w, "<p>The readable view could not be made (%s); your key above still opens the archive.</p>", html.EscapeString(err.Error()))
		}
	}
}
