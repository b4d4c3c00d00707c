package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The ledger (ferry_jobs) records every job Ferry was asked to do and what
// it produced: who asked and how, what was asked (the request), the
// archive's ID, name, key line and checkpoint while it is written, its
// published size and SHA-256, progress for display, and the outcome with
// its error once the job has ended.
//
// It holds no queue or run state: that is River's job (river_job), the
// one state machine. A job's Status is read from both: the ledger's
// outcome once it has one, else its River job's state (statusExpr).
//
// What River does not give is fencing. A run claims its row (Claim) and
// gets the row's next fencing token; every write a run makes (archive
// ID and key, checkpoint, progress, each archive part through CheckFence,
// the publication, the outcome) names its token and fails with ErrFenced
// once another run claimed the row or the job ended. So two runs never
// write one archive, whatever River's rescue or a duplicated client does.

// Status of a job, as the API, the dashboard and chat report it.
type Status string

const (
	StatusQueued     Status = "queued"     // waiting for its first run
	StatusProcessing Status = "processing" // running, or between attempts
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
	StatusCancelled  Status = "cancelled"
	StatusDeleted    Status = "deleted" // completed, then its archive was deleted
)

// Kind of a job: the ledger's rows are exports, imports and verifications;
// they share statuses, fencing and the audit trail.
type Kind string

const (
	KindExport Kind = "export"
	KindImport Kind = "import"
	KindVerify Kind = "verify"
)

// Export is one job's ledger row (of any Kind), with its Status.
type Export struct {
	ID          string
	Kind        Kind
	Status      Status // the outcome, or what River's job says (read only)
	RequestedBy string
	Via         string
	Request     string // JSON
	ArchiveID   string
	Name        string
	// Location is where a CLI export wrote its archive (RecordExport);
	// empty for the archives in Ferry's storage, named Name.
	Location   string
	ArchiveKey string // key line while an encrypted export (or an import) is unfinished
	Checkpoint []byte
	Progress   string // JSON
	Size       int64
	SHA256     string
	Error      string
	Attempts   int   // runs that claimed the row
	Fence      int64 // the current fencing token
	RiverJobID int64 // the River job that runs it (0: none recorded)
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time
}

// Running reports whether the job has not ended yet (queued or processing).
func (e *Export) Running() bool { return e.Status == StatusQueued || e.Status == StatusProcessing }

// statusExpr derives a job's status from its outcome and its River job
// (j: ferry_jobs, r: river_job). A job with an outcome has ended. Without
// one, River's state says where it is: running is processing; a job that
// was claimed before (attempts) and waits again (retryable, rescued,
// snoozed) is still processing, as it was before this job ran on River
// alone; one never claimed is queued. A River job that ended without the
// ledger hearing of it (discarded by River's rescuer after its last
// attempt, or deleted by River's cleaner) is failed; so is one River
// completed without an outcome recorded (its run returned without
// finishing the row: there may be no archive); cancelled is taken as
// River says. (PostgreSQL's river_job.state is an
// enum: compared with literals only, never returned.)
const statusExpr = `CASE
	WHEN j.outcome <> '' THEN j.outcome
	WHEN r.id IS NULL AND j.river_job_id <> 0 THEN 'failed'
	WHEN r.id IS NULL THEN 'queued'
	WHEN r.state = 'running' THEN 'processing'
	WHEN r.state = 'discarded' THEN 'failed'
	WHEN r.state = 'cancelled' THEN 'cancelled'
	WHEN r.state = 'completed' THEN 'failed'
	WHEN j.attempts > 0 THEN 'processing'
	ELSE 'queued' END`

// jobFrom is the ledger with each row's River job.
const jobFrom = ` FROM ferry_jobs j LEFT JOIN river_job r ON r.id = j.river_job_id`

const jobColumns = `j.id, j.kind, ` + statusExpr + `, j.requested_by, j.via, j.request, j.archive_id, j.name, j.location,
	COALESCE(j.archive_key, ''), j.checkpoint, COALESCE(j.progress, ''), j.size, j.sha256, j.error, j.attempts, j.fence, j.river_job_id,
	j.created_at, j.updated_at, j.finished_at`

func (s *Store) scanExport(row interface{ Scan(...any) error }) (*Export, error) {
	var e Export
	var checkpoint sql.NullString
	var created, updated, finished int64
	err := row.Scan(&e.ID, &e.Kind, &e.Status, &e.RequestedBy, &e.Via, &e.Request, &e.ArchiveID, &e.Name, &e.Location,
		&e.ArchiveKey, &checkpoint, &e.Progress, &e.Size, &e.SHA256, &e.Error, &e.Attempts, &e.Fence, &e.RiverJobID,
		&created, &updated, &finished)
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
	if e.Status == StatusFailed && e.Error == "" && e.RiverJobID != 0 {
		e.Error = "its job ended without recording why (given up after its last attempt, or its job record is gone)"
	}
	e.CreatedAt, e.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	if finished > 0 {
		e.FinishedAt = time.UnixMilli(finished)
	}
	return &e, nil
}

// CreateExport records a new job (an export, import or verification)
// before its River job is queued (SetJob then names it). ArchiveKey, if
// set, is kept (sealed) until the job ends (an import's key line). It sets
// e's Status and CreatedAt.
func (s *Store) CreateExport(ctx context.Context, e *Export) error {
	now := s.now().UnixMilli()
	var key any
	if e.ArchiveKey != "" {
		key = s.seal.seal(e.ArchiveKey, exportKeyAAD(e.ID))
	}
	_, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_jobs (id, kind, requested_by, via, request, name, archive_key, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`), e.ID, e.Kind, e.RequestedBy, e.Via, e.Request, e.Name, key, now, now)
	if err != nil {
		return fmt.Errorf("record %s %s: %w", e.Kind, e.ID, err)
	}
	e.Status = StatusQueued
	e.CreatedAt, e.UpdatedAt = time.UnixMilli(now), time.UnixMilli(now)
	return nil
}

// RecordExport records an export that ran outside the job service (the
// CLI's `bot export`, Via "cli") once it is finished: e's ID, RequestedBy,
// Request, Name, Location, ArchiveID, Size and SHA256, with outcome
// completed. It is listed with the others; Location says where its
// archive went, so it is never taken for an archive in Ferry's storage
// (ExportByName, deletion, links).
func (s *Store) RecordExport(ctx context.Context, e *Export) error {
	if e.Location == "" {
		return errors.New("record a CLI export: its Location (where the archive was written) is required")
	}
	now := s.now().UnixMilli()
	created := now
	if !e.CreatedAt.IsZero() {
		created = e.CreatedAt.UnixMilli()
	}
	_, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_jobs (id, kind, requested_by, via, request, name, location, archive_id,
		outcome, size, sha256, created_at, updated_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		e.ID, KindExport, e.RequestedBy, e.Via, cmp.Or(e.Request, "{}"), e.Name, e.Location, e.ArchiveID, StatusCompleted, e.Size, e.SHA256,
		created, now, now)
	if err != nil {
		return fmt.Errorf("record export %s: %w", e.ID, err)
	}
	return nil
}

// GetExport reads one job.
func (s *Store) GetExport(ctx context.Context, id string) (*Export, error) {
	return s.scanExport(s.DB.QueryRowContext(ctx, s.q(`SELECT `+jobColumns+jobFrom+` WHERE j.id = ?`), id))
}

// ListExports returns the newest exports first (imports and
// verifications are listed by ListJobs).
func (s *Store) ListExports(ctx context.Context, limit int) ([]*Export, error) {
	return s.ListJobs(ctx, KindExport, limit)
}

// ListJobs returns the newest jobs of a kind first ("" for every kind).
func (s *Store) ListJobs(ctx context.Context, kind Kind, limit int) ([]*Export, error) {
	return s.QueryJobs(ctx, JobQuery{Kind: kind, Limit: limit})
}

// ErrFenced: the run's fencing token is no longer the row's: another run
// claimed the job, or it ended (completed, cancelled, failed). The run
// must stop without writing.
var ErrFenced = errors.New("this run no longer holds the job (another run claimed it, or it ended): stopping without writing")

// ErrEnded: the job has an outcome already; there is nothing to claim or end.
var ErrEnded = errors.New("the job has ended")

// Claim makes the caller, River job riverJobID, the job's only writer:
// it moves the fencing token on (a run holding the old one fails its next
// write), counts the attempt, records the River job, and returns the new
// token. ErrEnded: the job has an outcome; ErrNotFound: no such job.
func (s *Store) Claim(ctx context.Context, id string, riverJobID int64) (int64, error) {
	var token int64
	err := s.DB.QueryRowContext(ctx, s.q(`UPDATE ferry_jobs SET fence = fence + 1, attempts = attempts + 1, river_job_id = ?, updated_at = ?
		WHERE id = ? AND outcome = '' RETURNING fence`), riverJobID, s.now().UnixMilli(), id).Scan(&token)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.GetExport(ctx, id); err != nil {
			return 0, err
		}
		return 0, ErrEnded
	}
	if err != nil {
		return 0, fmt.Errorf("claim job %s: %w", id, err)
	}
	return token, nil
}

// CheckFence is the fencing check made before every archive part is
// written and before the archive is published.
func (s *Store) CheckFence(ctx context.Context, id string, token int64) error {
	var current int64
	var outcome string
	if err := s.DB.QueryRowContext(ctx, s.q(`SELECT fence, outcome FROM ferry_jobs WHERE id = ?`), id).Scan(&current, &outcome); err != nil {
		return err
	}
	if current != token || outcome != "" {
		return ErrFenced
	}
	return nil
}

// fenced runs an update only while token is still the job's and it has
// no outcome.
func (s *Store) fenced(ctx context.Context, id string, token int64, set string, args ...any) error {
	args = append(args, s.now().UnixMilli(), id, token)
	res, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_jobs SET `+set+`, updated_at = ? WHERE id = ? AND fence = ? AND outcome = ''`), args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrFenced
	}
	return nil
}

// StartArchive records the archive ID and (for encrypted exports) the key
// line needed to resume, sealed (fenced).
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

// RecordError notes a failed attempt that River will retry (fenced).
func (s *Store) RecordError(ctx context.Context, id string, token int64, errMsg string) error {
	return s.fenced(ctx, id, token, `error = ?`, errMsg)
}

// Result is how a job ended.
type Result struct {
	Status Status // StatusCompleted, StatusFailed or StatusCancelled
	Size   int64  // the published archive's
	SHA256 string
	Error  string
}

// end is the update that gives a job its outcome: it forgets the key line
// and checkpoint, and moves the fencing token on, so that a run still
// working the job fails its next write and stops.
const end = `outcome = ?, size = ?, sha256 = ?, error = ?, archive_key = NULL, checkpoint = NULL, fence = fence + 1, finished_at = ?`

// Finish records the outcome of the run holding token (fenced: ErrFenced
// when another run claimed the job or it ended meanwhile, such as a
// cancel).
func (s *Store) Finish(ctx context.Context, id string, token int64, r Result) error {
	return s.fenced(ctx, id, token, end, r.Status, r.Size, r.SHA256, r.Error, s.now().UnixMilli())
}

// End records the outcome of a job no run reports on: a cancel, or a job
// whose River job could not be queued. Whichever run holds the job fails
// its next write. ErrEnded: it has an outcome already; ErrNotFound: no
// such job.
func (s *Store) End(ctx context.Context, id string, r Result) error {
	now := s.now().UnixMilli()
	res, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_jobs SET `+end+`, updated_at = ? WHERE id = ? AND outcome = ''`),
		r.Status, r.Size, r.SHA256, r.Error, now, now, id)
	if err != nil {
		return fmt.Errorf("record the end of job %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.GetExport(ctx, id); err != nil {
			return err
		}
		return ErrEnded
	}
	return nil
}

// SetJob records the River job queued for a job.
func (s *Store) SetJob(ctx context.Context, id string, jobID int64) error {
	_, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_jobs SET river_job_id = ? WHERE id = ?`), jobID, id)
	return err
}

// StatusCount is how many jobs of a kind are in a status, with their
// total size and the summed run time of the finished ones.
type StatusCount struct {
	Kind    Kind
	Status  Status
	Count   int64
	Bytes   int64
	Seconds float64
}

// CountByStatus summarises the jobs of every kind for metrics.
func (s *Store) CountByStatus(ctx context.Context) ([]StatusCount, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT kind, status, count(*), COALESCE(sum(size), 0), COALESCE(sum(ms), 0)
		FROM (SELECT j.kind AS kind, `+statusExpr+` AS status, j.size AS size,
			CASE WHEN j.finished_at > 0 THEN j.finished_at - j.created_at ELSE 0 END AS ms`+jobFrom+`) t
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
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT requested_by, max(finished_at) FROM ferry_jobs
		WHERE kind = ? AND via = 'schedule' AND outcome IN (?, ?) GROUP BY requested_by`), KindExport, StatusCompleted, StatusDeleted)
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

// CountRequested counts the jobs requestedBy asked for through via since
// a time (rate limits).
func (s *Store) CountRequested(ctx context.Context, requestedBy, via string, since time.Time) (int, error) {
	var n int
	err := s.DB.QueryRowContext(ctx, s.q(`SELECT count(*) FROM ferry_jobs WHERE requested_by = ? AND via = ? AND created_at >= ?`),
		requestedBy, via, since.UnixMilli()).Scan(&n)
	return n, err
}

// ExportByName reads the newest export that published an archive of this
// name in Ferry's storage (ErrNotFound: none did).
func (s *Store) ExportByName(ctx context.Context, name string) (*Export, error) {
	return s.scanExport(s.DB.QueryRowContext(ctx, s.q(`SELECT `+jobColumns+jobFrom+` WHERE j.kind = ? AND j.name = ? AND j.location = ''
		AND j.outcome IN (?, ?) ORDER BY j.created_at DESC LIMIT 1`), KindExport, name, StatusCompleted, StatusDeleted))
}

// MarkDeleted records that a completed export's archive was deleted. Its
// finished time stays when it was published (the schedules' last
// success); ErrNotFound: no completed export of that ID.
func (s *Store) MarkDeleted(ctx context.Context, id string) error {
	res, err := s.DB.ExecContext(ctx, s.q(`UPDATE ferry_jobs SET outcome = ?, size = 0, updated_at = ? WHERE id = ? AND outcome = ?`),
		StatusDeleted, s.now().UnixMilli(), id, StatusCompleted)
	if err != nil {
		return fmt.Errorf("mark export %s deleted: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return nil
}

// SaveFollow keeps the bot's follow state of a job (ferry_bot_follows,
// the bot's own table: its JSON, opaque here); an empty state forgets it.
func (s *Store) SaveFollow(ctx context.Context, jobID, state string) error {
	if state == "" {
		_, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM ferry_bot_follows WHERE job_id = ?`), jobID)
		return err
	}
	_, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_bot_follows (job_id, state, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (job_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`), jobID, state, s.now().UnixMilli())
	return err
}

// Follows returns the bot's follow states by job ID.
func (s *Store) Follows(ctx context.Context) (map[string]string, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT job_id, state FROM ferry_bot_follows`)
	if err != nil {
		return nil, fmt.Errorf("read the bot's follow state: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, state string
		if err := rows.Scan(&id, &state); err != nil {
			return nil, err
		}
		out[id] = state
	}
	return out, rows.Err()
}
