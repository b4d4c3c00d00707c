package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/human"
)

// cmdExportStatus: !export status [id].
func (h *Handlers) cmdExportStatus() *Command {
	return &Command{Path: []string{"export", "status"}, Admin: true, MaxArgs: 1, Usage: "[ID]",
		Summary: "the state of an export (default: the newest)",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			var v *app.View
			if len(inv.Args) == 1 {
				var err error
				if v, err = h.findExport(ctx, inv.Args[0]); err != nil {
					return "", err
				}
			} else {
				list, err := h.Svc.List(ctx, app.KindExport, 1)
				if err != nil {
					return "", err
				}
				if len(list) == 0 {
					return "No exports yet. `!export full` starts one.", nil
				}
				v = list[0]
			}
			text := ProgressText(v, v.Type) + fmt.Sprintf("\nrequested by %s via %s at %s", v.RequestedBy, v.Via, v.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"))
			if v.Error != "" {
				text += "\nlast error: " + v.Error
			}
			if v.Status == app.StatusCompleted && v.Type != exporter.TypeUser {
				text += "\n" + OutcomeText(ctx, h.Svc, v, "")
			}
			return text, nil
		}}
}

// cmdExportList: !export list.
func (h *Handlers) cmdExportList() *Command {
	return &Command{Path: []string{"export", "list"}, Admin: true, MaxArgs: 0,
		Summary: "the ten newest exports",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			list, err := h.Svc.List(ctx, app.KindExport, 10)
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
func (h *Handlers) cmdExportCancel() *Command {
	return &Command{Path: []string{"export", "cancel"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "stop a queued or running export; nothing is published",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			v, err := h.findExport(ctx, inv.Args[0])
			if err != nil {
				return "", err
			}
			if _, err := h.Svc.Cancel(ctx, v.ID, actor(inv)); err != nil {
				return "", err
			}
			return fmt.Sprintf("Export `%s` is cancelled; its partial archive is removed.", v.ID), nil
		}}
}
