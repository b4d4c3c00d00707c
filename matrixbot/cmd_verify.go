package matrixbot

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-matrix/ferry/chatcmd"
	"github.com/ferry-matrix/ferry/internal/human"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// cmdExportVerify: !export verify <id>.
//
// Ferry holds no key that opens a finished archive, so the bot checks
// what it can without one (jobs.CheckStored): the stored archive still has
// the size and SHA-256 recorded when it was published (storage corruption,
// truncation, a replaced object), and its wrapped key is there and is an
// age file. The reply gives the command that checks everything inside
// with the admin's key. (Verify jobs, from the API or a schedule's verify
// option, also check the contents when Ferry is given an identity.)
func (b *Bot) cmdExportVerify() *chatcmd.Command {
	return &chatcmd.Command{Path: []string{"export", "verify"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "check that a finished archive in storage is intact (size, SHA-256, key file)",
		Run: func(ctx context.Context, inv *chatcmd.Invocation) (string, error) {
			e, err := b.completedExport(ctx, inv.Args[0], "verify")
			if err != nil {
				return "", err
			}
			got, err := b.jobs.CheckStored(ctx, e)
			if errors.Is(err, jobs.ErrDamaged) {
				b.jobs.Store.Audit(ctx, store.AuditEntry{Actor: inv.Sender, Via: "room " + inv.RoomID, Action: "export.verify", Target: e.ID, Outcome: "corrupt", Detail: err.Error()})
				return fmt.Sprintf("❌ %v", err), nil
			}
			if err != nil {
				return "", err
			}
			b.jobs.Store.Audit(ctx, store.AuditEntry{Actor: inv.Sender, Via: "room " + inv.RoomID, Action: "export.verify", Target: e.ID, Outcome: "ok", Detail: "size and SHA-256 as published"})
			key, n, sum := got.Key, got.Size, got.SHA256
			return fmt.Sprintf("✅ Archive `%s` is intact: %s, SHA-256 `%s` as published, key file present. "+
				"I hold no key that opens it; to check every record and signature inside, run `bot archive verify --identity YOUR-IDENTITY-FILE --key-file %s%s %s` on a download.",
				key, human.Bytes(n), sum, e.Name+storage.ArchiveExt, storage.KeyExt, e.Name+storage.ArchiveExt), nil
		}}
}

// cmdExportDelete: !export delete <id>, after !confirm.
func (b *Bot) cmdExportDelete() *chatcmd.Command {
	return &chatcmd.Command{Path: []string{"export", "delete"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "delete a finished archive and its key file (asks for confirmation)",
		Run: func(ctx context.Context, inv *chatcmd.Invocation) (string, error) {
			e, err := b.completedExport(ctx, inv.Args[0], "delete (`!export cancel` stops a running one)")
			if err != nil {
				return "", err
			}
			key := storage.ArchiveKey(e.Name)
			return b.ask(inv, fmt.Sprintf("deletes `%s` (%s) and its key file", key, human.Bytes(e.Size)), func(ctx context.Context) (string, error) {
				if err := b.jobs.Storage.Delete(ctx, key); err != nil {
					return "", fmt.Errorf("could not delete %s: %w", key, err)
				}
				b.jobs.Storage.Delete(ctx, key+storage.KeyExt)
				b.jobs.Store.Finish(ctx, e.ID, store.StatusDeleted, 0, e.SHA256, "")
				b.jobs.Store.Audit(ctx, store.AuditEntry{Actor: inv.Sender, Via: "room " + inv.RoomID, Action: "export.delete", Target: e.ID, Outcome: "ok", Detail: key})
				return fmt.Sprintf("Deleted `%s` and its key file.", key), nil
			}), nil
		}}
}
