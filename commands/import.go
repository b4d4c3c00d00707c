package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-matrix/ferry/app"
)

// cmdImport: !import <export ID | archive URL>. A URL must lie in Ferry's
// storage or in storage.import_from (the app's Preview checks it).
//
// The bot never imports: an import needs a stopped target homeserver,
// and the bot lives on a running one. It validates the archive and shows
// what an import would carry and lose (the fidelity preview), then prints
// the exact commands to run on the target machine, dry run first. An
// encrypted archive needs its key, which must not go through chat: the
// bot answers with a one-time HTTPS form (unlock.go) for this one
// archive's key line and posts the preview when it gets it.
func (h *Handlers) cmdImport() *Command {
	return &Command{Path: []string{"import"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID|URL",
		Summary: "check an archive and preview an import into Dendrite; prints the commands that import it",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			req := app.PreviewRequest{Export: inv.Args[0], By: actor(inv)}
			if strings.Contains(inv.Args[0], "://") {
				req = app.PreviewRequest{Location: inv.Args[0], By: actor(inv)}
			} else if _, err := h.findExport(ctx, inv.Args[0]); err != nil {
				return "", err
			}
			p, err := h.Svc.Preview(ctx, req)
			if errors.Is(err, app.ErrNeedKey) {
				link := h.Chat.AskKey(inv, p.Label, req)
				return fmt.Sprintf("`%s` is encrypted, and I hold no key that opens it. Don't send me one here (chat messages are stored by the homeserver): "+
					"run `bot archive key --identity YOUR-IDENTITY-FILE ARCHIVE` (it prints the key of this one archive) and paste the line at %s "+
					"(one use, %s); I'll post the preview here and forget the key.\n%s", p.Label, link, UnlockWindow, importCommands(p.Label)), nil
			}
			if err != nil {
				return "", err
			}
			return PreviewText(p), nil
		}}
}

// importCommands are the commands that import an archive on the target.
func importCommands(label string) string {
	return fmt.Sprintf("To import, on the target machine with Dendrite stopped (never into the server I live on):\n"+
		"`bot import --target dendrite --config /etc/dendrite/dendrite.yaml --identity YOUR-IDENTITY-FILE --dry-run %s`\n"+
		"then the same without `--dry-run`. Add `--migration` to keep access tokens (encrypted archives only).", label)
}

// PreviewText is the reply with an import preview.
func PreviewText(p *app.Preview) string {
	m := p.Manifest
	verdict := "✅ valid"
	if !p.OK() {
		verdict = fmt.Sprintf("❌ %d errors (an import would refuse it)", p.Validation.Errors())
	}
	preview := p.Fidelity
	if len(preview) > 3000 {
		preview = preview[:3000] + "\n…(cut; `bot archive verify` shows it all)"
	}
	rep := p.Validation
	return fmt.Sprintf("`%s`: %s %s export of %s from %s %s: %d records, %d events in %d rooms, %d media files.\n"+
		"What an import into %s would carry and lose:\n%s\n%s",
		p.Label, verdict, m.Export.Type, m.Export.ServerName, m.Export.Source.Implementation, m.Export.Source.Version,
		rep.Records, rep.Events, len(rep.Rooms), rep.Blobs, p.Target, preview, importCommands(p.Label))
}
