package bot

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/commands"
)

// cmdMydata: !mydata, any local user's own data, in a direct chat.
//
// The archive is encrypted to a fresh age identity made for this request
// (app PersonalExport); the identity is the user's key. It never appears
// in a room (the homeserver stores room messages, and they would land in
// the next export): it is kept in Ferry's state only until it is
// revealed, once, through an expiring link in the user's direct chat.
func (b *Bot) cmdMydata() *commands.Command {
	return &commands.Command{Path: []string{"mydata"}, MaxArgs: 0,
		Summary: "export your own data: profile, devices, account data, the messages you can see, your media (in a direct chat with me)",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			sender, room := id.UserID(inv.Sender), id.RoomID(inv.RoomID)
			if !b.isDirectWith(ctx, room, sender) {
				dm, err := b.directChat(ctx, sender)
				if err != nil {
					return "", fmt.Errorf("your data goes only to a direct chat between you and me, and I could not open one: %w", err)
				}
				b.send(ctx, dm, "", "Send `!mydata` here: your data is delivered only in this direct chat.")
				return "Your data goes only to a direct chat between you and me; I've invited you to one. Send `!mydata` there.", nil
			}
			p, err := b.svc.PersonalExport(ctx, jobID(inv.EventID), inv.Sender)
			if errors.Is(err, app.ErrDuplicate) {
				return "", nil // a redelivered command: its export is followed already
			}
			if err != nil {
				return "", err
			}
			b.follow(room, id.EventID(inv.EventID), p.ID, "your data", p.RevealURL)
			return "", nil
		}}
}

// isDirectWith reports whether room holds exactly the bot and u.
func (b *Bot) isDirectWith(ctx context.Context, room id.RoomID, u id.UserID) bool {
	members, err := b.cli.JoinedMembers(ctx, room)
	if err != nil {
		return false
	}
	_, in := members.Joined[u]
	return in && len(members.Joined) == 2
}
