package matrixbot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/ferry-matrix/ferry/chatcmd"
	"github.com/ferry-matrix/ferry/internal/human"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// cmdExportVerify: !export verify <id>.
//
// Ferry holds no key that opens a finished archive, so the bot checks
// what it can without one: the stored archive still has the size and
// SHA-256 recorded when it was published (storage corruption, truncation,
// a replaced object), and its wrapped key is there and is an age file.
// The reply gives the command that checks everything inside with the
// admin's key.
func (b *Bot) cmdExportVerify() *chatcmd.Command {
	return &chatcmd.Command{Path: []string{"export", "verify"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "check that a finished archive in storage is intact (size, SHA-256, key file)",
		Run: func(ctx context.Context, inv *chatcmd.Invocation) (string, error) {
			e, err := b.completedExport(ctx, inv.Args[0], "verify")
			if err != nil {
				return "", err
			}
			key := storage.ArchiveKey(e.Name)
			r, err := b.jobs.Storage.Range(ctx, key, 0, -1)
			if err != nil {
				return "", fmt.Errorf("the archive %s is gone from storage (deleted by retention or by hand?): %w", key, err)
			}
			h := sha256.New()
			n, err := io.Copy(h, r)
			r.Close()
			if err != nil {
				return "", fmt.Errorf("reading %s failed after %s: %w", key, human.Bytes(n), err)
			}
			sum := hex.EncodeToString(h.Sum(nil))
			if n != e.Size || sum != e.SHA256 {
				b.jobs.Store.Audit(ctx, store.AuditEntry{Actor: inv.Sender, Via: "room " + inv.RoomID, Action: "export.verify", Target: e.ID, Outcome: "corrupt",
					Detail: fmt.Sprintf("%d bytes sha256 %s, recorded %d bytes sha256 %s", n, sum, e.Size, e.SHA256)})
				return fmt.Sprintf("❌ Archive `%s` is damaged: it has %s with SHA-256 `%s`, but was published with %s and `%s`. Don't rely on it; run a new export.",
					key, human.Bytes(n), sum, human.Bytes(e.Size), e.SHA256), nil
			}
			kr, err := b.jobs.Storage.Range(ctx, key+storage.KeyExt, 0, 64)
			if err != nil {
				return "", fmt.Errorf("the archive is intact, but its key file %s%s is missing: without it nobody can open the archive", key, storage.KeyExt)
			}
			head, _ := io.ReadAll(kr)
			kr.Close()
			if !bytes.HasPrefix(head, []byte("age-encryption.org/v1")) {
				return "", fmt.Errorf("the archive is intact, but its key file %s%s is not an age file", key, storage.KeyExt)
			}
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
