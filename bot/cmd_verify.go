package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/commands"
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
func (b *Bot) cmdExportVerify() *commands.Command {
	return &commands.Command{Path: []string{"export", "verify"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "check that a finished archive in storage is intact (size, SHA-256, key file)",
		Run: func(ctx context.Context, inv *commands.Invocation) (string, error) {
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
			if len(b.jobs.Identities) > 0 {
				// Ferry was given an identity (encryption.identity_file):
				// a verify job checks the contents, and its result is
				// posted here when it ends.
				v, err := b.jobs.SubmitVerify(ctx, "ver-"+jobID(inv.EventID), e.ID, inv.Sender, "room "+inv.RoomID)
				if err != nil {
					return "", err
				}
				go b.postWhenDone(id.RoomID(inv.RoomID), id.EventID(inv.EventID), v.ID)
				return fmt.Sprintf("✅ Archive `%s` is intact: %s, SHA-256 `%s` as published, key file present. "+
					"Now checking every record and signature inside (job `%s`); I'll post the result here.", key, human.Bytes(n), sum, v.ID), nil
			}
			return fmt.Sprintf("✅ Archive `%s` is intact: %s, SHA-256 `%s` as published, key file present. "+
				"I hold no key that opens it; to check every record and signature inside, run `bot archive verify --identity YOUR-IDENTITY-FILE --key-file %s%s %s` on a download.",
				key, human.Bytes(n), sum, e.Name+storage.ArchiveExt, storage.KeyExt, e.Name+storage.ArchiveExt), nil
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
		j, err := b.jobs.Store.GetExport(ctx, jobID)
		if err != nil {
			continue
		}
		var p jobs.Progress
		json.Unmarshal([]byte(j.Progress), &p)
		switch j.Status {
		case store.StatusCompleted:
			b.send(ctx, room, replyTo, "✅ Verified: "+p.Result)
			return
		case store.StatusFailed:
			b.send(ctx, room, replyTo, "❌ Verification failed: "+j.Error)
			return
		case store.StatusCancelled:
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
