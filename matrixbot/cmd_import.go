package matrixbot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/chatcmd"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer/dendrite"
	"github.com/ferry-matrix/ferry/store"
)

// cmdImport: !import <export ID | archive URL>.
//
// The bot never imports: an import needs a stopped target homeserver,
// and the bot lives on a running one. It checks the archive and shows
// what an import into Dendrite would carry and lose (validation and the
// fidelity preview) when it can read the archive — a plaintext one —
// and otherwise says why it can't; then it prints the exact commands to
// run on the target machine, dry run first.
func (b *Bot) cmdImport() *chatcmd.Command {
	return &chatcmd.Command{Path: []string{"import"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID|URL",
		Summary: "check an archive and preview an import into Dendrite; prints the commands that import it",
		Run: func(ctx context.Context, inv *chatcmd.Invocation) (string, error) {
			arg := inv.Args[0]
			var src container.Source
			var label string
			if strings.Contains(arg, "://") {
				var err error
				if src, err = container.Open(ctx, arg); err != nil {
					return "", fmt.Errorf("can't open %s: %w", arg, err)
				}
				label = arg
			} else {
				e, err := b.jobs.Store.GetExport(ctx, arg)
				if errors.Is(err, store.ErrNotFound) {
					return "", fmt.Errorf("there is no export %q; give an export ID from `!export list` or an archive URL (s3://..., file:///...)", arg)
				} else if err != nil {
					return "", err
				}
				if e.Status != store.StatusCompleted {
					return "", fmt.Errorf("export %s is %s: only a completed export can be imported", e.ID, e.Status)
				}
				if src, err = b.jobs.Storage.OpenArchive(ctx, e.Name); err != nil {
					return "", err
				}
				label = e.Name + ".ferry"
			}
			defer src.Close()
			commands := fmt.Sprintf("To import, on the target machine with Dendrite stopped (never into the server I live on):\n"+
				"`bot import --target dendrite --config /etc/dendrite/dendrite.yaml --identity YOUR-IDENTITY-FILE --dry-run %s`\n"+
				"then the same without `--dry-run`. Add `--migration` to keep access tokens (encrypted archives only).", label)
			r, err := archive.Open(ctx, src, archive.OpenOptions{})
			if errors.Is(err, container.ErrNeedKey) {
				return fmt.Sprintf("`%s` is encrypted, and I hold no key that opens it, so I can't preview it here "+
					"(and you should not send me one: chat messages are stored by the homeserver).\n%s", label, commands), nil
			}
			if err != nil {
				return "", fmt.Errorf("`%s` can't be read: %w", label, err)
			}
			defer r.Close()
			rep, err := archive.Validate(ctx, r)
			if err != nil {
				return "", fmt.Errorf("`%s` could not be validated: %w", label, err)
			}
			m := r.Manifest()
			verdict := "✅ valid"
			if !rep.OK() {
				verdict = fmt.Sprintf("❌ %d errors (an import would refuse it)", rep.Errors())
			}
			preview := fidelity.Preview(r, rep, dendrite.Target).String()
			if len(preview) > 3000 {
				preview = preview[:3000] + "\n…(cut; `bot archive verify` shows it all)"
			}
			return fmt.Sprintf("`%s`: %s %s export of %s from %s %s: %d records, %d events in %d rooms, %d media files.\n"+
				"What an import into Dendrite v0.15.2 would carry and lose:\n%s\n%s",
				label, verdict, m.Export.Type, m.Export.ServerName, m.Export.Source.Implementation, m.Export.Source.Version,
				rep.Records, rep.Events, len(rep.Rooms), rep.Blobs, preview, commands), nil
		}}
}
