// Package jobs runs exports, imports and verifications as durable jobs on
// River, over Ferry's state database (SQLite by default, PostgreSQL for
// several instances).
//
// One state machine: River's job is the only queue and run state of a
// job (queued, running, retrying, cancelled, ...); Ferry's ledger
// (store.Export) records what the job was asked and what it produced.
// What River does not give, fencing, the ledger adds: a run claims its
// row (store.Claim) and every write it makes is fenced by the token it
// got, so two runs never write one archive. A resumed export continues
// from its last complete part (the writer's checkpoint, in the ledger).
//
// Crash recovery is River's too (see start): each instance is a River
// client with a stable ID, and at start it makes the jobs its previous
// process was running available again at once; a job whose instance is
// gone for good is rescued by River's rescuer once its run timeout
// (Config.RunTimeout) and an hour more have passed.
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
	"github.com/riverqueue/river/rivertype"
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
// the surfaces, which never reach the store or storage through it; the
// wiring (cmd/bot) builds it with New and sets the fields below before
// Start. It holds no River client of its own type; see runner.
type Service struct {
	store   *store.Store
	storage *storage.Store
	Open    SourceOpener
	// Capabilities, if set, checks every request and schedule against
	// its source's capabilities when it is submitted or installed, so a
	// selection the source cannot export is refused before it is queued
	// (without it, the run refuses it: source.ErrUnsupported, permanent).
	Capabilities SourceCapabilities
	// Instance is this instance's stable name: its River client ID is
	// "ferry:" + Instance, the same after a restart, so that a restarted
	// instance knows the jobs it was running (start). Two instances
	// running at once must have different names (River's rule for client
	// IDs); should they not, fencing still keeps each archive whole.
	// Default: the host name.
	Instance string
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
	Import Importer
	runner runner
	// snooze is how long a run that another run of the same River job
	// fenced out puts the job off (the rescue horizon; see settle).
	snooze    time.Duration
	mu        sync.RWMutex
	schedules map[string]Schedule
}

// New returns the job service over Ferry's state database and archive
// storage, which become its own (the application layer gets them from the
// wiring, never through the service).
func New(st *store.Store, bucket *storage.Store) *Service {
	return &Service{store: st, storage: bucket}
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
	if err := s.store.Audit(context.WithoutCancel(ctx), e); err != nil {
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

// enqueue records a new job in the ledger, queues its River job and
// records that job's ID; a job whose River job could not be queued ends
// failed.
func (s *Service) enqueue(ctx context.Context, e *store.Export, args river.JobArgs) error {
	if err := s.store.CreateExport(ctx, e); err != nil {
		return err
	}
	jobID, err := s.runner.insert(ctx, args)
	if err != nil {
		// Not under ctx, which may be what failed the insert: a job left
		// without a River job would never run.
		if ferr := s.store.End(context.WithoutCancel(ctx), e.ID, store.Result{Status: store.StatusFailed, Error: "could not queue: " + err.Error()}); ferr != nil {
			return fmt.Errorf("queue %s %s: %w (and it stays recorded as queued: %w)", e.Kind, e.ID, err, ferr)
		}
		return fmt.Errorf("queue %s %s: %w", e.Kind, e.ID, err)
	}
	if err := s.store.SetJob(context.WithoutCancel(ctx), e.ID, jobID); err != nil {
		// Its first run records it (Claim); until then it shows queued.
		zerolog.Ctx(ctx).Warn().Err(err).Str("job", e.ID).Msg("the queued job's River job could not be recorded")
	} else {
		e.RiverJobID = jobID
	}
	return nil
}

// Cancel stops a job, in one place: the ledger records the outcome
// (cancelled) first, which moves the fencing token on, so that no run can
// write a part, a checkpoint or publish after it; then River's JobCancel
// takes the job off the queue, or cancels a running one's context, so
// that it stops promptly (the worker then removes what it staged). Should
// River's cancel fail, the job still ends: a queued one finds its outcome
// when it is claimed, a running one at its next write.
func (s *Service) Cancel(ctx context.Context, id, actor, via string) error {
	e, err := s.store.GetExport(ctx, id)
	if err != nil {
		return err
	}
	if !e.Running() {
		return fmt.Errorf("%s %s has already ended (%s)", e.Kind, id, e.Status)
	}
	if err := s.store.End(ctx, id, store.Result{Status: store.StatusCancelled, Error: "cancelled by " + actor}); errors.Is(err, store.ErrEnded) {
		return fmt.Errorf("%s %s has already ended", e.Kind, id)
	} else if err != nil {
		return err
	}
	if e.RiverJobID > 0 {
		if err := s.runner.cancel(context.WithoutCancel(ctx), e.RiverJobID); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("job", id).Msg("cancelled, but its River job could not be cancelled: the run stops at its next write")
		}
	}
	if err := s.audit(ctx, store.AuditEntry{Actor: actor, Via: via, Action: string(e.Kind) + ".cancel", Target: id, Outcome: "ok"}); err != nil {
		return fmt.Errorf("%s %s is cancelled, but %w", e.Kind, id, err)
	}
	return nil
}

// exportWorker runs ExportArgs.
type exportWorker struct {
	river.WorkerDefaults[ExportArgs]
	svc *Service
}

func (w *exportWorker) Work(ctx context.Context, job *river.Job[ExportArgs]) error {
	svc := w.svc
	id := job.Args.ExportID
	ctx = withJob(ctx, id)
	e, token, res := svc.claim(ctx, job.ID, id)
	if e == nil {
		if res == nil { // already ended: a completed export may still owe its verify job
			return svc.queueVerify(context.WithoutCancel(ctx), id)
		}
		return res
	}
	err := svc.run(ctx, e, token)
	log := zerolog.Ctx(ctx)
	var published *publishedError
	if err == nil || errors.As(err, &published) {
		if published != nil {
			// Published and finished all the same: the error goes to
			// River's record of the job, whose retry finds it completed.
			log.Error().Err(err).Msg("export published, but its audit entry could not be written")
		}
		// Not under ctx: a shutdown must not cut the queueing in half.
		// An error is retried by River; the retry finds the export
		// completed and queues the verification then (above). So does a
		// crash here: the River job, still running, is rescued.
		if qerr := svc.queueVerify(context.WithoutCancel(ctx), id); qerr != nil {
			return errors.Join(err, qerr)
		}
		if e.Via == "schedule" {
			svc.announce(Event{Schedule: strings.TrimPrefix(e.RequestedBy, "schedule:"), ExportID: id, Kind: "finished", Detail: e.Name})
		}
		return err
	}
	status, res := svc.settle(ctx, job.JobRow, e, token, err)
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
		cur, err := svc.store.GetExport(bg, id)
		if err != nil {
			log.Warn().Err(err).Msg("the ended export's staged parts are left in storage: its row could not be read")
		} else if cur.ArchiveID != "" {
			if err := svc.storage.Discard(bg, cur.ArchiveID); err != nil {
				log.Warn().Err(err).Str("archive", cur.ArchiveID).Msg("the ended export's staged parts could not be removed")
			}
		}
	}
	return res
}

// claim makes this run (River job riverJobID) the job's only writer
// (store.Claim) and reads the job's ledger row as claimed. A nil row
// means the job is not to run, and res is River's result for it: nil for
// a job that has already ended, or the error.
func (s *Service) claim(ctx context.Context, riverJobID int64, id string) (e *store.Export, token int64, res error) {
	token, err := s.store.Claim(ctx, id, riverJobID)
	switch {
	case errors.Is(err, store.ErrEnded):
		return nil, 0, nil // cancelled before it ran, or finished by an earlier run
	case errors.Is(err, store.ErrNotFound):
		return nil, 0, river.JobCancel(err)
	case err != nil:
		return nil, 0, err // retried
	}
	if e, err = s.store.GetExport(ctx, id); err != nil {
		return nil, 0, err
	}
	return e, token, nil
}

// settle turns the error of a run (River job job, fencing token token)
// into River's result, the same way for every kind of job, and says the
// job's outcome when the run ended it (cancelled or failed), for the
// caller's clean-up; "" otherwise.
//
//   - The job was cancelled (its outcome says so): River's job is
//     cancelled too.
//   - Another run claimed the job (fenced out). If it is another River
//     job (one queued twice by an older release), this one is cancelled.
//   - Fenced out, but the row cannot be read to tell by which run: a
//     plain error, retried (a cancel could end the live run's job).
//   - If it is this River job run again (a rescue while this run was
//     alive: only two instances sharing one name do that), whatever this
//     run returns becomes the state of the other run's job; it is put off
//     (snoozed) to the rescue horizon, which River's completion of the
//     live run leaves alone, and which then finds the job ended, or
//     resumes it if the live run died meanwhile.
//   - The run's context ended without a cancel: this instance is stopping,
//     or the run reached its timeout. The job is put back at once without
//     counting an attempt, and resumes from its checkpoint.
//   - A permanent error ends the job failed; so does any error on the
//     last attempt River allows. Anything else is retried with backoff.
func (s *Service) settle(ctx context.Context, job *rivertype.JobRow, e *store.Export, token int64, err error) (status store.Status, res error) {
	bg := context.WithoutCancel(ctx)
	cur, rerr := s.store.GetExport(bg, e.ID)
	if rerr != nil {
		zerolog.Ctx(ctx).Warn().Err(rerr).Msg("could not read whether the job was cancelled")
	}
	switch {
	case rerr == nil && cur.Status == store.StatusCancelled:
		return store.StatusCancelled, river.JobCancel(errors.New("cancelled"))
	case rerr != nil && errors.Is(err, store.ErrFenced):
		// Fenced out, but by which run is unknown: if by a run of this
		// same River job, cancelling would end the live run's job. Retried.
		return "", fmt.Errorf("%w (and the job's row could not be read: %w)", err, rerr)
	case rerr == nil && (cur.Fence != token || !cur.Running()) || errors.Is(err, store.ErrFenced):
		if cur.Running() && cur.RiverJobID == job.ID {
			return "", river.JobSnooze(s.snooze)
		}
		return "", river.JobCancel(fmt.Errorf("%s %s: %w", e.Kind, e.ID, store.ErrFenced))
	case ctx.Err() != nil:
		zerolog.Ctx(ctx).Info().Err(err).Msg("the run was interrupted; the job is queued again and resumes")
		return "", river.JobSnooze(0)
	case isPermanent(err) || job.Attempt >= job.MaxAttempts:
		msg := err.Error()
		if !isPermanent(err) {
			msg = fmt.Sprintf("given up after %d attempts: %s", job.Attempt, msg)
		}
		if ferr := s.store.Finish(bg, e.ID, token, store.Result{Status: store.StatusFailed, Error: msg}); ferr != nil {
			// Not ended: River tries again (or has given up, and the
			// ledger shows the job failed by River's state).
			return "", fmt.Errorf("%w (and it could not be recorded as failed: %w)", err, ferr)
		}
		return store.StatusFailed, river.JobCancel(err)
	default:
		if rerr := s.store.RecordError(bg, e.ID, token, err.Error()); rerr != nil {
			zerolog.Ctx(ctx).Warn().Err(rerr).Msg("the failed attempt could not be recorded; River retries it")
		}
		return "", err
	}
}

// run does (or resumes) one export and publishes it: exporter.Run, with
// the job's row as its checkpointer and the storage bucket (fenced by the
// token) as its destination; then the row is finished and audited.
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
		if err := s.store.SaveProgress(ctx, e.ID, token, mustJSON(progressJSON(p))); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("the export's progress could not be saved")
		}
	})
	if err != nil {
		return err
	}
	// Published: neither the outcome nor anything after it runs under
	// ctx (a shutdown now must not leave a published archive unrecorded);
	// the verify job is queued by the worker, under its own context.
	done := context.WithoutCancel(ctx)
	if err := s.store.Finish(done, e.ID, token, store.Result{Status: store.StatusCompleted, Size: res.Published.Size, SHA256: res.Published.SHA256}); err != nil {
		if errors.Is(err, store.ErrFenced) {
			s.unpublish(done, e.ID, req.Name)
		}
		return err
	}
	if err := s.auditRetrying(done, store.AuditEntry{Actor: e.RequestedBy, Via: e.Via, Action: "export.finish", Target: e.ID, Outcome: "completed",
		Detail: fmt.Sprintf("%s, %d bytes, sha256 %s", res.Published.Location, res.Published.Size, res.Published.SHA256)}); err != nil {
		return &publishedError{err}
	}
	return nil
}

// unpublish removes an archive that was published after its job was
// cancelled (the cancel came between the last fencing check and the
// outcome): a cancelled export leaves no archive. If another run claimed
// the job instead, that run publishes the same archive again.
func (s *Service) unpublish(ctx context.Context, id, name string) {
	cur, err := s.store.GetExport(ctx, id)
	if err != nil || cur.Status != store.StatusCancelled {
		return
	}
	key := storage.ArchiveKey(name)
	for _, k := range []string{key, key + storage.KeyExt} {
		if err := s.storage.Delete(ctx, k); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("object", k).Msg("the export was cancelled as it was published; its archive could not be removed")
		}
	}
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
// fenced by the run's token.
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
	return c.s.store.StartArchive(ctx, c.e.ID, c.token, archiveID, keyLine)
}

func (c *jobCheckpoints) Save(ctx context.Context, checkpoint []byte) error {
	return c.s.store.SaveCheckpoint(ctx, c.e.ID, c.token, checkpoint)
}

// Done: the row keeps its archive ID (the worker discards staged parts
// by it) until Finish.
func (c *jobCheckpoints) Done(context.Context) error { return nil }

// jobDestination stages an export's archive in the storage bucket and
// publishes it under the request's name; parts are fenced by the run's
// token (fencedSink), and so is the publication.
type jobDestination struct {
	s     *Service
	e     *store.Export
	token int64
	name  string
}

func (d *jobDestination) check(ctx context.Context) error {
	return d.s.store.CheckFence(ctx, d.e.ID, d.token)
}

func (d *jobDestination) Stage(_ context.Context, archiveID string) (container.Sink, error) {
	return &fencedSink{Sink: d.s.storage.Stage(archiveID), check: d.check}, nil
}

func (d *jobDestination) WriteKey(ctx context.Context, archiveID string, wrapped []byte) error {
	return d.s.storage.Stage(archiveID).WriteKey(ctx, wrapped)
}

func (d *jobDestination) Publish(ctx context.Context, archiveID string) (exporter.Published, error) {
	if err := d.check(ctx); err != nil {
		return exporter.Published{}, err
	}
	obj, err := d.s.storage.Publish(ctx, archiveID, d.name)
	if err != nil {
		return exporter.Published{}, err
	}
	return exporter.Published{Location: storage.ArchiveKey(d.name), Size: obj.Size, SHA256: obj.SHA256}, nil
}

// queueVerify queues the verify job an export asked for ("-verify"
// appended to its ID) once it is completed, unless it is queued already.
// The export's River job calls it after a successful run and again on
// every later attempt (a retry, or the rescue of a River job whose
// instance died after publishing), so an error here (returned for River
// to retry) or a crash between publishing and queueing loses no
// verification.
func (s *Service) queueVerify(ctx context.Context, id string) error {
	e, err := s.store.GetExport(ctx, id)
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
	if _, err := s.store.GetExport(ctx, vid); err == nil {
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

// fencedSink refuses to start a part once the run is fenced out: a run
// that was presumed dead cannot overwrite the new run's archive.
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
