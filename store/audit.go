package store

import (
	"context"
	"encoding/base64"
	"time"
)

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	At      time.Time
	Actor   string // user ID, API token name, "schedule:<name>", "cli"
	Via     string // room ID, "api", "cli", "schedule"
	Action  string // export.create, export.cancel, download, delete, refused, ...
	Target  string // export ID, archive name
	Outcome string // ok, refused, failed
	Detail  string // never secrets
}

// Audit appends an entry.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = s.now()
	}
	_, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_audit (at, actor, via, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		e.At.UnixMilli(), e.Actor, e.Via, e.Action, e.Target, e.Outcome, e.Detail)
	return err
}

// AuditLog returns the newest entries first.
func (s *Store) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	out, _, err := s.QueryAudit(ctx, AuditQuery{Limit: limit})
	return out, err
}

func encodeB64(b []byte) string          { return base64.StdEncoding.EncodeToString(b) }
func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
