package bot

import (
	"fmt"
	"html"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/commands"
	"github.com/ferry-matrix/ferry/links"
)

// UnlockPath is where the bot's one-time key links for !import point.
const UnlockPath = "/unlock/"

// pendingUnlock is an !import preview waiting for an archive's key. The
// key never travels through chat: the admin pastes this one archive's key
// line (`bot archive key`) into a one-time HTTPS form; Ferry uses it for
// the preview and forgets it.
type pendingUnlock struct {
	sender, label string
	room          id.RoomID
	replyTo       id.EventID
	req           app.PreviewRequest // the preview to make with the key
}

// askKey registers a preview waiting for a key and returns its link.
func (b *Bot) askKey(p pendingUnlock) string {
	token := links.NewRevealToken()
	b.unlock.put(token, p, commands.UnlockWindow)
	return b.cfg.PublicURL() + UnlockPath + token
}

// UnlockHandler serves the one-time key forms of !import previews: GET
// shows the form, POST takes the key line, posts the preview as a reply
// in the room and shows it, and forgets both the key and the link.
func (b *Bot) UnlockHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.URL.Path, UnlockPath)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		p, ok := b.unlock.get(token, func(pendingUnlock) bool { return r.Method == http.MethodPost })
		if !ok {
			http.Error(w, "410: this link was already used or has expired. Send !import again for a new one.", http.StatusGone)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.Method != http.MethodPost {
			fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>Ferry: preview %s</title>
<p>Paste the key of <code>%s</code> (the line <code>bot archive key --identity YOUR-IDENTITY-FILE ARCHIVE</code> prints; it opens this archive only). Ferry uses it for the preview and forgets it. This form works once.</p>
<form method="post" action="%s"><textarea name="key" rows="3" cols="100"></textarea><br><button>Preview the import</button></form>`,
				html.EscapeString(p.label), html.EscapeString(p.label), html.EscapeString(UnlockPath+token))
			return
		}
		req := p.req
		req.Key, req.By.Via = r.PostFormValue("key"), "unlock "+r.RemoteAddr
		var text string
		if pv, err := b.svc.Preview(r.Context(), req); err != nil {
			text = "✗ " + err.Error()
		} else {
			text = commands.PreviewText(pv)
		}
		b.send(r.Context(), p.room, p.replyTo, text)
		fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>Ferry: preview</title><p>Posted in the room. The key is forgotten.</p><pre>%s</pre>`, html.EscapeString(text))
	})
}
