package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/config"
)

// Chat is what the handlers need of the chat side (the bot implements
// it): following a job in a room, confirmations, the one-time key form,
// direct chats. Rooms, events and users are Matrix IDs.
type Chat interface {
	// Follow posts a progress message for a job as a reply to replyTo and
	// edits it until the job ends, then posts its outcome (OutcomeText;
	// reveal is a personal export's one-time key link). It returns at once.
	Follow(room, replyTo, jobID, label, reveal string)
	// Await replies to replyTo with text(v) once job jobID has ended. It
	// returns at once.
	Await(room, replyTo, jobID string, text func(v *app.View) string)
	// Ask registers do as a destructive step waiting for `!confirm CODE`
	// from inv's sender in inv's room, and returns the question.
	Ask(inv *Invocation, what string, do func(ctx context.Context) (string, error)) string
	// Confirm runs the step waiting for code, if it is inv's sender's in
	// inv's room.
	Confirm(ctx context.Context, inv *Invocation, code string) (string, error)
	// AskKey registers a preview waiting for an archive's key line and
	// returns the link of its one-time form (valid UnlockWindow).
	AskKey(inv *Invocation, label string, req app.PreviewRequest) string
	// InDirectChat reports whether room holds exactly the bot and user.
	InDirectChat(ctx context.Context, room, user string) bool
	// InviteToDirectChat opens (or reuses) the bot's direct chat with
	// user and posts text there.
	InviteToDirectChat(ctx context.Context, user, text string) error
	// IsAdmin reports whether user is one of Ferry's admins.
	IsAdmin(user string) bool
}

// UnlockWindow is how long a one-time key form of an import preview lasts.
const UnlockWindow = 15 * time.Minute

// Handlers are the bot's commands, one file each: they parse, call one
// verb of the application layer (Svc), and format the reply. The caller
// authorises (Command.Admin) before Run.
type Handlers struct {
	Svc    Service
	Chat   Chat
	Config *config.Config
	// Registry is the one the commands are added to, for !help.
	Registry *Registry
}

// List is the one registration list of the commands.
func (h *Handlers) List() []*Command {
	return []*Command{
		h.cmdHelp(),
		h.cmdExportFull(), h.cmdExportPartial(),
		h.cmdExportStatus(), h.cmdExportList(), h.cmdExportCancel(), h.cmdExportVerify(), h.cmdExportDelete(), h.cmdConfirm(),
		h.cmdScheduleAdd(), h.cmdScheduleList(), h.cmdScheduleRemove(),
		h.cmdImport(), h.cmdMydata(), h.cmdDashboard(),
	}
}

// cmdHelp: !help, generated from the declarations.
func (h *Handlers) cmdHelp() *Command {
	return &Command{Path: []string{"help"}, Summary: "what I can do for you", MaxArgs: 0,
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			head := "Ferry moves this homeserver's data out and back in. Commands:\n"
			if !inv.Admin && h.Chat.IsAdmin(inv.Sender) {
				head = "You are an admin, but admin commands work only in an admin room. Here:\n"
			}
			return head + h.Registry.Help(inv.Admin), nil
		}}
}

// cmdConfirm: !confirm <code>.
func (h *Handlers) cmdConfirm() *Command {
	return &Command{Path: []string{"confirm"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "CODE",
		Summary: "go ahead with a destructive step I asked you to confirm",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			return h.Chat.Confirm(ctx, inv, inv.Args[0])
		}}
}

// JobID derives a job's ID from the command's event ID: a command
// delivered twice (a homeserver retry) names the same job, so it can
// never start a second export.
func JobID(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return hex.EncodeToString(sum[:6])
}

// actor is who runs a command, as the verbs record it.
func actor(inv *Invocation) app.Actor {
	return app.Actor{Name: inv.Sender, Via: "room " + inv.RoomID}
}

// findExport reads the export a command names, with an error a person
// can act on.
func (h *Handlers) findExport(ctx context.Context, exportID string) (*app.View, error) {
	v, err := h.Svc.Get(ctx, exportID)
	if err == nil && v.Kind != app.KindExport {
		err = app.ErrNotFound // an import's or verification's ID
	}
	if errors.Is(err, app.ErrNotFound) {
		return nil, fmt.Errorf("there is no export %q; `!export list` shows them", exportID)
	}
	return v, err
}

// completedExport is findExport for a command that needs the archive
// (what: "verify", "delete", ...).
func (h *Handlers) completedExport(ctx context.Context, exportID, what string) (*app.View, error) {
	v, err := h.findExport(ctx, exportID)
	if err != nil {
		return nil, err
	}
	if v.Status != app.StatusCompleted {
		return nil, fmt.Errorf("export %s is %s: only a completed export has an archive to %s", v.ID, v.Status, what)
	}
	return v, nil
}
