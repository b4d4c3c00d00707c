package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"filippo.io/age"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/commands"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/store"
)

// cmdMydata: !mydata, any local user's own data, in a direct chat.
//
// The archive is encrypted to a fresh age identity made for this request;
// the identity is the user's key. It never appears in a room (the
// homeserver stores room messages, and they would land in the next
// export): it is kept in Ferry's state only until it is revealed, once,
// through an expiring link in the user's direct chat.
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
			limit := b.cfg.Limits.MydataPerDay
			since := time.Now().Add(-24 * time.Hour)
			n, err := b.jobs.Store.CountRequested(ctx, inv.Sender, "mydata", since)
			if err != nil {
				return "", err
			}
			if n >= limit {
				return "", fmt.Errorf("you have asked for your data %d times in the last 24 hours, and the limit is %d; the links I sent you still work until they expire", n, limit)
			}
			exportID := jobID(inv.EventID)
			if _, err := b.jobs.Store.GetExport(ctx, exportID); !errors.Is(err, store.ErrNotFound) {
				return "", err // a redelivered command: already running (or failed to read)
			}
			identity, err := age.GenerateX25519Identity()
			if err != nil {
				return "", err
			}
			name := "mydata-" + sender.Localpart() + "-" + time.Now().UTC().Format("20060102-150405") + "-" + exportID[:6]
			token := links.NewRevealToken()
			expires := time.Now().Add(time.Duration(b.cfg.Storage.LinkLifetime))
			// The purpose names the archive: revealing the key also shows
			// the readable view of what it opens.
			if err := b.jobs.Store.PutSecret(ctx, token, identity.String(), "mydata "+inv.Sender+" "+name, expires); err != nil {
				return "", err
			}
			req := jobs.Request{Source: b.cfg.Homeserver.Implementation, Personal: inv.Sender,
				Recipients: []string{identity.Recipient().String()}, Name: name}
			if _, err := b.jobs.Submit(ctx, exportID, req, inv.Sender, "mydata"); err != nil {
				return "", fmt.Errorf("could not start your export: %w", err)
			}
			b.follow(room, id.EventID(inv.EventID), exportID, "your data", b.baseURL()+links.RevealPath+token)
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
