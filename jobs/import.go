package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// ImportArgs is the River job of one import.
type ImportArgs struct {
	JobID string `json:"job_id"`
}

// Kind names the job kind in River's tables.
func (ImportArgs) Kind() string { return "ferry.import" }

// ImportRequest says what an import job does. The archive is a published
// one, named directly or by the export that made it.
type ImportRequest struct {
	Export  string `json:"export,omitempty"`  // a completed export whose archive is imported
	Archive string `json:"archive,omitempty"` // or a published archive's name
	Target  string `json:"target"`            // a configured import target
	// DryRun validates the archive and checks the target; nothing is written.
	DryRun bool `json:"dry_run,omitempty"`
	// Migration keeps devices and access tokens (encrypted archives exported with them).
	Migration bool `json:"migration,omitempty"`
	// AllowNonEmpty imports into a target that already has users or rooms.
	AllowNonEmpty bool `json:"force_non_empty,omitempty"`
	// Rooms limits the import to these rooms.
	Rooms []string `json:"rooms,omitempty"`
}

// Importer imports an opened archive into the target req names,
// counting its phases and items into p (the job's progress row), and
// returns its report for people (what was imported, the fidelity
// report). Its own messages go to the context's logger. It must check
// everything it can before its first write, and a second run of the same
// archive must continue where an interrupted one stopped: a crashed
// import job is run again.
type Importer func(ctx context.Context, r *archive.Reader, req ImportRequest, p importer.Progress) (report string, err error)

// SubmitImport validates and queues an import. keyLine, for an encrypted
// archive that none of the service's Identities opens, is the archive's
// key line (`bot archive key`): it is kept in the job's row only until the
// job ends, and never logged.
func (s *Service) SubmitImport(ctx context.Context, id string, req ImportRequest, keyLine, requestedBy, via string) (*store.Export, error) {
	if s.Import == nil {
		return nil, errors.New("imports are not configured on this Ferry (add an import target to the config)")
	}
	name, err := s.importedArchive(ctx, req)
	if err != nil {
		return nil, err
	}
	if req.Target == "" {
		return nil, errors.New("name the import target (a configured target)")
	}
	if _, err := s.storage.Stat(ctx, storage.ArchiveKey(name)); err != nil {
		return nil, fmt.Errorf("archive %s: %w", name, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	e := &store.Export{ID: id, Kind: store.KindImport, RequestedBy: requestedBy, Via: via, Request: string(body), Name: name, ArchiveKey: keyLine}
	if err := s.enqueue(ctx, e, ImportArgs{JobID: id}); err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("%s into %s", name, req.Target)
	if req.DryRun {
		detail += " (dry run)"
	}
	if err := s.audit(ctx, store.AuditEntry{Actor: requestedBy, Via: via, Action: "import.create", Target: id, Outcome: "queued", Detail: detail}); err != nil {
		return nil, fmt.Errorf("import %s is queued, but %w", id, err)
	}
	return e, nil
}

// importedArchive resolves the archive name of an import request.
func (s *Service) importedArchive(ctx context.Context, req ImportRequest) (string, error) {
	switch {
	case (req.Export == "") == (req.Archive == ""):
		return "", errors.New("name either the export or the archive to import")
	case req.Archive != "":
		return req.Archive, storage.CheckName(req.Archive)
	}
	e, err := s.store.GetExport(ctx, req.Export)
	if err != nil {
		return "", fmt.Errorf("export %s: %w", req.Export, err)
	}
	if e.Kind != store.KindExport || e.Status != store.StatusCompleted {
		return "", fmt.Errorf("export %s is %s %s: only a completed export's archive can be imported", e.ID, e.Kind, e.Status)
	}
	return e.Name, nil
}

// importWorker runs ImportArgs.
type importWorker struct {
	river.WorkerDefaults[ImportArgs]
	svc *Service
}

// Timeout: none, as for verifications (verifyWorker.Timeout): an import
// cannot resume partway either.
func (w *importWorker) Timeout(*river.Job[ImportArgs]) time.Duration { return -1 }

func (w *importWorker) Work(ctx context.Context, job *river.Job[ImportArgs]) error {
	svc := w.svc
	return svc.work(ctx, job.JobRow, job.Args.JobID, func(ctx context.Context, e *store.Export, token int64) (string, error) {
		if svc.Import == nil {
			return "", permanent(errors.New("imports are not configured on this instance"))
		}
		var req ImportRequest
		if err := json.Unmarshal([]byte(e.Request), &req); err != nil {
			return "", permanent(fmt.Errorf("stored request: %w", err))
		}
		src, err := svc.storage.OpenArchive(ctx, e.Name)
		if err != nil {
			return "", err // storage: worth a retry
		}
		opts := archive.OpenOptions{Identities: svc.Identities}
		if e.ArchiveKey != "" {
			opts.KeyFile = []byte(e.ArchiveKey)
		} else if kf, err := svc.storage.ArchiveKeyFile(ctx, e.Name); err == nil {
			opts.KeyFile = kf
		} else if !errors.Is(err, storage.ErrNotFound) { // none: a plaintext archive
			return "", err
		}
		r, err := archive.Open(ctx, src, opts)
		if err != nil {
			return "", permanent(fmt.Errorf("import refused before any write: %w", err))
		}
		defer closeLogged(ctx, r, "archive "+e.Name)
		started := time.Now()
		p := &importCounter{save: func(p Progress) { svc.saveProgress(ctx, e.ID, token, p) }}
		report, err := svc.Import(ctx, r, req, p)
		outcome := "completed"
		switch {
		case err != nil && ctx.Err() != nil:
			return report, err // shutting down or cancelled: not the importer's verdict
		case err != nil:
			// The importer checked what it could before writing; what
			// fails now needs a person (a rerun continues where it stopped).
			outcome, err = "failed", permanent(err)
		}
		if aerr := svc.auditRetrying(ctx, store.AuditEntry{Actor: e.RequestedBy, Via: e.Via, Action: "import.finish", Target: e.ID, Outcome: outcome,
			Detail: fmt.Sprintf("%s into %s in %s%s", e.Name, req.Target, time.Since(started).Round(time.Second), map[bool]string{true: " (dry run)"}[req.DryRun])}); aerr != nil {
			// Logged, not returned for a successful import: River would
			// run the whole import again for it.
			zerolog.Ctx(ctx).Error().Err(aerr).Str("outcome", outcome).Msg("import ended, but its audit entry could not be written")
		}
		return report, err
	})
}

// importCounter keeps an import job's progress row: the phase as its
// stream, its items against their total, the share done and an ETA, saved
// at each phase and at most every 2 s.
type importCounter struct {
	save        func(Progress)
	mu          sync.Mutex
	phase       string
	done, total int64
	started     time.Time
	last        time.Time
}

func (c *importCounter) Phase(name string, total int64) {
	c.mu.Lock()
	c.phase, c.done, c.total, c.started = name, 0, total, time.Now()
	c.mu.Unlock()
	c.report(true)
}

func (c *importCounter) Add(n int64) {
	c.mu.Lock()
	c.done += n
	c.mu.Unlock()
	c.report(false)
}

func (c *importCounter) report(force bool) {
	c.mu.Lock()
	now := time.Now()
	if !force && now.Sub(c.last) < 2*time.Second {
		c.mu.Unlock()
		return
	}
	c.last = now
	p := Progress{Stream: c.phase, Records: c.done, Total: c.total}
	if c.total > 0 {
		frac := min(1, float64(c.done)/float64(c.total))
		p.Percent = 100 * frac
		if frac > 0 && frac < 1 {
			p.ETA = (time.Duration(float64(now.Sub(c.started)) * (1 - frac) / frac)).Round(time.Second).String()
		}
	}
	c.mu.Unlock()
	c.save(p)
}

// saveProgress saves a job's progress, fenced by its token; a failure
// costs only the progress shown, so it is logged.
func (s *Service) saveProgress(ctx context.Context, id string, token int64, p Progress) {
	if err := s.store.SaveProgress(ctx, id, token, mustJSON(p)); err != nil && ctx.Err() == nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("the job's progress could not be saved")
	}
}

// work runs one import or verify job as its claimed writer (claim). fn
// returns a result for people, kept with the job; its errors are settled
// as an export's are (settle).
func (s *Service) work(ctx context.Context, job *rivertype.JobRow, id string, fn func(ctx context.Context, e *store.Export, token int64) (string, error)) error {
	ctx = withJob(ctx, id)
	e, token, res := s.claim(ctx, job.ID, id)
	if e == nil {
		return res
	}
	result, err := fn(ctx, e, token)
	bg := context.WithoutCancel(ctx)
	if result != "" {
		p := Progress{Result: result}
		if err == nil {
			p.Percent = 100
		}
		s.saveProgress(bg, id, token, p)
	}
	if err == nil {
		return s.store.Finish(bg, id, token, store.Result{Status: store.StatusCompleted})
	}
	_, res = s.settle(ctx, job, e, token, err)
	return res
}
