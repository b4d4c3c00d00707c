package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Statuses of an export, as the API reports them.
const (
	StatusQueued     = "queued"
	StatusProcessing = "processing"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusCancelled  = "cancelled"
	StatusDeleted    = "deleted" // completed, then its archive was deleted
)

// Export is one export job's record.
type Export struct {
	ID          string
	Kind        string
	Status      string
	RequestedBy string
	Via         string
	Request     string // JSON
	ArchiveID   string
	Name        string
	ArchiveKey  string // key line while an encrypted export is unfinished
	Checkpoint  []byte
	Progress    string // JSON
	Size        int64
	SHA256      string
	Error       string
	Attempts    int
	LeaseOwner  string
	LeaseToken  int64
	LeaseUntil  time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
	FinishedAt  time.Time
	// Notify is where the bot follows the export (its own JSON), kept
	// so that a restarted bot picks the progress message up again.
	Notify string
}

// Running reports whether the job has not ended yet (queued or processing).
func (e *Export) Running() bool { return e.Status == StatusQueued || e.Status == StatusProcessing }

const exportColumns = `id, kind, status, requested_by, via, request, archive_id, name, COALESCE(archive_key, ''), checkpoint,
	COALESCE(progress, ''), size, sha256, error, attempts, COALESCE(lease_owner, ''), lease_token, lease_until, created_at, updated_at, finished_at, notify`

func (s *Store) scanExport(row interface{ Scan(...any) error }) (*Export, error) {
	var e Export
	var checkpoint sql.NullString
	var leaseUntil, created, updated, finished int64
	err := row.Scan(&e.ID, &e.Kind, &e.Status, &e.RequestedBy, &e.Via, &e.Request, &e.ArchiveID, &e.Name, &e.ArchiveKey, &checkpoint,
		&e.Progress, &e.Size, &e.SHA256, &e.Error, &e.Attempts, &e.LeaseOwner, &e.LeaseToken, &leaseUntil, &created, &updated, &finished, &e.Notify)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if e.ArchiveKey != "" {
		if e.ArchiveKey, err = s.seal.open(e.ArchiveKey, exportKeyAAD(e.ID)); err != nil {
			return nil, fmt.Errorf("export %s: its key line: %w", e.ID, err)
		}
	}
	if checkpoint.Valid && checkpoint.String != "" {
		if e.Checkpoint, err = decodeB64(checkpoint.String); err != nil {
			return nil, fmt.Errorf("export %s: stored checkpoint: %w", e.ID, err)
		}
	}
	e.LeaseUntil, e.CreatedAt, e.UpdatedAt = time.UnixMilli(leaseUntil), time.UnixMilli(created), time.UnixMilli(updated)
	if finished > 0 {
		e.FinishedAt = time.UnixMilli(finished)
	}
	return &e, nil
}

// CreateExport records a new queued job (an export, import or
// verification). ArchiveKey, if set, is kept (sealed) until the job ends
// (an import's key line). It sets e's Status and CreatedAt.
func (s *Store) CreateExport(ctx context.Context, e *Export) error {
	now := s.now().UnixMilli()
	var key any
	if e.ArchiveKey != "" {
		key = s.seal.seal(e.ArchiveKey, exportKeyAAD(e.ID))
	}
	_, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_exports (id, kind, status, requested_by, via, request, name, archive_key, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), e.ID, e.Kind, StatusQueued, e.RequestedBy, e.Via, e.Request, e.Name, key, now, now)
	if err != nil {
		return fmt.Errorf("record export %s: %w", e.ID, err)
	}
	e.Status = StatusQueued
	e.CreatedAt, e.UpdatedAt = time.UnixMilli(now), time.UnixMilli(now)
	return nil
}

// GetExport reads one export.
func (s *Store) GetExport(ctx context.Context, id string) (*Export, error) {
	return s.scanExport(s.DB.QueryRowContext(ctx, s.q(`SELECT `+exportColumns+` FROM ferry_exports WHERE id = ?`), id))
}

// Job kinds: the rows of ferry_exports are exports, imports and
// verifications; they share statuses, leases and the audit trail.
const (
	KindExport = "export"
	KindImport = "import"
	KindVerify = "verify"
)

// ListExports returns the newest exports first (imports and
// verifications are listed by ListJobs).
func (s *Store) ListExports(ctx context.Context, limit int) ([]*Export, error) {
	return s.ListJobs(ctx, KindExport, limit)
}

// ListJobs returns the newest jobs of a kind first ("" for every kind).
func (s *Store) ListJobs(ctx context.Context, kind string, limit int) ([]*Export, error) {
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT `+exportColumns+` FROM ferry_exports WHERE ? = '' OR kind = ?
		ORDER BY created_at DESC, id LIMIT ?`), kind, kind, limit)
	if err != nil {
		return nil, err
	}
	return s.scanExports(rows)
}

// ErrLeaseHeld: another worker holds a live lease on the export.
var ErrLeaseHeld = errors.New("another worker is running this export")

// ErrLeaseLost: this worker's lease was taken over; it must stop writing.
var ErrLeaseLost = errors.New("lease on this export was lost to another worker: stopping without writing")

// AcquireLease makes owner the export's runner until now+ttl and returns
// the fencing token, which grows with every acquisition. A live lease of
// another owner is refused with ErrLeaseHeld.
func (s *Store) AcquireLease(ctx context.Context, id, owner string, ttl time.Duration) (int64, error) {
	now := s.now()
	res, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_exports SET lease_owner = ?, lease_token = lease_token + 1, lease_until = ?,
		status = ?, attempts = attempts + 1, updated_at = ?
		WHERE id = ? AND (lease_owner IS NULL OR lease_owner = '' OR lease_until < ? OR lease_owner = ?)`),
		owner, now.Add(ttl).UnixMilli(), StatusProcessing, now.UnixMilli(), id, now.UnixMilli(), owner)
	if err != nil {
		return 0, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.GetExport(ctx, id); err != nil {
			return 0, err
		}
		return 0, ErrLeaseHeld
	}
	var token int64
	err = s.DB.QueryRowContext(ctx, s.q(`SELECT lease_token FROM ferry_exports WHERE id = ? AND lease_owner = ?`), id, owner).Scan(&token)
	return token, err
}

// Heartbeat extends the lease; ErrLeaseLost when the token is stale.
func (s *Store) Heartbeat(ctx context.Context, id string, token int64, ttl time.Duration) error {
	now := s.now()
	res, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_exports SET lease_until = ?, updated_at = ? WHERE id = ? AND lease_token = ?`),
		now.Add(ttl).UnixMilli(), now.UnixMilli(), id, token)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// CheckLease is the fencing check made before every part is written.
func (s *Store) CheckLease(ctx context.Context, id string, token int64) error {
	var current int64
	if err := s.DB.QueryRowContext(ctx, s.q(`SELECT lease_token FROM ferry_exports WHERE id = ?`), id).Scan(&current); err != nil {
		return err
	}
	if current != token {
		return ErrLeaseLost
	}
	return nil
}

// ReleaseLease clears the lease (at the end of a run, whatever its outcome).
func (s *Store) ReleaseLease(ctx context.Context, id string, token int64) error {
	_, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_exports SET lease_owner = NULL, lease_until = 0 WHERE id = ? AND lease_token = ?`), id, token)
	return err
}

// fenced runs an update only while token is still the export's lease.
func (s *Store) fenced(ctx context.Context, id string, token int64, set string, args ...any) error {
	args = append(args, s.now().UnixMilli(), id, token)
	res, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_exports SET `+set+`, updated_at = ? WHERE id = ? AND lease_token = ?`), args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// StartArchive records the archive ID and (for encrypted exports) the key
// line needed to resume, sealed.
func (s *Store) StartArchive(ctx context.Context, id string, token int64, archiveID, keyLine string) error {
	var key any
	if keyLine != "" {
		key = s.seal.seal(keyLine, exportKeyAAD(id))
	}
	return s.fenced(ctx, id, token, `archive_id = ?, archive_key = ?`, archiveID, key)
}

// SaveCheckpoint stores the writer's checkpoint (fenced).
func (s *Store) SaveCheckpoint(ctx context.Context, id string, token int64, checkpoint []byte) error {
	return s.fenced(ctx, id, token, `checkpoint = ?`, encodeB64(checkpoint))
}

// SaveProgress stores the progress JSON (fenced).
func (s *Store) SaveProgress(ctx context.Context, id string, token int64, progress string) error {
	return s.fenced(ctx, id, token, `progress = ?`, progress)
}

// Finish records the end of an export and forgets its key and checkpoint.
func (s *Store) Finish(ctx context.Context, id, status string, size int64, sha256, errMsg string) error {
	now := s.now().UnixMilli()
	// The lease token moves on: a worker still running this export fails
	// its next fenced write and stops.
	_, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_exports SET status = ?, size = ?, sha256 = ?, error = ?, archive_key = NULL,
		checkpoint = NULL, lease_owner = NULL, lease_token = lease_token + 1, lease_until = 0, updated_at = ?, finished_at = ? WHERE id = ?`),
		status, size, sha256, errMsg, now, now, id)
	return err
}

// SetJob records the River job working an export.
func (s *Store) SetJob(ctx context.Context, id string, jobID int64) error {
	_, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_exports SET river_job_id = ? WHERE id = ?`), jobID, id)
	return err
}

// JobOf returns the River job working an export (0: none recorded).
func (s *Store) JobOf(ctx context.Context, id string) (int64, error) {
	var jobID int64
	err := s.DB.QueryRowContext(ctx, s.q(`SELECT river_job_id FROM ferry_exports WHERE id = ?`), id).Scan(&jobID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return jobID, err
}

// RecordError notes a failed attempt that will be retried.
func (s *Store) RecordError(ctx context.Context, id string, errMsg string) error {
	_, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_exports SET error = ?, updated_at = ? WHERE id = ?`), errMsg, s.now().UnixMilli(), id)
	return err
}

// StatusCount is how many exports are in a status, with their total size
// and the summed run time of the finished ones.
type StatusCount struct {
	Kind    string
	Status  string
	Count   int64
	Bytes   int64
	Seconds float64
}

// CountByStatus summarises the jobs of every kind for metrics.
func (s *Store) CountByStatus(ctx context.Context) ([]StatusCount, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT kind, status, count(*), COALESCE(sum(size), 0),
		COALESCE(sum(CASE WHEN finished_at > 0 THEN finished_at - created_at ELSE 0 END), 0) FROM ferry_exports
		GROUP BY kind, status ORDER BY kind, status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StatusCount
	for rows.Next() {
		var c StatusCount
		var ms int64
		if err := rows.Scan(&c.Kind, &c.Status, &c.Count, &c.Bytes, &ms); err != nil {
			return nil, err
		}
		c.Seconds = float64(ms) / 1000
		out = append(out, c)
	}
	return out, rows.Err()
}

// LastScheduledSuccess returns, per schedule, when its newest completed
// export finished.
func (s *Store) LastScheduledSuccess(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT requested_by, max(finished_at) FROM ferry_exports
		WHERE kind = 'export' AND via = 'schedule' AND status IN (?, ?) GROUP BY requested_by`), StatusCompleted, StatusDeleted)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var who string
		var ms int64
		if err := rows.Scan(&who, &ms); err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(who, "schedule:")] = time.UnixMilli(ms)
	}
	return out, rows.Err()
}

// CountRequested counts the exports requestedBy asked for through via
// since a time (rate limits).
func (s *Store) CountRequested(ctx context.Context, requestedBy, via string, since time.Time) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, s.q(`SELECT count(*) FROM ferry_exports WHERE requested_by = ? AND via = ? AND created_at >= ?`),
		requestedBy, via, since.UnixMilli()).Scan(&n)
	return n, err
}

// SetNotify records where the bot follows an export.
func (s *Store) SetNotify(ctx context.Context, id, notify string) error {
	_, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_exports SET notify = ? WHERE id = ?`), notify, id)
	return err
}

// ExportByName reads the newest export that published an archive of this
// name (ErrNotFound: none did).
func (s *Store) ExportByName(ctx context.Context, name string) (*Export, error) {
	return s.scanExport(s.DB.QueryRowContext(ctx, s.q(`SELECT `+exportColumns+` FROM ferry_exports WHERE kind = ? AND name = ?
		AND status IN (?, ?) ORDER BY created_at DESC LIMIT 1`), KindExport, name, StatusCompleted, StatusDeleted))
}

// MarkDeleted records that a completed export's archive was deleted. Its
// finished time stays when it was published (the schedules' last
// success); ErrNotFound: no completed export of that ID.
func (s *Store) MarkDeleted(ctx context.Context, id string) error {
	res, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_exports SET status = ?, size = 0, updated_at = ? WHERE id = ? AND status = ?`),
		StatusDeleted, s.now().UnixMilli(), id, StatusCompleted)
	if err != nil {
		return fmt.Errorf("mark export %s deleted: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return nil
}
