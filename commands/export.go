package commands

import (
	"context"
	"flag"
	"fmt"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/flagvalue"
	"github.com/ferry-matrix/ferry/source"
)

// exportOptions are the options of !export full and !export partial.
type exportOptions struct {
	rooms, users flagvalue.List
	since, until flagvalue.Time
	media        string
	name         string
	sel          exporter.Selection
}

// cmdExportFull: !export full.
func (h *Handlers) cmdExportFull() *Command {
	return &Command{Path: []string{"export", "full"}, Admin: true, MaxArgs: 0,
		Usage:   "[--media all|none] [--name NAME]",
		Summary: "export the whole server into an archive encrypted to your key; I post progress and a download link",
		Flags: func(fs *flag.FlagSet) any {
			o := &exportOptions{}
			fs.StringVar(&o.media, "media", source.MediaAll, "all or none")
			fs.StringVar(&o.name, "name", "", "archive name")
			return o
		},
		Check: func(inv *Invocation) error {
			o := inv.Options.(*exportOptions)
			o.sel = exporter.Selection{Type: exporter.TypeFull, Media: o.media}
			return o.sel.Validate()
		},
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			return "", h.startExport(ctx, inv, "full", inv.Options.(*exportOptions))
		}}
}

// cmdExportPartial: !export partial.
func (h *Handlers) cmdExportPartial() *Command {
	return &Command{Path: []string{"export", "partial"}, Admin: true, MaxArgs: 0,
		Usage:   "[--rooms !a:x,!b:x] [--users @u:x,...] [--since DATE] [--until DATE] [--media none|referenced|all] [--name NAME]",
		Summary: "export some rooms, users or a time range (DATE: 2026-01-31 or RFC 3339)",
		Flags: func(fs *flag.FlagSet) any {
			o := &exportOptions{}
			fs.Var(&o.rooms, "rooms", "room IDs")
			fs.Var(&o.users, "users", "user IDs")
			fs.Var(&o.since, "since", "events at or after")
			fs.Var(&o.until, "until", "events before")
			fs.StringVar(&o.media, "media", source.MediaReferenced, "none, referenced or all")
			fs.StringVar(&o.name, "name", "", "archive name")
			return o
		},
		Check: func(inv *Invocation) error {
			o := inv.Options.(*exportOptions)
			o.sel = exporter.Selection{Type: exporter.TypePartial, Rooms: o.rooms, Users: o.users, Since: o.since.T, Until: o.until.T, Media: o.media}
			return o.sel.Validate()
		},
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			return "", h.startExport(ctx, inv, "partial", inv.Options.(*exportOptions))
		}}
}

// recipientsFor returns whom an admin's export is encrypted to: the
// admin's own keys (required: the archive and its key are handed out in
// chat, so only a key the admin holds may open them) and the configured
// backup recipients.
func (h *Handlers) recipientsFor(admin string) ([]string, error) {
	own := h.Config.Encryption.AdminRecipients[admin]
	if len(own) == 0 {
		return nil, fmt.Errorf("no key is configured for you, so I can't encrypt an export you could open. "+
			"Add your age (age1...) or SSH (ssh-ed25519 ...) public key under encryption.admin_recipients[%q] in Ferry's config and restart Ferry. "+
			"Never paste a private key or passphrase into a chat", admin)
	}
	return append(append([]string{}, own...), h.Config.Encryption.Recipients...), nil
}

// startExport submits the export (its ID derived from the command's
// event, so a redelivered command finds the job it started) and follows
// it in the room.
func (h *Handlers) startExport(ctx context.Context, inv *Invocation, typ string, o *exportOptions) error {
	recips, err := h.recipientsFor(inv.Sender)
	if err != nil {
		return err
	}
	v, err := h.Svc.Submit(ctx, app.ExportRequest{ID: JobID(inv.EventID), Selection: o.sel, Recipients: recips, Name: o.name, By: actor(inv)})
	if err != nil {
		return err
	}
	h.Chat.Follow(inv.RoomID, inv.EventID, v.ID, typ, "")
	return nil
}
