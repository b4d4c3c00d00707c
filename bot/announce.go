package bot

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/app"
)

// Announce is the jobs service's hook for scheduled runs: it posts them
// to every admin room. A started run is followed like a chat command's
// export (progress message, then the completion notice with links); a
// failure, of the run or of its verification, is posted as a loud m.text
// naming the admins; pruned archives and passed verifications are listed.
func (b *Bot) Announce(e app.Event) {
	b.mu.Lock()
	ctx := b.runCtx
	b.mu.Unlock()
	for _, r := range b.cfg.Admins.Rooms {
		room := id.RoomID(r)
		switch e.Kind {
		case "started":
			b.send(ctx, room, "", fmt.Sprintf("Scheduled backup `%s` started (export `%s`).", e.Schedule, e.ExportID))
			b.follow(room, "", e.ExportID, "scheduled "+e.Schedule, "")
		case "failed":
			b.loud(ctx, room, fmt.Sprintf("🚨 Scheduled backup `%s` FAILED (export `%s`): %s\n%s: the next run is at its usual time; `!export status %s` shows the details.",
				e.Schedule, e.ExportID, e.Detail, joinUsers(b.cfg.Admins.Users), e.ExportID))
		case "pruned":
			b.send(ctx, room, "", fmt.Sprintf("Retention of `%s` deleted `%s`.", e.Schedule, e.Detail))
		case "verified":
			b.send(ctx, room, "", fmt.Sprintf("✅ Scheduled backup `%s` (export `%s`) verified: %s", e.Schedule, e.ExportID, e.Detail))
		case "verify_failed":
			b.loud(ctx, room, fmt.Sprintf("🚨 Scheduled backup `%s` (export `%s`) FAILED its verification: %s\n%s: don't rely on this archive; the next run is at its usual time.",
				e.Schedule, e.ExportID, e.Detail, joinUsers(b.cfg.Admins.Users)))
		}
	}
}

// loud posts an m.text (not a notice) that mentions every admin: a
// failure someone must act on.
func (b *Bot) loud(ctx context.Context, room id.RoomID, text string) {
	content := notice(text)
	content.MsgType = event.MsgText
	content.Mentions = &event.Mentions{}
	for _, u := range b.cfg.Admins.Users {
		content.Mentions.UserIDs = append(content.Mentions.UserIDs, id.UserID(u))
	}
	if _, err := b.cli.SendMessageEvent(ctx, room, event.EventMessage, content); err != nil {
		b.log.Warn().Err(err).Msg("could not announce a failure")
	}
}

func joinUsers(users []string) string {
	out := ""
	for i, u := range users {
		if i > 0 {
			out += ", "
		}
		out += u
	}
	return out
}
