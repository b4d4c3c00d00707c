package bot

import (
	"context"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/commands"
)

// chat is the bot as the command handlers see it (commands.Chat).
type chat struct{ b *Bot }

var _ commands.Chat = chat{}

func (c chat) Follow(room, replyTo, jobID, label, reveal string) {
	c.b.follow(id.RoomID(room), id.EventID(replyTo), jobID, label, reveal)
}

func (c chat) Await(room, replyTo, jobID string, text func(*app.View) string) {
	c.b.mu.Lock()
	ctx := c.b.runCtx
	c.b.mu.Unlock()
	c.b.tracked.Add(1)
	go func() {
		defer c.b.tracked.Done()
		c.b.await(ctx, id.RoomID(room), id.EventID(replyTo), jobID, text)
	}()
}

func (c chat) Ask(inv *commands.Invocation, what string, do func(ctx context.Context) (string, error)) string {
	return c.b.ask(inv, what, do)
}

func (c chat) Confirm(ctx context.Context, inv *commands.Invocation, code string) (string, error) {
	return c.b.confirmed(ctx, inv, code)
}

func (c chat) AskKey(inv *commands.Invocation, label string, req app.PreviewRequest) string {
	return c.b.askKey(pendingUnlock{sender: inv.Sender, label: label, room: id.RoomID(inv.RoomID), replyTo: id.EventID(inv.EventID), req: req})
}

// InDirectChat: room holds the bot and user only, joined or invited,
// and is not an admin room (those are shared by configuration, whoever
// is in them now).
func (c chat) InDirectChat(ctx context.Context, room, user string) bool {
	ok, err := c.b.onlyWith(ctx, id.RoomID(room), id.UserID(user))
	return err == nil && ok
}

// InviteToDirectChat posts text in the bot's direct chat with user
// (directChat checks that it still is one), and says when it could not.
func (c chat) InviteToDirectChat(ctx context.Context, user, text string) error {
	dm, err := c.b.directChat(ctx, id.UserID(user))
	if err != nil {
		return err
	}
	if _, err := c.b.cli.SendMessageEvent(context.WithoutCancel(ctx), dm, event.EventMessage, notice(text)); err != nil {
		return fmt.Errorf("could not send to our direct chat: %w", err)
	}
	return nil
}

// onlyWith reports whether room's joined and invited members are
// exactly the bot and u, and it is not an admin room.
func (b *Bot) onlyWith(ctx context.Context, room id.RoomID, u id.UserID) (bool, error) {
	if b.isAdminRoom(room) {
		return false, nil
	}
	resp, err := b.cli.Members(ctx, room)
	if err != nil {
		return false, err
	}
	in := map[id.UserID]bool{}
	for _, evt := range resp.Chunk {
		if evt.StateKey == nil {
			continue
		}
		if m := evt.Content.AsMember().Membership; m == event.MembershipJoin || m == event.MembershipInvite {
			in[id.UserID(*evt.StateKey)] = true
		}
	}
	return len(in) == 2 && in[u] && in[b.cli.UserID], nil
}

func (c chat) IsAdmin(user string) bool { return c.b.isAdmin(id.UserID(user)) }

// await replies to replyTo with text(v) once job jobID has ended. The
// wait is not kept across restarts; the outcome is in the audit log and
// the API (GET /api/v1/jobs/ID) either way.
func (b *Bot) await(ctx context.Context, room id.RoomID, replyTo id.EventID, jobID string, text func(*app.View) string) {
	t := time.NewTicker(b.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := b.svc.Get(ctx, jobID)
		if err != nil {
			b.log.Debug().Err(err).Str("job", jobID).Msg("cannot read the job; trying again")
			continue
		}
		if !v.Running() {
			b.send(ctx, room, replyTo, text(v))
			return
		}
	}
}
