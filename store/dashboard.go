package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Grant is what a dashboard login link or session lets its holder do:
// act as User with Role (the dashboard's "admin" or "user").
type Grant struct {
	User    string
	Role    string
	Expires time.Time
}

// PutLogin records a one-time dashboard login link's token (only its
// hash) until expires. Expired links are deleted on the way: links
// nobody used would otherwise stay for ever.
func (s *Store) PutLogin(ctx context.Context, token string, g Grant) error {
	if _, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM ferry_dashboard_logins WHERE expires_at <= ?`), s.now().UnixMilli()); err != nil {
		return err
	}
	_, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_dashboard_logins (token_hash, user_id, role, expires_at) VALUES (?, ?, ?, ?)`),
		tokenHash(token), g.User, g.Role, g.Expires.UnixMilli())
	return err
}

// PeekLogin reads a login link's grant without using it up; ErrGone: it
// was used, has expired, or never existed.
func (s *Store) PeekLogin(ctx context.Context, token string) (*Grant, error) {
	return s.scanGrant(s.DB.QueryRowContext(ctx, s.q(`SELECT user_id, role, expires_at FROM ferry_dashboard_logins
		WHERE token_hash = ? AND expires_at > ?`), tokenHash(token), s.now().UnixMilli()))
}

// ConsumeLogin uses a login link up: it is deleted in the same statement
// that reads it, so two concurrent uses can't both succeed. Expired links
// are deleted on the way.
func (s *Store) ConsumeLogin(ctx context.Context, token string) (*Grant, error) {
	now := s.now().UnixMilli()
	if _, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM ferry_dashboard_logins WHERE expires_at <= ?`), now); err != nil {
		return nil, err
	}
	return s.scanGrant(s.DB.QueryRowContext(ctx, s.q(`DELETE FROM ferry_dashboard_logins WHERE token_hash = ? AND expires_at > ?
		RETURNING user_id, role, expires_at`), tokenHash(token), now))
}

// PutSession records a dashboard session (only its token's hash).
// Expired sessions are deleted on the way (one nobody signed out of
// would otherwise stay for ever).
func (s *Store) PutSession(ctx context.Context, token string, g Grant) error {
	if _, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM ferry_dashboard_sessions WHERE expires_at <= ?`), s.now().UnixMilli()); err != nil {
		return err
	}
	_, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_dashboard_sessions (token_hash, user_id, role, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
		tokenHash(token), g.User, g.Role, s.now().UnixMilli(), g.Expires.UnixMilli())
	return err
}

// Session reads a live session; ErrGone: expired, ended or unknown.
func (s *Store) Session(ctx context.Context, token string) (*Grant, error) {
	return s.scanGrant(s.DB.QueryRowContext(ctx, s.q(`SELECT user_id, role, expires_at FROM ferry_dashboard_sessions
		WHERE token_hash = ? AND expires_at > ?`), tokenHash(token), s.now().UnixMilli()))
}

// EndSession deletes a session, and every expired one.
func (s *Store) EndSession(ctx context.Context, token string) error {
	_, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM ferry_dashboard_sessions WHERE token_hash = ? OR expires_at <= ?`),
		tokenHash(token), s.now().UnixMilli())
	return err
}

func (s *Store) scanGrant(row *sql.Row) (*Grant, error) {
	var g Grant
	var exp int64
	err := row.Scan(&g.User, &g.Role, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrGone
	}
	if err != nil {
		return nil, err
	}
	g.Expires = time.UnixMilli(exp)
	return &g, nil
}

// AuditQuery selects audit entries: every field set narrows it.
type AuditQuery struct {
	Actor   string // exactly this actor
	Action  string // actions starting with this ("export" matches export.create, ...)
	Since   time.Time
	Until   time.Time
	Targets []string // any of these targets
	Offset  int
	Limit   int // default 50
}

// QueryAudit returns the entries q selects, newest first, and whether
// more follow the page.
func (s *Store) QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, bool, error) {
	var where []string
	var args []any
	if q.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, q.Actor)
	}
	if q.Action != "" {
		where, args = append(where, "substr(action, 1, ?) = ?"), append(args, len(q.Action), q.Action)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, q.Until.UnixMilli())
	}
	if len(q.Targets) > 0 {
		where = append(where, "target IN (?"+strings.Repeat(", ?", len(q.Targets)-1)+")")
		for _, t := range q.Targets {
			args = append(args, t)
		}
	}
	if q.Limit <= 0 {
		q.Limit = 50
	}
	query := `SELECT at, actor, via, action, target, outcome, detail FROM ferry_audit`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY at DESC LIMIT ? OFFSET ?"
	args = append(args, q.Limit+1, max(q.Offset, 0))
	rows, err := s.DB.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, false, fmt.Errorf("read the audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&at, &e.Actor, &e.Via, &e.Action, &e.Target, &e.Outcome, &e.Detail); err != nil {
			return nil, false, err
		}
		e.At = time.UnixMilli(at)
		out = append(out, e)
	}
	more := len(out) > q.Limit
	if more {
		out = out[:q.Limit]
	}
	return out, more, rows.Err()
}

// JobQuery selects jobs: every field set narrows it.
type JobQuery struct {
	Kind        Kind
	RequestedBy string
	Via         string
	Name        string // jobs of one archive (its export, verifications and imports)
	Offset      int    // how many of the newest to skip (paging)
	Limit       int    // default 100
}

// QueryJobs returns the jobs q selects, newest first.
func (s *Store) QueryJobs(ctx context.Context, q JobQuery) ([]*Export, error) {
	var where []string
	var args []any
	for _, f := range []struct{ col, val string }{{"j.kind", string(q.Kind)}, {"j.requested_by", q.RequestedBy}, {"j.via", q.Via}, {"j.name", q.Name}} {
		if f.val != "" {
			where, args = append(where, f.col+" = ?"), append(args, f.val)
		}
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	query := `SELECT ` + jobColumns + jobFrom
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY j.created_at DESC, j.id LIMIT ? OFFSET ?"
	rows, err := s.DB.QueryContext(ctx, s.q(query), append(args, q.Limit, max(q.Offset, 0))...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return s.scanExports(rows)
}

// scanExports reads every row of a query of jobColumns and closes it.
func (s *Store) scanExports(rows *sql.Rows) ([]*Export, error) {
	defer rows.Close()
	var out []*Export
	for rows.Next() {
		e, err := s.scanExport(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
