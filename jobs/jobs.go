// Package jobs runs exports as durable jobs on River, over Ferry's state
// database (SQLite by default, PostgreSQL for several instances).
//
// River's defaults are made for short jobs, so exports set their own: no
// job timeout (an export runs for hours), stuck-job rescue far away (a
// day), and instead a lease Ferry owns: the worker heart-beats it, and a
// fencing token is checked before every archive part is written, so a
// crashed export is picked up again promptly (ResumeOrphans) and two
// workers never write the same archive. A resumed export continues from
// its last complete part (the writer's checkpoint, kept in the store).
// Transient errors (storage, network) are retried with backoff; permanent
// ones (bad request, unsupported schema or selection, secrets in a
// plaintext archive) fail at once and are reported. A selection the
// source cannot export is refused before it is queued (Capabilities).
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/riverqueue/river"
	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// ExportArgs is the River job of one export.
type ExportArgs struct {
	ExportID string `json:"export_id"`
}

// Kind names the job kind in River's tables.
func (ExportArgs) Kind() string { return "ferry.export" }

// Request says what an export does; it is stored with the export.
type Request struct {
	Source string `json:"source"` // a configured source name
	// Selection is what to export (stored as "filter", the name it had as a
	// source.Filter, whose fields it shares).
	Selection  exporter.Selection `json:"filter"`
	Options    source.Options     `json:"options"`
	Recipients []string           `json:"recipients,omitempty"` // age1... / ssh-ed25519 ...
	Plaintext  bool               `json:"plaintext,omitempty"`
	Name       string             `json:"name"` // the published archive's name
	// Personal, a user ID, makes it that user's personal export (archive
	// type "user", see exporter.Options.Personal); Selection stays empty.
	Personal string `json:"personal,omitempty"`
	// Verify queues a verify job (VerifyStored) once the archive is
	// published; its job ID is the export's with "-verify" appended.
	Verify bool `json:"verify,omitempty"`
}

// ArchiveType is the type of the archive the request makes
// (exporter.ArchiveType).
func (r *Request) ArchiveType() string { return exporter.ArchiveType(r.Selection, r.Personal) }

// Validate checks a request before it is queued: every error here is the
// caller's to fix.
func (r *Request) Validate() error {
	if err := storage.CheckName(r.Name); err != nil {
		return err
	}
	if err := r.Selection.Validate(); err != nil {
		return err
	}
	if r.Plaintext == (len(r.Recipients) > 0) {
		return errors.New("choose either recipients (encrypted archive) or plaintext")
	}
	_, err := r.plan() // the recipients, a personal export's rules, secrets only encrypted
	return err
}

// SourceOpener opens a configured source by name.
type SourceOpener func(ctx context.Context, name string) (source.Source, error)

// SourceCapabilities returns the capabilities of a configured source by
// name, without opening it.
type SourceCapabilities func(name string) (source.Capabilities, error)

// Service runs the jobs: submit, cancel, verify, import, schedules and
// their retention, the workers. The application layer (app) calls it for
// the surfaces, which never reach Store or Storage themselves; the wiring
// (cmd/bot) builds it. It holds no River client of its own type; see
// runner.
type Service struct {
	Store   *store.Store
	Storage *storage.Store
	Open    SourceOpener
	// Capabilities, if set, checks every request and schedule against
	// its source's capabilities when it is submitted or installed, so a
	// selection the source cannot export is refused before it is queued
	// (without it, the run refuses it: source.ErrUnsupported, permanent).
	Capabilities SourceCapabilities
	Owner        string        // this instance's name in leases
	LeaseTTL     time.Duration // default 1 minute
	// PartSize of archives (default archive.DefaultPartSize): each part is
	// a resume point.
	PartSize int64
	// Announce, if set, hears about scheduled runs: started, finished,
	// failed, pruned (the bot posts them to the admin room).
	Announce func(Event)
	// Identities open archives for verify and import jobs (the config's
	// encryption.identity_file). Without them, verify jobs check encrypted
	// archives from the outside only, and imports of encrypted archives
	// need the archive's key line.
	Identities []age.Identity
	// Import runs import jobs; nil: imports are not configured.
	Import    Importer
	runner    runner
	mu        sync.RWMutex
	schedules map[string]Schedule
}

func (s *Service) leaseTTL() time.Duration {
	if s.LeaseTTL <= 0 {
		return time.Minute
	}
	return s.LeaseTTL
}

// runner is the part of a River client the service uses.
type runner interface {
	insert(ctx context.Context, args river.JobArgs) (int64, error)
	cancel(ctx context.Context, jobID int64) error
	addPeriodic(*river.PeriodicJob)
	removePeriodic(id string)
}

// audit writes an entry of a verb, even when ctx is cancelled (the action
// happened); its error says so, for the verb to return.
func (s *Service) audit(ctx context.Context, e store.AuditEntry) error {
	if err := s.Store.Audit(context.WithoutCancel(ctx), e); err != nil {
		return fmt.Errorf("the audit log could not be written (%s %s): %w", e.Action, e.Target, err)
	}
	return nil
}

// auditRetrying writes an entry of a worker (no caller to return its error
// to): it tries three times, ctx's cancellation aside, and returns the
// last error, which the worker logs and returns to River.
func (s *Service) auditRetrying(ctx context.Context, e store.AuditEntry) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	for i, wait := range []time.Duration{0, 200 * time.Millisecond, time.Second} {
		time.Sleep(wait)
		if err = s.audit(ctx, e); err == nil {
			return nil
		}
		zerolog.Ctx(ctx).Warn().Err(err).Int("attempt", i+1).Str("action", e.Action).Str("target", e.Target).Msg("audit write failed")
	}
	return err
}

// withJob gives ctx's logger the job's ID, for everything a worker logs.
func withJob(ctx context.Context, id string) context.Context {
	return zerolog.Ctx(ctx).With().Str("job", id).Logger().WithContext(ctx)
}

// closeLogged closes c, logging an error (a read-only source or an
// archive read to its end has nothing left to lose).
func closeLogged(ctx context.Context, c io.Closer, what string) {
	if err := c.Close(); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msgf("close %s", what)
	}
}

// ErrPermanent marks an error that retrying will not fix.
var ErrPermanent = errors.New("permanent")

func permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

func isPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || errors.Is(err, exporter.ErrPermanent) || errors.Is(err, source.ErrSchema) || errors.Is(err, source.ErrUnsupported) ||
		errors.Is(err, archive.ErrSensitiveInPlaintext)
}

// supports checks a request against its source's capabilities, when the
// service knows them.
func (s *Service) supports(req Request) error {
	if s.Capabilities == nil {
		return nil
	}
	caps, err := s.Capabilities(req.Source)
	if err != nil {
		return err
	}
	return req.Selection.Check(caps)
}

// Submit records and queues an export.
func (s *Service) Submit(ctx context.Context, id string, req Request, requestedBy, via string) (*store.Export, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if err := s.supports(req); err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	e := &store.Export{ID: id, Kind: store.KindExport, RequestedBy: requestedBy, Via: via, Request: string(body), Name: req.Name}
	if err := s.enqueue(ctx, e, ExportArgs{ExportID: id}); err != nil {
		return nil, err
	}
	if err := s.audit(ctx, store.AuditEntry{Actor: requestedBy, Via: via, Action: "export.create", Target: id, Outcome: "queued"}); err != nil {
		return nil, fmt.Errorf("export %s is queued, but %w", id, err)
	}
	return e, nil
}

// enqueue records a new job row and queues its River job; a row whose
// job could not be queued is marked failed.
func (s *Service) enqueue(ctx context.Context, e *store.Export, args river.JobArgs) error {
	if err := s.Store.CreateExport(ctx, e); err != nil {
		return err
	}
	if _, err := s.runner.insert(ctx, args); err != nil {
		// Not under ctx, which may be what failed the insert: a row
		// left queued without a River job would never run.
		if ferr := s.Store.Finish(context.WithoutCancel(ctx), e.ID, store.StatusFailed, 0, "", "could not queue: "+err.Error()); ferr != nil {
			return fmt.Errorf("queue %s %s: %w (and it stays recorded as queued: %w)", e.Kind, e.ID, err, ferr)
		}
		return fmt.Errorf("queue %s %s: %w", e.Kind, e.ID, err)
	}
	return nil
}

// Cancel stops an export: queued ones never start, running ones stop
// promptly and leave no published archive.
func (s *Service) Cancel(ctx context.Context, id, actor, via string) error {
	e, err := s.Store.GetExport(ctx, id)
	if err != nil {
		return err
	}
	if !e.Running() {
		return fmt.Errorf("%s %s has already ended (%s)", e.Kind, id, e.Status)
	}
	if err := s.Store.Finish(ctx, id, store.StatusCancelled, 0, "", "cancelled by "+actor); err != nil {
		return err
	}
	jobID, err := s.Store.JobOf(ctx, id)
	if err != nil {
		// The row says cancelled: a worker that runs it stops at its next
		// look at the row; only River's job is left to end by itself.
		zerolog.Ctx(ctx).Warn().Err(err).Str("job", id).Msg("cancelled, but its River job could not be looked up to cancel it too")
	} else if jobID > 0 {
		if err := s.runner.cancel(ctx, jobID); err != nil {
			return err
		}
	}
	if err := s.audit(ctx, store.AuditEntry{Actor: actor, Via: via, Action: e.Kind + ".cancel", Target: id, Outcome: "ok"}); err != nil {
		return fmt.Errorf("%s %s is cancelled, but %w", e.Kind, id, err)
	}
	return nil
}

// ResumeOrphans queues again the jobs whose runner died (their lease
// expired while processing), so they resume (an export from its last
// part, an import where the target's marker says it stopped) without
// waiting for River's stuck-job rescue.
func (s *Service) ResumeOrphans(ctx context.Context) (int, error) {
	list, err := s.Store.ListJobs(ctx, "", 1000)
	if err != nil {
		return 0, err
	}
	n := 0
	var verifyErr error
	for _, e := range list {
		if e.Kind == store.KindExport && e.Status == store.StatusCompleted {
			// a crash between publishing and queueing its verification;
			// a failure here must not keep the orphans below waiting
			if err := s.queueVerify(ctx, e.ID); err != nil && verifyErr == nil {
				verifyErr = err
			}
		}
		if e.Status == store.StatusProcessing && time.Now().After(e.LeaseUntil) {
			var args river.JobArgs = ExportArgs{ExportID: e.ID}
			switch e.Kind {
			case store.KindImport:
				args = ImportArgs{JobID: e.ID}
			case store.KindVerify:
				args = VerifyArgs{JobID: e.ID}
			}
			if _, err := s.runner.insert(ctx, args); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, verifyErr
}

// exportWorker runs ExportArgs.
type exportWorker struct {
	river.WorkerDefaults[ExportArgs]
	svc *Service
}

// Timeout: none. An export of a large server takes hours; cancellation
// and the lease end it instead.
func (w *exportWorker) Timeout(*river.Job[ExportArgs]) time.Duration { return -1 }

func (w *exportWorker) Work(ctx context.Context, job *river.Job[ExportArgs]) error {
	svc := w.svc
	id := job.Args.ExportID
	ctx = withJob(ctx, id)
	e, l, res := svc.claim(ctx, job.ID, id)
	if l == nil {
		if res == nil { // already ended: a completed export may still owe its verify job
			return svc.queueVerify(context.WithoutCancel(ctx), id)
		}
		return res
	}
	err := svc.run(l.ctx, e, l.token)
	l.release(ctx, svc, id) // cancels l.ctx: from here on, ctx tells a shutdown apart
	log := zerolog.Ctx(ctx)
	var published *publishedError
	if err == nil || errors.As(err, &published) {
		if published != nil {
			// Published and finished all the same: the error goes to
			// River's record of the job, whose retry finds it completed.
			log.Error().Err(err).Msg("export published, but its audit entry could not be written")
		}
		// Not under l.ctx: the lease ended with the export, and a
		// shutdown must not cut the queueing in half either. An error is
		// retried by River; the retry finds the export completed and
		// queues the verification then (above).
		if qerr := svc.queueVerify(context.WithoutCancel(ctx), id); qerr != nil {
			return errors.Join(err, qerr)
		}
		if e.Via == "schedule" {
			svc.announce(Event{Schedule: strings.TrimPrefix(e.RequestedBy, "schedule:"), ExportID: id, Kind: "finished", Detail: e.Name})
		}
		return err
	}
	status, res := svc.settle(ctx, l, e, err)
	bg := context.WithoutCancel(ctx)
	if status == store.StatusFailed {
		if e.Via == "schedule" {
			svc.announce(Event{Schedule: strings.TrimPrefix(e.RequestedBy, "schedule:"), ExportID: id, Kind: "failed", Detail: err.Error()})
		}
		if aerr := svc.auditRetrying(bg, store.AuditEntry{Actor: e.RequestedBy, Via: e.Via, Action: "export.finish", Target: id, Outcome: "failed", Detail: err.Error()}); aerr != nil {
			log.Error().Err(aerr).Msg("export failed, and its audit entry could not be written")
		}
	}
	if status != "" { // ended for good: its staged parts will never be published
		cur, err := svc.Store.GetExport(bg, id)
		if err != nil {
			log.Warn().Err(err).Msg("the ended export's staged parts are left in storage: its row could not be read")
		} else if cur.ArchiveID != "" {
			if err := svc.Storage.Discard(bg, cur.ArchiveID); err != nil {
				log.Warn().Err(err).Str("archive", cur.ArchiveID).Msg("the ended export's staged parts could not be removed")
			}
		}
	}
	return res
}

// claim reads a job's row and takes its lease for this worker. A nil
// lease means the job is not to run now, and res is River's result for
// it: nil for a job that has already ended, a snooze while another worker
// holds the lease, or the error.
func (s *Service) claim(ctx context.Context, riverJobID int64, id string) (e *store.Export, l *lease, res error) {
	e, err := s.Store.GetExport(ctx, id)
	if err != nil {
		return nil, nil, river.JobCancel(err)
	}
	if !e.Running() {
		return nil, nil, nil // already ended (cancelled, or finished by another run)
	}
	if err := s.Store.SetJob(ctx, id, riverJobID); err != nil {
		return nil, nil, fmt.Errorf("record the River job of %s: %w", id, err) // retried
	}
	l, err = s.acquireLease(ctx, id)
	if errors.Is(err, store.ErrLeaseHeld) {
		return nil, nil, river.JobSnooze(s.leaseTTL()) // someone else runs it; look again later
	}
	if err != nil {
		return nil, nil, err
	}
	return e, l, nil
}

// settle turns the error of a run (whose lease l was released) into
// River's result, the same way for every kind of job: a cancelled job
// or a lost lease ends the run; while shutting down, the job is left to
// be worked again (an export resumes from its checkpoint); a permanent
// error ends the job as failed; anything else is retried with backoff.
// status is the job's final status when it ended for good (cancelled or
// failed), for the caller's clean-up; "" otherwise.
func (s *Service) settle(ctx context.Context, l *lease, e *store.Export, err error) (status string, res error) {
	bg := context.WithoutCancel(ctx)
	switch {
	case s.cancelled(bg, e):
		return store.StatusCancelled, river.JobCancel(errors.New("cancelled"))
	case l.lost(err):
		return "", river.JobCancel(fmt.Errorf("%s %s: %w", e.Kind, e.ID, store.ErrLeaseLost)) // the new owner carries on
	case ctx.Err() != nil:
		return "", err
	case isPermanent(err):
		if ferr := s.Store.Finish(bg, e.ID, store.StatusFailed, 0, "", err.Error()); ferr != nil {
			// Not ended: River tries again, and the run fails again
			// or the store is back to record it.
			return "", fmt.Errorf("%w (and it could not be recorded as failed: %w)", err, ferr)
		}
		return store.StatusFailed, river.JobCancel(err)
	default:
		if rerr := s.Store.RecordError(bg, e.ID, err.Error()); rerr != nil {
			zerolog.Ctx(ctx).Warn().Err(rerr).Msg("the failed attempt could not be recorded; River retries it")
		}
		return "", err
	}
}

// cancelled reports whether job e was cancelled meanwhile; a row that
// cannot be read is taken as not cancelled (logged).
func (s *Service) cancelled(ctx context.Context, e *store.Export) bool {
	cur, err := s.Store.GetExport(ctx, e.ID)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("could not read whether the job was cancelled")
		return false
	}
	return cur.Status == store.StatusCancelled
}

// run does (or resumes) one export and publishes it: exporter.Run, with
// the job's row as its checkpointer and the storage bucket (fenced by the
// lease) as its destination; then the row is finished and audited.
func (s *Service) run(ctx context.Context, e *store.Export, token int64) error {
	var req Request
	if err := json.Unmarshal([]byte(e.Request), &req); err != nil {
		return permanent(fmt.Errorf("stored request: %w", err))
	}
	plan, err := req.plan()
	if err != nil {
		return permanent(err)
	}
	plan.PartSize, plan.Interval = s.PartSize, 2*time.Second
	src, err := s.Open(ctx, req.Source)
	if err != nil {
		return err
	}
	defer closeLogged(ctx, src, "source "+req.Source)
	log := zerolog.Ctx(ctx)
	for _, w := range src.Info().Warnings {
		log.Warn().Str("source", req.Source).Msg(w)
	}
	dst := &jobDestination{s: s, e: e, token: token, name: req.Name}
	res, err := exporter.Run(ctx, plan, src, dst, &jobCheckpoints{s: s, e: e, token: token}, func(p exporter.Progress) {
		if err := s.Store.SaveProgress(ctx, e.ID, token, mustJSON(progressJSON(p))); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("the export's progress could not be saved")
		}
	})
	if err != nil {
		return err
	}
	// Finish moves the lease token on: the heartbeat then finds the lease
	// gone and cancels ctx, possibly while Finish's own call is still
	// waiting for its answer (it would fail a committed export). So
	// neither Finish nor anything after it runs under ctx; the verify job
	// is queued by the worker, under its own context.
	done := context.WithoutCancel(ctx)
	if err := s.Store.Finish(done, e.ID, store.StatusCompleted, res.Published.Size, res.Published.SHA256, ""); err != nil {
		return err
	}
	if err := s.auditRetrying(done, store.AuditEntry{Actor: e.RequestedBy, Via: e.Via, Action: "export.finish", Target: e.ID, Outcome: "completed",
		Detail: fmt.Sprintf("%s, %d bytes, sha256 %s", res.Published.Location, res.Published.Size, res.Published.SHA256)}); err != nil {
		return &publishedError{err}
	}
	return nil
}

// publishedError is an error after the export was published and
// finished: the archive stands, only what follows failed.
type publishedError struct{ err error }

func (p *publishedError) Error() string { return "the export is published, but " + p.err.Error() }
func (p *publishedError) Unwrap() error { return p.err }

// plan is the export a request asks for (exporter.NewPlan), its key
// wrapped to the request's recipients.
func (r *Request) plan() (exporter.Plan, error) {
	p, err := exporter.NewPlan(r.Selection, r.Options, r.Personal, !r.Plaintext)
	if err != nil {
		return p, err
	}
	if !r.Plaintext {
		recips, err := keywrap.ParseRecipients(r.Recipients)
		if err != nil {
			return p, err
		}
		p.Wrap = func(key keywrap.Key, archiveID string) ([]byte, error) {
			return keywrap.Wrap(key, archiveID, recips...)
		}
	}
	return p, nil
}

// jobCheckpoints keeps an export's resume state in its row: the archive
// ID and key line (StartArchive) and the writer's checkpoint, every write
// fenced by the lease's token.
type jobCheckpoints struct {
	s     *Service
	e     *store.Export // as claimed
	token int64
}

func (c *jobCheckpoints) Load(context.Context) (*exporter.Resume, error) {
	if c.e.ArchiveID == "" || c.e.Checkpoint == nil {
		return nil, nil // nothing committed yet: a fresh archive
	}
	r := &exporter.Resume{ArchiveID: c.e.ArchiveID, Checkpoint: c.e.Checkpoint}
	if c.e.ArchiveKey != "" {
		key, err := keywrap.Decode([]byte(c.e.ArchiveKey), c.e.ArchiveID)
		if err != nil {
			return nil, permanent(err)
		}
		r.Key = key
	}
	return r, nil
}

func (c *jobCheckpoints) Start(ctx context.Context, archiveID string, key keywrap.Key) error {
	var keyLine string
	if !key.IsZero() {
		keyLine = string(key.Encode(archiveID))
	}
	return c.s.Store.StartArchive(ctx, c.e.ID, c.token, archiveID, keyLine)
}

func (c *jobCheckpoints) Save(ctx context.Context, checkpoint []byte) error {
	return c.s.Store.SaveCheckpoint(ctx, c.e.ID, c.token, checkpoint)
}

// Done: the row keeps its archive ID (the worker discards staged parts
// by it) until Finish.
func (c *jobCheckpoints) Done(context.Context) error { return nil }

// jobDestination stages an export's archive in the storage bucket and
// publishes it under the request's name; parts are fenced by the lease
// (fencedSink), and so is the publication.
type jobDestination struct {
	s     *Service
	e     *store.Export
	token int64
	name  string
}

func (d *jobDestination) check(ctx context.Context) error {
	return d.s.Store.CheckLease(ctx, d.e.ID, d.token)
}

func (d *jobDestination) Stage(_ context.Context, archiveID string) (container.Sink, error) {
	return &fencedSink{Sink: d.s.Storage.Stage(archiveID), check: d.check}, nil
}

func (d *jobDestination) WriteKey(ctx context.Context, archiveID string, wrapped []byte) error {
	return d.s.Storage.Stage(archiveID).WriteKey(ctx, wrapped)
}

func (d *jobDestination) Publish(ctx context.Context, archiveID string) (exporter.Published, error) {
	if err := d.check(ctx); err != nil {
		return exporter.Published{}, err
	}
	obj, err := d.s.Storage.Publish(ctx, archiveID, d.name)
	if err != nil {
		return exporter.Published{}, err
	}
	return exporter.Published{Location: storage.ArchiveKey(d.name), Size: obj.Size, SHA256: obj.SHA256}, nil
}

// queueVerify queues the verify job an export asked for ("-verify"
// appended to its ID) once it is completed, unless it is queued already.
// The export's River job calls it after a successful run and again on
// every later attempt, and ResumeOrphans at start, so an error here
// (returned for River to retry) or a crash between publishing and
// queueing loses no verification.
func (s *Service) queueVerify(ctx context.Context, id string) error {
	e, err := s.Store.GetExport(ctx, id)
	if err != nil {
		return err
	}
	if e.Kind != store.KindExport || e.Status != store.StatusCompleted {
		return nil
	}
	var req Request
	if err := json.Unmarshal([]byte(e.Request), &req); err != nil {
		// run read it: not reached unless the row was changed since
		zerolog.Ctx(ctx).Error().Err(err).Str("export", id).Msg("no verification queued: the stored request does not decode")
		return nil
	}
	if !req.Verify {
		return nil
	}
	vid := id + "-verify"
	if _, err := s.Store.GetExport(ctx, vid); err == nil {
		return nil // queued already
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if _, err := s.SubmitVerify(ctx, vid, id, e.RequestedBy, e.Via); err != nil {
		err = fmt.Errorf("queue the verification of export %s: %w", id, err)
		if aerr := s.audit(ctx, store.AuditEntry{Actor: e.RequestedBy, Via: e.Via, Action: "export.verify", Target: id, Outcome: "retrying", Detail: "could not queue: " + err.Error()}); aerr != nil {
			return errors.Join(err, aerr)
		}
		return err
	}
	return nil
}

// Progress as stored and served by the API.
type Progress struct {
	Stream    string  `json:"stream"`
	Percent   float64 `json:"percent"`
	Records   int64   `json:"records"`
	Total     int64   `json:"total"`
	Blobs     int64   `json:"media_files"`
	BlobBytes int64   `json:"media_bytes"`
	ETA       string  `json:"eta,omitempty"`
	// EstimatedBytes is the archive size predicted before the export
	// started (sources that implement source.Estimator).
	EstimatedBytes int64 `json:"estimated_bytes,omitempty"`
	// Result is an import's or verification's outcome for people.
	Result string `json:"result,omitempty"`
	// Streams are an export's streams in the order they run, each with
	// its records so far.
	Streams []StreamProgress `json:"streams,omitempty"`
}

// StreamProgress is one stream of an export.
type StreamProgress struct {
	Name    string `json:"name"`
	Records int64  `json:"records"`
	Total   int64  `json:"total,omitempty"` // the stream's count; 0: unknown
	Done    bool   `json:"done,omitempty"`
}

// IsZero says no progress was recorded yet.
func (p *Progress) IsZero() bool { return reflect.ValueOf(*p).IsZero() }

func progressJSON(p exporter.Progress) Progress {
	out := Progress{Stream: p.Stream, Percent: 100 * p.Fraction(), Records: p.Records, Total: p.Total, Blobs: p.Blobs, BlobBytes: p.BlobBytes,
		EstimatedBytes: p.EstimatedBytes}
	for _, c := range p.StreamCounts {
		out.Streams = append(out.Streams, StreamProgress{Name: c.Name, Records: c.Records, Total: c.Total, Done: c.Done})
	}
	if d := p.ETA(time.Now()); d > 0 {
		out.ETA = d.Round(time.Second).String()
	}
	return out
}

// fencedSink refuses to start a part once the lease is lost: a worker
// that was presumed dead cannot overwrite the new owner's archive.
type fencedSink struct {
	container.Sink
	check func(context.Context) error
}

func (f *fencedSink) CreatePart(ctx context.Context, index int) (io.WriteCloser, error) {
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	return f.Sink.CreatePart(ctx, index)
}
