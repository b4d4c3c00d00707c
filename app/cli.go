package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/store"
)

// CLIExport is an export that `bot export` made outside the job service,
// to be listed with the jobs (the dashboard's "how: CLI") and audited.
type CLIExport struct {
	// RequestedBy names who ran it: "cli:USER@HOST".
	RequestedBy string
	// Request is what was asked: the source's implementation, the
	// selection and options, and Name, the archive's file or directory
	// name. Recipients are not kept (they say who can open it, which the
	// ledger does not need).
	Request jobs.Request
	// Location is where the archive went (a path or a bucket URL, kept
	// without its parameters): it is not in Ferry's storage, so the
	// dashboard offers no download link.
	Location  string
	ArchiveID string
	Size      int64
	SHA256    string
	Started   time.Time
}

// RecordCLIExport records a finished CLI export in the state database st
// (the ledger of jobs, Via "cli") and its audit log, and returns its ID.
// The archive itself stays where the CLI wrote it.
func RecordCLIExport(ctx context.Context, st *store.Store, x CLIExport) (string, error) {
	if x.Location == "" || x.ArchiveID == "" || x.RequestedBy == "" {
		return "", errors.New("record a CLI export: its location, archive ID and who ran it are required")
	}
	x.Request.Recipients = nil
	req, err := json.Marshal(x.Request)
	if err != nil {
		return "", err
	}
	e := &store.Export{ID: NewID(), RequestedBy: x.RequestedBy, Via: "cli", Request: string(req), Name: x.Request.Name,
		Location: showLocation(x.Location), ArchiveID: x.ArchiveID, Size: x.Size, SHA256: x.SHA256, CreatedAt: x.Started}
	if err := st.RecordExport(ctx, e); err != nil {
		return "", err
	}
	if err := st.Audit(ctx, store.AuditEntry{Actor: x.RequestedBy, Via: "cli", Action: "export.finish", Target: e.ID, Outcome: "ok",
		Detail: fmt.Sprintf("archive %s written to %s", x.ArchiveID, e.Location)}); err != nil {
		return e.ID, fmt.Errorf("export %s is recorded, but its audit entry could not be written: %w", e.ID, err)
	}
	return e.ID, nil
}
