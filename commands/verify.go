package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-matrix/ferry/app"
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
func (h *Handlers) cmdExportVerify() *Command {
	return &Command{Path: []string{"export", "verify"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "check that a finished archive in storage is intact (size, SHA-256, key file)",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			e, err := h.completedExport(ctx, inv.Args[0], "verify")
			if err != nil {
				return "", err
			}
			got, err := h.Svc.CheckStored(ctx, e.ID, actor(inv))
			if errors.Is(err, app.ErrDamaged) {
				return fmt.Sprintf("❌ %v", err), nil
			}
			if err != nil {
				return "", err
			}
			intact := fmt.Sprintf("✅ Archive `%s` is intact: %s, SHA-256 `%s` as published, key file present.", got.Key, human.Bytes(got.Size), got.SHA256)
			if h.Svc.ChecksContents() {
				v, err := h.Svc.Verify(ctx, "ver-"+JobID(inv.EventID), e.ID, actor(inv))
				if err != nil {
					return "", err
				}
				h.Chat.Await(inv.RoomID, inv.EventID, v.ID, verifiedText)
				return fmt.Sprintf("%s Now checking every record and signature inside (job `%s`); I'll post the result here.", intact, v.ID), nil
			}
			file := e.ArchiveFile()
			return fmt.Sprintf("%s I hold no key that opens it; to check every record and signature inside, run `bot archive verify --identity YOUR-IDENTITY-FILE --key-file %s%s %s` on a download.",
				intact, file, storage.KeyExt, file), nil
		}}
}

// verifiedText is the reply to !export verify when its verify job ends.
func verifiedText(v *app.View) string {
	switch v.Status {
	case app.StatusCompleted:
		return "✅ Verified: " + v.Progress.Result
	case app.StatusFailed:
		return "❌ Verification failed: " + v.Error
	}
	return "The verification `" + v.ID + "` was " + string(v.Status) + "."
}

// cmdExportDelete: !export delete <id>, after !confirm.
func (h *Handlers) cmdExportDelete() *Command {
	return &Command{Path: []string{"export", "delete"}, Admin: true, MinArgs: 1, MaxArgs: 1, Usage: "ID",
		Summary: "delete a finished archive and its key file (asks for confirmation)",
		Run: func(ctx context.Context, inv *Invocation) (string, error) {
			e, err := h.completedExport(ctx, inv.Args[0], "delete (`!export cancel` stops a running one)")
			if err != nil {
				return "", err
			}
			file := e.ArchiveFile()
			return h.Chat.Ask(inv, fmt.Sprintf("deletes `%s` (%s) and its key file", file, human.Bytes(e.Size)), func(ctx context.Context) (string, error) {
				if _, err := h.Svc.Delete(ctx, e.ID, actor(inv)); err != nil {
					return "", err
				}
				return fmt.Sprintf("Deleted `%s` and its key file.", file), nil
			}), nil
		}}
}
