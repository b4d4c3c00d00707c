package bot

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/store"
)

// UnlockPath is where the bot's one-time key links for !import point.
const UnlockPath = "/unlock/"

const unlockWindow = 15 * time.Minute

// pendingUnlock is an !import preview waiting for an archive's key. The
// key never travels through chat: the admin pastes this one archive's key
// line (`bot archive key`) into a one-time HTTPS form; Ferry uses it for
// the preview and forgets it.
type pendingUnlock struct {
	sender, label string
	room          id.RoomID
	replyTo       id.EventID
	open          func(ctx context.Context) (container.Source, error)
}

// askKey registers a preview waiting for a key and returns its link.
func (b *Bot) askKey(p pendingUnlock) string {
	token := links.NewRevealToken()
	b.unlock.put(token, p, unlockWindow)
	return b.baseURL() + UnlockPath + token
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
		text, err := b.previewWithKey(r.Context(), p, r.PostFormValue("key"))
		entry := store.AuditEntry{Actor: p.sender, Via: "unlock " + r.RemoteAddr, Action: "import.preview", Target: p.label, Outcome: "ok"}
		if err != nil {
			entry.Outcome, entry.Detail = "failed", err.Error()
			text = "✗ " + err.Error()
		}
		b.jobs.Store.Audit(r.Context(), entry)
		b.send(r.Context(), p.room, p.replyTo, text)
		fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>Ferry: preview</title><p>Posted in the room. The key is forgotten.</p><pre>%s</pre>`, html.EscapeString(text))
	})
}

// previewWithKey opens the archive with the pasted key line.
func (b *Bot) previewWithKey(ctx context.Context, p pendingUnlock, line string) (string, error) {
	src, err := p.open(ctx)
	if err != nil {
		return "", err
	}
	defer src.Close()
	fields := strings.Fields(line)
	if len(fields) != 3 {
		return "", fmt.Errorf("that is not an archive key line (`ferry-archive-key-v1 <archive id> <key>`); `bot archive key` prints it")
	}
	key, err := keywrap.Decode([]byte(line), fields[1])
	if err != nil {
		return "", fmt.Errorf("the key line does not decode: %w", err)
	}
	r, err := archive.Open(ctx, src, archive.OpenOptions{Key: key})
	if err != nil {
		return "", fmt.Errorf("`%s` does not open with that key (a key of another archive?): %w", p.label, err)
	}
	defer r.Close()
	return b.preview(ctx, r, p.label)
}
