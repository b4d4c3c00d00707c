package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/commands"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/importer/dendrite"
)

// cmdImport: !import <export ID | archive URL>. A URL must lie in Ferry's
// storage or in storage.import_from (import_location.go).
//
// The bot never imports: an import needs a stopped target homeserver,
// and the bot lives on a running one. It validates the archive and shows
// what an import into Dendrite would carry and lose (the fidelity
// preview), then prints the exact commands to run on the target machine,
// dry run first. An encrypted archive needs its key, which must not go
// through chat: the bot answers with a one-time HTTPS form (unlock.go)
// for this one archive's key line and posts the preview when it gets it.
func (b *Bot) cmdImport() *commands.Command {
	return &commands.Command{Path: []string{"import"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID|URL",
		Summary: "check an archive and preview an import into Dendrite; prints the commands that import it",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			arg := inv.Args[0]
			var open func(ctx context.Context) (container.Source, error)
			var label string
			if strings.Contains(arg, "://") {
				loc, err := allowImport(arg, b.importLocations())
				if err != nil {
					return "", err
				}
				open = func(ctx context.Context) (container.Source, error) { return container.Open(ctx, loc) }
				label = arg
			} else {
				e, err := b.completedExport(ctx, arg, "import (or give an archive URL: s3://..., file:///...)")
				if err != nil {
					return "", err
				}
				name := e.Name
				open = func(ctx context.Context) (container.Source, error) { return b.jobs.Storage.OpenArchive(ctx, name) }
				label = e.Name + ".ferry"
			}
			src, err := open(ctx)
			if err != nil {
				return "", fmt.Errorf("can't open %s: %w", label, err)
			}
			defer src.Close()
			r, err := archive.Open(ctx, src, archive.OpenOptions{})
			if errors.Is(err, container.ErrNeedKey) {
				link := b.askKey(pendingUnlock{sender: inv.Sender, label: label, room: id.RoomID(inv.RoomID), replyTo: id.EventID(inv.EventID), open: open})
				return fmt.Sprintf("`%s` is encrypted, and I hold no key that opens it. Don't send me one here (chat messages are stored by the homeserver): "+
					"run `bot archive key --identity YOUR-IDENTITY-FILE ARCHIVE` (it prints the key of this one archive) and paste the line at %s "+
					"(one use, %s); I'll post the preview here and forget the key.\n%s", label, link, unlockWindow, importCommands(label)), nil
			}
			if err != nil {
				return "", fmt.Errorf("`%s` can't be read: %w", label, err)
			}
			defer r.Close()
			return b.preview(ctx, r, label)
		}}
}

// importCommands are the commands that import an archive on the target.
func importCommands(label string) string {
	return fmt.Sprintf("To import, on the target machine with Dendrite stopped (never into the server I live on):\n"+
		"`bot import --target dendrite --config /etc/dendrite/dendrite.yaml --identity YOUR-IDENTITY-FILE --dry-run %s`\n"+
		"then the same without `--dry-run`. Add `--migration` to keep access tokens (encrypted archives only).", label)
}

// previewTarget is the target the bot previews imports into: a Dendrite
// nowhere in particular (the bot never imports, and reads no target; the
// preview needs the implementation's capabilities only).
func previewTarget() importer.Target { return dendrite.NewTarget(dendrite.Config{}) }

// preview validates an open archive and previews an import into Dendrite.
func (b *Bot) preview(ctx context.Context, r *archive.Reader, label string) (string, error) {
	rep, err := archive.Validate(ctx, r)
	if err != nil {
		return "", fmt.Errorf("`%s` could not be validated: %w", label, err)
	}
	m := r.Manifest()
	verdict := "✅ valid"
	if !rep.OK() {
		verdict = fmt.Sprintf("❌ %d errors (an import would refuse it)", rep.Errors())
	}
	caps := previewTarget().Capabilities()
	preview := fidelity.Preview(r, rep, caps).String()
	if len(preview) > 3000 {
		preview = preview[:3000] + "\n…(cut; `bot archive verify` shows it all)"
	}
	return fmt.Sprintf("`%s`: %s %s export of %s from %s %s: %d records, %d events in %d rooms, %d media files.\n"+
		"What an import into %s would carry and lose:\n%s\n%s",
		label, verdict, m.Export.Type, m.Export.ServerName, m.Export.Source.Implementation, m.Export.Source.Version,
		rep.Records, rep.Events, len(rep.Rooms), rep.Blobs, caps.Name, preview, importCommands(label)), nil
}
