package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/commands"
	"github.com/ferry-matrix/ferry/internal/human"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/store"
)

func userID(s string) id.UserID { return id.UserID(s) }

// cmdExportStatus: !export status [id].
func (b *Bot) cmdExportStatus() *commands.Command {
	return &commands.Command{Path: []string{"export", "status"}, Admin: true, MaxArgs: 1, Usage: "[ID]",
		Summary: "the state of an export (default: the newest)",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			var e *store.Export
			if len(inv.Args) == 1 {
				var err error
				if e, err = b.findExport(ctx, inv.Args[0]); err != nil {
					return "", err
				}
			} else {
				list, err := b.jobs.Store.ListExports(ctx, 1)
				if err != nil {
					return "", err
				}
				if len(list) == 0 {
					return "No exports yet. `!export full` starts one.", nil
				}
				e = list[0]
			}
			text := progressText(e, exportType(e)) + fmt.Sprintf("\nrequested by %s via %s at %s", e.RequestedBy, e.Via, e.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"))
			if e.Error != "" {
				text += "\nlast error: " + e.Error
			}
			if e.Status == store.StatusCompleted && exportType(e) != "user" {
				text += "\n" + b.outcomeText(ctx, e, "")
			}
			return text, nil
		}}
}

// exportType reads "full", "partial" or "user" from an export's stored
// request.
func exportType(e *store.Export) string {
	var req jobs.Request
	if json.Unmarshal([]byte(e.Request), &req) == nil {
		return req.ArchiveType()
	}
	return "full"
}

// cmdExportList: !export list.
func (b *Bot) cmdExportList() *commands.Command {
	return &commands.Command{Path: []string{"export", "list"}, Admin: true, MaxArgs: 0,
		Summary: "the ten newest exports",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			list, err := b.jobs.Store.ListExports(ctx, 10)
			if err != nil {
				return "", err
			}
			if len(list) == 0 {
				return "No exports yet. `!export full` starts one.", nil
			}
			var sb strings.Builder
			sb.WriteString("Newest exports:")
			for _, e := range list {
				fmt.Fprintf(&sb, "\n`%s` %s %s, %s, by %s at %s", e.ID, exportType(e), e.Status, e.Name, e.RequestedBy, e.CreatedAt.UTC().Format("2006-01-02 15:04"))
				if e.Status == store.StatusCompleted {
					fmt.Fprintf(&sb, ", %s", human.Bytes(e.Size))
				}
			}
			return sb.String(), nil
		}}
}

// cmdExportCancel: !export cancel <id>.
func (b *Bot) cmdExportCancel() *commands.Command {
	return &commands.Command{Path: []string{"export", "cancel"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "stop a queued or running export; nothing is published",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			exportID := inv.Args[0]
			if _, err := b.findExport(ctx, exportID); err != nil {
				return "", err
			}
			if err := b.jobs.Cancel(ctx, exportID, inv.Sender, "room "+inv.RoomID); err != nil {
				return "", err
			}
			return fmt.Sprintf("Export `%s` is cancelled; its partial archive is removed.", exportID), nil
		}}
}

// findExport reads the export a command names, with an error a person
// can act on.
func (b *Bot) findExport(ctx context.Context, exportID string) (*store.Export, error) {
	e, err := b.jobs.Store.GetExport(ctx, exportID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("there is no export %q; `!export list` shows them", exportID)
	}
	return e, err
}

// completedExport is findExport for a command that needs the archive
// (what: "verify", "delete", ...).
func (b *Bot) completedExport(ctx context.Context, exportID, what string) (*store.Export, error) {
	e, err := b.findExport(ctx, exportID)
	if err != nil {
		return nil, err
	}
	if e.Status != store.StatusCompleted {
		return nil, fmt.Errorf("export %s is %s: only a completed export has an archive to %s", e.ID, e.Status, what)
	}
	return e, nil
}
