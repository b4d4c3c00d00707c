package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/commands"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/human"
)

func userID(s string) id.UserID { return id.UserID(s) }

// cmdExportStatus: !export status [id].
func (b *Bot) cmdExportStatus() *commands.Command {
	return &commands.Command{Path: []string{"export", "status"}, Admin: true, MaxArgs: 1, Usage: "[ID]",
		Summary: "the state of an export (default: the newest)",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			var v *app.View
			if len(inv.Args) == 1 {
				var err error
				if v, err = b.findExport(ctx, inv.Args[0]); err != nil {
					return "", err
				}
			} else {
				list, err := b.svc.List(ctx, app.KindExport, 1)
				if err != nil {
					return "", err
				}
				if len(list) == 0 {
					return "No exports yet. `!export full` starts one.", nil
				}
				v = list[0]
			}
			text := progressText(v, v.Type) + fmt.Sprintf("\nrequested by %s via %s at %s", v.RequestedBy, v.Via, v.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"))
			if v.Error != "" {
				text += "\nlast error: " + v.Error
			}
			if v.Status == app.StatusCompleted && v.Type != exporter.TypeUser {
				text += "\n" + b.outcomeText(ctx, v, "")
			}
			return text, nil
		}}
}

// cmdExportList: !export list.
func (b *Bot) cmdExportList() *commands.Command {
	return &commands.Command{Path: []string{"export", "list"}, Admin: true, MaxArgs: 0,
		Summary: "the ten newest exports",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			list, err := b.svc.List(ctx, app.KindExport, 10)
			if err != nil {
				return "", err
			}
			if len(list) == 0 {
				return "No exports yet. `!export full` starts one.", nil
			}
			var sb strings.Builder
			sb.WriteString("Newest exports:")
			for _, v := range list {
				fmt.Fprintf(&sb, "\n`%s` %s %s, %s, by %s at %s", v.ID, v.Type, v.Status, v.Name, v.RequestedBy, v.CreatedAt.UTC().Format("2006-01-02 15:04"))
				if v.Status == app.StatusCompleted {
					fmt.Fprintf(&sb, ", %s", human.Bytes(v.Size))
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
			v, err := b.findExport(ctx, inv.Args[0])
			if err != nil {
				return "", err
			}
			if _, err := b.svc.Cancel(ctx, v.ID, actor(inv)); err != nil {
				return "", err
			}
			return fmt.Sprintf("Export `%s` is cancelled; its partial archive is removed.", v.ID), nil
		}}
}

// findExport reads the export a command names, with an error a person
// can act on.
func (b *Bot) findExport(ctx context.Context, exportID string) (*app.View, error) {
	v, err := b.svc.Get(ctx, exportID)
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
func (b *Bot) completedExport(ctx context.Context, exportID, what string) (*app.View, error) {
	v, err := b.findExport(ctx, exportID)
	if err != nil {
		return nil, err
	}
	if v.Status != app.StatusCompleted {
		return nil, fmt.Errorf("export %s is %s: only a completed export has an archive to %s", v.ID, v.Status, what)
	}
	return v, nil
}
