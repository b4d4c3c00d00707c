package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/ferry-matrix/ferry/commands"
)

// pendingAction is a destructive step waiting for `!confirm <code>`:
// from the same admin, in the same room, within confirmWindow.
type pendingAction struct {
	sender, room string
	what         string
	do           func(ctx context.Context) (string, error)
}

const confirmWindow = 5 * time.Minute

// ask registers a destructive action and returns the reply that asks for
// its confirmation.
func (b *Bot) ask(inv *commands.Invocation, what string, do func(ctx context.Context) (string, error)) string {
	raw := make([]byte, 3)
	rand.Read(raw)
	code := hex.EncodeToString(raw)
	b.confirm.put(code, pendingAction{sender: inv.Sender, room: inv.RoomID, what: what, do: do}, confirmWindow)
	return fmt.Sprintf("⚠ This %s, and can't be undone. To go ahead, send `!confirm %s` within %s.", what, code, confirmWindow)
}

// confirmed runs the step waiting for code, if it is inv's sender's in
// inv's room (the !confirm command).
func (b *Bot) confirmed(ctx context.Context, inv *commands.Invocation, code string) (string, error) {
	mine := func(p pendingAction) bool { return p.sender == inv.Sender && p.room == inv.RoomID }
	p, ok := b.confirm.get(code, mine)
	if !ok || !mine(p) {
		return "", fmt.Errorf("no step of yours waits for code %q here (codes last %s)", code, confirmWindow)
	}
	return p.do(ctx)
}
