package matrixbot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/ferry-matrix/ferry/chatcmd"
)

// confirmations holds destructive actions waiting for `!confirm <code>`:
// the same admin, in the same room, within confirmWindow.
type confirmations struct {
	mu      sync.Mutex
	pending map[string]pendingAction
}

type pendingAction struct {
	sender, room string
	what         string
	do           func(ctx context.Context) (string, error)
	expires      time.Time
}

const confirmWindow = 5 * time.Minute

// ask registers a destructive action and returns the reply that asks for
// its confirmation.
func (b *Bot) ask(inv *chatcmd.Invocation, what string, do func(ctx context.Context) (string, error)) string {
	raw := make([]byte, 3)
	rand.Read(raw)
	code := hex.EncodeToString(raw)
	b.confirm.mu.Lock()
	if b.confirm.pending == nil {
		b.confirm.pending = map[string]pendingAction{}
	}
	for c, p := range b.confirm.pending {
		if time.Now().After(p.expires) {
			delete(b.confirm.pending, c)
		}
	}
	b.confirm.pending[code] = pendingAction{sender: inv.Sender, room: inv.RoomID, what: what, do: do, expires: time.Now().Add(confirmWindow)}
	b.confirm.mu.Unlock()
	return fmt.Sprintf("⚠ This %s, and can't be undone. To go ahead, send `!confirm %s` within %s.", what, code, confirmWindow)
}

// cmdConfirm: !confirm <code>.
func (b *Bot) cmdConfirm() *chatcmd.Command {
	return &chatcmd.Command{Path: []string{"confirm"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "CODE",
		Summary: "go ahead with a destructive step I asked you to confirm",
		Run: func(ctx context.Context, inv *chatcmd.Invocation) (string, error) {
			b.confirm.mu.Lock()
			p, ok := b.confirm.pending[inv.Args[0]]
			if ok && p.sender == inv.Sender && p.room == inv.RoomID {
				delete(b.confirm.pending, inv.Args[0])
			}
			b.confirm.mu.Unlock()
			switch {
			case !ok || p.sender != inv.Sender || p.room != inv.RoomID:
				return "", fmt.Errorf("no step of yours waits for code %q here", inv.Args[0])
			case time.Now().After(p.expires):
				return "", fmt.Errorf("code %s expired (%s to confirm); run the command again", inv.Args[0], confirmWindow)
			}
			return p.do(ctx)
		}}
}
