package bot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/ferry-matrix/ferry/commands"
)

// commandList is the one registration list of the bot's commands; each
// command is declared in its own file (cmd_*.go).
func (b *Bot) commandList() []*commands.Command {
	return []*commands.Command{
		b.cmdHelp(),
		b.cmdExportFull(), b.cmdExportPartial(),
		b.cmdExportStatus(), b.cmdExportList(), b.cmdExportCancel(), b.cmdExportVerify(), b.cmdExportDelete(), b.cmdConfirm(),
		b.cmdScheduleAdd(), b.cmdScheduleList(), b.cmdScheduleRemove(),
		b.cmdImport(), b.cmdMydata(),
	}
}

// cmdHelp: !help, generated from the declarations.
func (b *Bot) cmdHelp() *commands.Command {
	return &commands.Command{Path: []string{"help"}, Summary: "what I can do for you", MaxArgs: 0,
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			head := "Ferry moves this homeserver's data out and back in. Commands:\n"
			if !inv.Admin && b.isAdmin(userID(inv.Sender)) {
				head = "You are an admin, but admin commands work only in an admin room. Here:\n"
			}
			return head + b.commands.Help(inv.Admin), nil
		}}
}

// jobID derives a job's ID from the command's event ID: a command
// delivered twice (a homeserver retry) names the same job, so it can
// never start a second export.
func jobID(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return hex.EncodeToString(sum[:6])
}
