package commands

import (
	"context"
	"fmt"

	"github.com/ferry-matrix/ferry/app"
)

// cmdDashboard: !dashboard, a one-time sign-in link to the web dashboard
// (/ui/), sent in a direct chat: an admin in an admin room gets an admin
// session's link, always in the bot's direct chat with them (never in
// the room), anybody else a link to their own page (their personal
// exports), in the direct chat they asked in or the bot's. The link works once, for app.LoginWindow; opening it shows a
// sign-in button, so a link preview uses nothing up.
func (h *Handlers) cmdDashboard() *Command {
	return &Command{Path: []string{"dashboard"}, MaxArgs: 0,
		Summary: "a one-time sign-in link to the web dashboard, in a direct chat (in an admin room: everything; elsewhere: your own exports)",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			role, what := app.RoleUser, "your own exports"
			if inv.Admin {
				role, what = app.RoleAdmin, "as an admin"
			}
			link, err := h.Svc.IssueLogin(ctx, inv.Sender, role, actor(inv))
			if err != nil {
				return "", err
			}
			text := fmt.Sprintf("Your sign-in link to Ferry's dashboard (%s): %s\nIt works once, within %d minutes: it opens a page with a Sign in button.",
				what, link, int(app.LoginWindow.Minutes()))
			// An admin's link never goes to the room asked in (an admin
			// room, however few are in it now), only to a direct chat.
			if !inv.Admin && h.Chat.InDirectChat(ctx, inv.RoomID, inv.Sender) {
				return text, nil
			}
			if err := h.Chat.InviteToDirectChat(ctx, inv.Sender, text); err != nil {
				return "", fmt.Errorf("your sign-in link goes only to a direct chat between you and me, and I could not open one: %w", err)
			}
			return "I've sent you a sign-in link to the dashboard in our direct chat.", nil
		}}
}
