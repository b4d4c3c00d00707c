package bot

import (
	"context"
	"time"

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

func (c chat) InDirectChat(ctx context.Context, room, user string) bool {
	members, err := c.b.cli.JoinedMembers(ctx, id.RoomID(room))
	if err != nil {
		return false
	}
	_, in := members.Joined[id.UserID(user)]
	return in && len(members.Joined) == 2
}

func (c chat) InviteToDirectChat(ctx context.Context, user, text string) error {
	dm, err := c.b.directChat(ctx, id.UserID(user))
	if err != nil {
		return err
	}
	c.b.send(ctx, dm, "", text)
	return nil
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
