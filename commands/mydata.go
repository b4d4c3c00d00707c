package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-matrix/ferry/app"
)

// cmdMydata: !mydata, any local user's own data, in a direct chat.
//
// The archive is encrypted to a fresh age identity made for this request
// (app PersonalExport); the identity is the user's key. It never appears
// in a room (the homeserver stores room messages, and they would land in
// the next export): it is kept in Ferry's state only until it is
// revealed, once, through an expiring link in the user's direct chat.
func (h *Handlers) cmdMydata() *Command {
	return &Command{Path: []string{"mydata"}, MaxArgs: 0,
		Summary: "export your own data: profile, devices, account data, the messages you can see, your media (in a direct chat with me)",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			if !h.Chat.InDirectChat(ctx, inv.RoomID, inv.Sender) {
				if err := h.Chat.InviteToDirectChat(ctx, inv.Sender, "Send `!mydata` here: your data is delivered only in this direct chat."); err != nil {
					return "", fmt.Errorf("your data goes only to a direct chat between you and me, and I could not open one: %w", err)
				}
				return "Your data goes only to a direct chat between you and me; I've invited you to one. Send `!mydata` there.", nil
			}
			p, err := h.Svc.PersonalExport(ctx, JobID(inv.EventID), inv.Sender)
			if errors.Is(err, app.ErrDuplicate) {
				return "", nil // a redelivered command: its export is followed already
			}
			if err != nil {
				return "", err
			}
			h.Chat.Follow(inv.RoomID, inv.EventID, p.ID, "your data", p.RevealURL)
			return "", nil
		}}
}
