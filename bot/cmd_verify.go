package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/commands"
	"github.com/ferry-matrix/ferry/internal/human"
	"github.com/ferry-matrix/ferry/storage"
)

// cmdExportVerify: !export verify <id>.
//
// The bot checks at once what it can without a key (app CheckStored):
// the stored archive still has the size and SHA-256 recorded when it was
// published (storage corruption, truncation, a replaced object), and its
// wrapped key is there and is an age file. When Ferry holds an identity
// that opens archives, a verify job then checks every record and
// signature inside, and its result is posted here; otherwise the reply
// gives the command that checks everything inside with the admin's key.
func (b *Bot) cmdExportVerify() *commands.Command {
	return &commands.Command{Path: []string{"export", "verify"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "check that a finished archive in storage is intact (size, SHA-256, key file)",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			e, err := b.completedExport(ctx, inv.Args[0], "verify")
			if err != nil {
				return "", err
			}
			got, err := b.svc.CheckStored(ctx, e.ID, actor(inv))
			if errors.Is(err, app.ErrDamaged) {
				return fmt.Sprintf("❌ %v", err), nil
			}
			if err != nil {
				return "", err
			}
			intact := fmt.Sprintf("✅ Archive `%s` is intact: %s, SHA-256 `%s` as published, key file present.", got.Key, human.Bytes(got.Size), got.SHA256)
			if b.svc.ChecksContents() {
				v, err := b.svc.Verify(ctx, "ver-"+jobID(inv.EventID), e.ID, actor(inv))
				if err != nil {
					return "", err
				}
				go b.postWhenDone(id.RoomID(inv.RoomID), id.EventID(inv.EventID), v.ID)
				return fmt.Sprintf("%s Now checking every record and signature inside (job `%s`); I'll post the result here.", intact, v.ID), nil
			}
			file := e.ArchiveFile()
			return fmt.Sprintf("%s I hold no key that opens it; to check every record and signature inside, run `bot archive verify --identity YOUR-IDENTITY-FILE --key-file %s%s %s` on a download.",
				intact, file, storage.KeyExt, file), nil
		}}
}

// postWhenDone waits for a verify job and replies with its outcome. The
// wait is not kept across restarts; the outcome is in the audit log and
// the API (GET /api/v1/jobs/ID) either way.
func (b *Bot) postWhenDone(room id.RoomID, replyTo id.EventID, jobID string) {
	b.mu.Lock()
	ctx := b.runCtx
	b.mu.Unlock()
	t := time.NewTicker(b.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		j, err := b.svc.Get(ctx, jobID)
		if err != nil {
			continue
		}
		switch j.Status {
		case app.StatusCompleted:
			b.send(ctx, room, replyTo, "✅ Verified: "+j.Progress.Result)
			return
		case app.StatusFailed:
			b.send(ctx, room, replyTo, "❌ Verification failed: "+j.Error)
			return
		case app.StatusCancelled:
			b.send(ctx, room, replyTo, "The verification `"+jobID+"` was cancelled.")
			return
		}
	}
}

// cmdExportDelete: !export delete <id>, after !confirm.
func (b *Bot) cmdExportDelete() *commands.Command {
	return &commands.Command{Path: []string{"export", "delete"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "delete a finished archive and its key file (asks for confirmation)",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
			e, err := b.completedExport(ctx, inv.Args[0], "delete (`!export cancel` stops a running one)")
			if err != nil {
				return "", err
			}
			file := e.ArchiveFile()
			return b.ask(inv, fmt.Sprintf("deletes `%s` (%s) and its key file", file, human.Bytes(e.Size)), func(ctx context.Context) (string, error) {
				if _, err := b.svc.Delete(ctx, e.ID, actor(inv)); err != nil {
					return "", err
				}
				return fmt.Sprintf("Deleted `%s` and its key file.", file), nil
			}), nil
		}}
}
