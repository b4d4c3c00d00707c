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
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/riverqueue/river"

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
	if len(r.Recipients) > 0 {
		if _, err := keywrap.ParseRecipients(r.Recipients); err != nil {
			return err
		}
	}
	if r.Personal != "" && !r.Selection.IsFull() {
		return errors.New("a personal export takes no filter")
	}
	if r.Personal != "" && (r.Options != source.Options{}) {
		return errors.New("a personal export takes no export options (no tokens, keys or redacted originals)")
	}
	if r.Plaintext && (r.Options.AccessTokens || r.Options.RedactedOriginals || r.Options.PrivateServerKey) {
		return errors.New("access tokens, redacted originals and the private key need an encrypted archive")
	}
	return nil
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

// ErrPermanent marks an error that retrying will not fix.
var ErrPermanent = errors.New("permanent")

func permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

func isPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || errors.Is(err, source.ErrSchema) || errors.Is(err, source.ErrUnsupported) ||
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
	if jobID, err := s.Store.JobOf(ctx, id); err == nil && jobID > 0 {
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
	e, l, res := svc.claim(ctx, job.ID, id)
	if l == nil {
		if res == nil { // already ended: a completed export may still owe its verify job
			return svc.queueVerify(context.WithoutCancel(ctx), id)
		}
		return res
	}
	err := svc.run(l.ctx, e, l.token)
	l.release(svc, id) // cancels l.ctx: from here on, ctx tells a shutdown apart
	if err == nil {
		// Not under l.ctx: the lease ended with the export, and a
		// shutdown must not cut the queueing in half either. An error is
		// retried by River; the retry finds the export completed and
		// queues the verification then (above).
		if err := svc.queueVerify(context.WithoutCancel(ctx), id); err != nil {
			return err
		}
		if e.Via == "schedule" {
			svc.announce(Event{Schedule: strings.TrimPrefix(e.RequestedBy, "schedule:"), ExportID: id, Kind: "finished", Detail: e.Name})
		}
		return nil
	}
	status, res := svc.settle(ctx, l, e, err)
	bg := context.WithoutCancel(ctx)
	if status == store.StatusFailed {
		if e.Via == "schedule" {
			svc.announce(Event{Schedule: strings.TrimPrefix(e.RequestedBy, "schedule:"), ExportID: id, Kind: "failed", Detail: err.Error()})
		}
		svc.Store.Audit(bg, store.AuditEntry{Actor: e.RequestedBy, Via: e.Via, Action: "export.finish", Target: id, Outcome: "failed", Detail: err.Error()})
	}
	if status != "" { // ended for good: its staged parts will never be published
		if cur, err := svc.Store.GetExport(bg, id); err == nil && cur.ArchiveID != "" {
			svc.Storage.Discard(bg, cur.ArchiveID)
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
	s.Store.SetJob(ctx, id, riverJobID)
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
	case s.cancelled(bg, e.ID):
		return store.StatusCancelled, river.JobCancel(errors.New("cancelled"))
	case l.lost(err):
		return "", river.JobCancel(fmt.Errorf("%s %s: %w", e.Kind, e.ID, store.ErrLeaseLost)) // the new owner carries on
	case ctx.Err() != nil:
		return "", err
	case isPermanent(err):
		s.Store.Finish(bg, e.ID, store.StatusFailed, 0, "", err.Error())
		return store.StatusFailed, river.JobCancel(err)
	default:
		s.Store.RecordError(bg, e.ID, err.Error())
		return "", err
	}
}

func (s *Service) cancelled(ctx context.Context, id string) bool {
	cur, err := s.Store.GetExport(ctx, id)
	return err == nil && cur.Status == store.StatusCancelled
}

// run does (or resumes) one export and publishes it.
func (s *Service) run(ctx context.Context, e *store.Export, token int64) error {
	var req Request
	if err := json.Unmarshal([]byte(e.Request), &req); err != nil {
		return permanent(fmt.Errorf("stored request: %w", err))
	}
	src, err := s.Open(ctx, req.Source)
	if err != nil {
		return err
	}
	defer src.Close()
	info := src.Info()
	var estimate int64
	if est, ok := src.(source.Estimator); ok {
		if n, err := est.EstimateSize(ctx, req.Selection.Filter(), req.Options); err == nil {
			estimate = n
			b, _ := json.Marshal(Progress{EstimatedBytes: n})
			s.Store.SaveProgress(ctx, e.ID, token, string(b))
		}
	}

	// The archive ID and key survive a crash: the resumed writer needs them.
	archiveID, keyLine := e.ArchiveID, e.ArchiveKey
	var key keywrap.Key
	fresh := archiveID == "" || e.Checkpoint == nil
	if fresh {
		archiveID = container.NewArchiveID().String()
		if !req.Plaintext {
			key = keywrap.New()
			keyLine = string(key.Encode(archiveID))
		}
		if err := s.Store.StartArchive(ctx, e.ID, token, archiveID, keyLine); err != nil {
			return err
		}
	} else if keyLine != "" {
		if key, err = keywrap.Decode([]byte(keyLine), archiveID); err != nil {
			return permanent(err)
		}
	}
	id, err := container.ParseArchiveID(archiveID)
	if err != nil {
		return permanent(err)
	}
	stage := s.Storage.Stage(archiveID)
	sink := &fencedSink{Sink: stage, check: func(ctx context.Context) error { return s.Store.CheckLease(ctx, e.ID, token) }}
	opts := archive.WriterOptions{ArchiveID: id, Key: key, PartSize: s.PartSize,
		Export: exporter.ExportInfo(info, req.Selection, req.Options, req.Personal),
		Core:   archive.Core{ServerName: info.ServerName, DefaultRoomVersion: info.DefaultRoomVersion},
		OnCheckpoint: func(cp *archive.Checkpoint) error {
			b, err := archive.MarshalCheckpoint(cp)
			if err != nil {
				return err
			}
			return s.Store.SaveCheckpoint(ctx, e.ID, token, b)
		}}
	var w *archive.Writer
	var resume []byte
	if fresh {
		if w, err = archive.NewWriter(ctx, sink, opts); err != nil {
			return err
		}
		if !req.Plaintext {
			recips, err := keywrap.ParseRecipients(req.Recipients)
			if err != nil {
				return permanent(err)
			}
			wrapped, err := keywrap.Wrap(key, archiveID, recips...)
			if err != nil {
				return permanent(err)
			}
			if err := stage.WriteKey(ctx, wrapped); err != nil {
				return err
			}
		}
	} else {
		cp, err := archive.UnmarshalCheckpoint(e.Checkpoint)
		if err != nil {
			return permanent(err)
		}
		if w, err = archive.ResumeWriter(ctx, sink, opts, cp); err != nil {
			return err
		}
		resume = cp.Cursor
	}
	_, err = exporter.Export(ctx, src, w, exporter.Options{Filter: req.Selection.Filter(), Source: req.Options, Resume: resume, Personal: req.Personal,
		Interval: 2 * time.Second,
		OnProgress: func(p exporter.Progress) {
			pj := progressJSON(p)
			pj.EstimatedBytes = estimate
			b, _ := json.Marshal(pj)
			s.Store.SaveProgress(ctx, e.ID, token, string(b))
		}})
	if err != nil {
		w.Abort()
		return err
	}
	if err := sink.check(ctx); err != nil {
		w.Abort()
		return err
	}
	if _, err := w.Close(); err != nil {
		return err
	}
	obj, err := s.Storage.Publish(ctx, archiveID, req.Name)
	if err != nil {
		return err
	}
	// Finish moves the lease token on: the heartbeat then finds the lease
	// gone and cancels ctx, possibly while Finish's own call is still
	// waiting for its answer (it would fail a committed export). So
	// neither Finish nor anything after it runs under ctx; the verify job
	// is queued by the worker, under its own context.
	done := context.WithoutCancel(ctx)
	if err := s.Store.Finish(done, e.ID, store.StatusCompleted, obj.Size, obj.SHA256, ""); err != nil {
		return err
	}
	s.Store.Audit(done, store.AuditEntry{Actor: e.RequestedBy, Via: e.Via, Action: "export.finish", Target: e.ID, Outcome: "completed",
		Detail: fmt.Sprintf("%s, %d bytes, sha256 %s", storage.ArchiveKey(req.Name), obj.Size, obj.SHA256)})
	return nil
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
	if err := json.Unmarshal([]byte(e.Request), &req); err != nil || !req.Verify {
		return nil
	}
	vid := id + "-verify"
	if _, err := s.Store.GetExport(ctx, vid); err == nil {
		return nil // queued already
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if _, err := s.SubmitVerify(ctx, vid, id, e.RequestedBy, e.Via); err != nil {
		s.Store.Audit(ctx, store.AuditEntry{Actor: e.RequestedBy, Via: e.Via, Action: "export.verify", Target: id, Outcome: "retrying", Detail: "could not queue: " + err.Error()})
		return fmt.Errorf("queue the verification of export %s: %w", id, err)
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
}

func progressJSON(p exporter.Progress) Progress {
	out := Progress{Stream: p.Stream, Percent: 100 * p.Fraction(), Records: p.Records, Total: p.Total, Blobs: p.Blobs, BlobBytes: p.BlobBytes}
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
