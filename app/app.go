// Package app is Ferry's application layer: the verbs every surface calls,
// so that an operation is written once. Chat (bot), the HTTP API (api)
// and the wiring of the CLI's serve and run commands call
//
//	Submit, Cancel, Delete, CheckStored, Verify, SubmitImport, Preview,
//	PersonalExport, Get, List, AddSchedule, RemoveSchedule, Schedules,
//	DownloadLinks, IssueLink, Audit, SaveFollow, Follows, Stats, Ping
//
// and get typed views back. The job service (jobs) runs the work; Ferry's
// state database and archive storage are private to this package and the
// job service: the surfaces declare the small interface they use, so
// their handlers are tested against a fake.
//
// Every verb that changes something writes its audit entry itself, and a
// failed audit write is the verb's error: an action nobody can trace is
// reported rather than done silently. Errors carry the message a person
// reads; ErrNotFound and ErrConflict tell the surfaces which of theirs to
// give (404 and 409 in the API).
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// Kind of a job and its Status: Go types whose values are the words the
// API, the dashboard and chat show.
type (
	Kind   = store.Kind
	Status = store.Status
)

// Kinds of jobs, and their statuses (as the API reports them).
const (
	KindExport = store.KindExport
	KindImport = store.KindImport
	KindVerify = store.KindVerify

	StatusQueued     = store.StatusQueued
	StatusProcessing = store.StatusProcessing
	StatusCompleted  = store.StatusCompleted
	StatusFailed     = store.StatusFailed
	StatusCancelled  = store.StatusCancelled
	StatusDeleted    = store.StatusDeleted
)

// Types the verbs take and return, from the layers below, so that the
// surfaces need no import of them.
type (
	// Progress of a job as stored (records, percent, ETA, result).
	Progress = jobs.Progress
	// StreamProgress is one stream of an export's Progress.
	StreamProgress = jobs.StreamProgress
	// Schedule is a recurring export with retention.
	Schedule = jobs.Schedule
	// Event is what the schedules announce (started, failed, pruned, ...).
	Event = jobs.Event
	// ImportRequest says what an import job does.
	ImportRequest = jobs.ImportRequest
	// StoredArchive is what CheckStored read back.
	StoredArchive = jobs.StoredArchive
	// AuditEntry is one row of the audit log.
	AuditEntry = store.AuditEntry
	// StatusCount is one row of Stats.
	StatusCount = store.StatusCount
)

var (
	// ErrNotFound: no job of that ID (or not of the kind asked for).
	ErrNotFound = store.ErrNotFound
	// ErrConflict: the job's state does not allow the verb (deleting a
	// running export, cancelling an ended one).
	ErrConflict = errors.New("conflicts with the job's state")
	// ErrDamaged: a stored archive is not what was published.
	ErrDamaged = jobs.ErrDamaged
	// ErrDuplicate: a personal export for this request was submitted
	// already (a redelivered command).
	ErrDuplicate = errors.New("submitted already")
)

// conflict is an ErrConflict with its own message.
func conflict(format string, args ...any) error {
	return &kindError{kind: ErrConflict, msg: fmt.Sprintf(format, args...)}
}

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// Actor is who asks for a verb and through which surface, as the audit
// log and the job record them.
type Actor struct {
	Name string // a Matrix user ID, "token:NAME", "schedule:NAME"
	Via  string // "room !id:server", "api", "mydata", ...
}

// Config of the application layer.
type Config struct {
	// Source is the configured source's name (homeserver.implementation).
	Source string
	// BaseURL is Ferry's public URL for its own links (/download,
	// /reveal); LinkTTL their lifetime (default a day).
	BaseURL string
	LinkTTL time.Duration
	// MydataPerDay limits each user's personal exports (limits.mydata_per_day).
	MydataPerDay int
	// ImportFrom are the locations (bucket URLs, file:// paths) an import
	// preview may read besides Ferry's own storage (StorageURL).
	StorageURL string
	ImportFrom []string
	// PreviewTarget is the import target previews are made for (the bot
	// never imports; the preview needs the target's capabilities only).
	PreviewTarget func() importer.Target
}

// Service is the application layer over one job service.
type Service struct {
	jobs    *jobs.Service
	store   *store.Store
	storage *storage.Store
	links   *links.Handler
	cfg     Config
}

// New returns the application layer over Ferry's state database st and
// archive storage bucket (the ones the job service js was made with: the
// wiring passes them to both, and no surface gets them), the job service
// and the download link handler lh (nil: no links).
func New(st *store.Store, bucket *storage.Store, js *jobs.Service, lh *links.Handler, cfg Config) *Service {
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = 24 * time.Hour
	}
	return &Service{jobs: js, store: st, storage: bucket, links: lh, cfg: cfg}
}

// NewID returns a new random job ID.
func NewID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// View is a job as the surfaces show it.
type View struct {
	ID     string
	Kind   Kind   // KindExport, KindImport, KindVerify
	Status Status // Status*
	Name   string // the archive's name
	// Location is where a CLI export wrote its archive (a path or URL);
	// empty for the archives in Ferry's storage, the only ones the verbs
	// link to, verify or delete.
	Location string
	// Type of an export's archive: exporter.TypeFull, TypePartial or
	// TypeUser ("" for other kinds).
	Type        string
	Progress    Progress
	Size        int64
	SHA256      string
	Error       string
	RequestedBy string
	Via         string
	CreatedAt   time.Time
	FinishedAt  time.Time // zero while it runs
}

// Running reports whether the job has not ended (queued or processing).
func (v *View) Running() bool { return v.Status == StatusQueued || v.Status == StatusProcessing }

// ArchiveFile is the file name a download of the archive gets.
func (v *View) ArchiveFile() string { return v.Name + storage.ArchiveExt }

func view(e *store.Export) *View {
	v := &View{ID: e.ID, Kind: e.Kind, Status: e.Status, Name: e.Name, Location: e.Location, Size: e.Size, SHA256: e.SHA256, Error: e.Error,
		RequestedBy: e.RequestedBy, Via: e.Via, CreatedAt: e.CreatedAt, FinishedAt: e.FinishedAt}
	if e.Progress != "" {
		json.Unmarshal([]byte(e.Progress), &v.Progress) // progress is for people: a bad one shows none
	}
	if e.Kind == KindExport {
		v.Type = exporter.TypeFull
		var req jobs.Request
		if json.Unmarshal([]byte(e.Request), &req) == nil {
			v.Type = req.ArchiveType()
		}
	}
	return v
}

// Get returns one job.
func (s *Service) Get(ctx context.Context, id string) (*View, error) {
	e, err := s.store.GetExport(ctx, id)
	if err != nil {
		return nil, err
	}
	return view(e), nil
}

// List returns the newest jobs of a kind ("" for all), newest first.
func (s *Service) List(ctx context.Context, kind Kind, limit int) ([]*View, error) {
	list, err := s.store.ListJobs(ctx, kind, limit)
	if err != nil {
		return nil, err
	}
	out := make([]*View, 0, len(list))
	for _, e := range list {
		out = append(out, view(e))
	}
	return out, nil
}

// ExportRequest asks for an admin's export.
type ExportRequest struct {
	// ID of the job: chat derives it from the command's event ID, so a
	// command delivered twice names the same job; empty: a new one.
	ID        string
	Selection exporter.Selection
	Options   source.Options
	// Recipients (age1..., ssh-ed25519 ...) the archive is encrypted to,
	// or Plaintext.
	Recipients []string
	Plaintext  bool
	// Name of the published archive; empty: <type>-<UTC time>-<ID[:6]>.
	Name string
	// Verify queues a verification once the archive is published.
	Verify bool
	By     Actor
}

// Submit validates an export (the selection, and against the source's
// capabilities: source.ErrUnsupported, with the message every surface
// gives), records and queues it, and writes the audit entry. A second
// Submit of the same ID returns the job the first one started.
func (s *Service) Submit(ctx context.Context, r ExportRequest) (*View, error) {
	if r.ID == "" {
		r.ID = NewID()
	} else if e, err := s.store.GetExport(ctx, r.ID); err == nil {
		return view(e), nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if r.Name == "" {
		r.Name = exporter.ArchiveType(r.Selection, "") + "-" + time.Now().UTC().Format("20060102-150405") + "-" + r.ID[:min(6, len(r.ID))]
	}
	req := jobs.Request{Source: s.cfg.Source, Selection: r.Selection, Options: r.Options, Recipients: r.Recipients, Plaintext: r.Plaintext,
		Name: r.Name, Verify: r.Verify}
	e, err := s.jobs.Submit(ctx, r.ID, req, r.By.Name, r.By.Via)
	if err != nil {
		return nil, err
	}
	return view(e), nil
}

// Cancel stops a queued or running job; nothing is published.
func (s *Service) Cancel(ctx context.Context, id string, by Actor) (*View, error) {
	e, err := s.store.GetExport(ctx, id)
	if err != nil {
		return nil, err
	}
	if !e.Running() {
		return nil, conflict("%s %s has already ended (%s)", e.Kind, id, e.Status)
	}
	if err := s.jobs.Cancel(ctx, id, by.Name, by.Via); err != nil {
		return nil, err
	}
	return s.Get(ctx, id)
}

// completed reads a completed export, or says why it is not one (what:
// what the caller wants to do with its archive).
func (s *Service) completed(ctx context.Context, id, what string) (*store.Export, error) {
	e, err := s.store.GetExport(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.Kind != KindExport || e.Status != StatusCompleted {
		return nil, conflict("%s %s is %s: only a completed export has an archive to %s", e.Kind, e.ID, e.Status, what)
	}
	if e.Location != "" {
		return nil, conflict("export %s was written by the CLI to %s, not to Ferry's storage: there is no archive here to %s", e.ID, e.Location, what)
	}
	return e, nil
}

// Delete deletes a completed export's archive and its key file and
// marks the export deleted (jobs.DeleteArchive, the one deletion that
// retention uses too).
func (s *Service) Delete(ctx context.Context, id string, by Actor) (*View, error) {
	e, err := s.completed(ctx, id, "delete")
	if err != nil {
		return nil, err
	}
	if err := s.jobs.DeleteArchive(ctx, e.Name, by.Name, by.Via, ""); err != nil {
		return nil, err
	}
	return s.Get(ctx, id)
}

// CheckStored reads a completed export's archive back from storage and
// checks it against what was published (jobs.CheckStored: size, SHA-256,
// key file), without a key. Damage is ErrDamaged, after its audit entry.
func (s *Service) CheckStored(ctx context.Context, id string, by Actor) (*StoredArchive, error) {
	e, err := s.completed(ctx, id, "verify")
	if err != nil {
		return nil, err
	}
	got, err := s.jobs.CheckStored(ctx, e)
	entry := AuditEntry{Actor: by.Name, Via: by.Via, Action: "export.verify", Target: e.ID, Outcome: "ok", Detail: "size and SHA-256 as published"}
	switch {
	case errors.Is(err, ErrDamaged):
		entry.Outcome, entry.Detail = "corrupt", err.Error()
	case err != nil:
		return nil, err
	}
	if aerr := s.audit(ctx, entry); aerr != nil {
		return nil, aerr
	}
	return got, err
}

// ChecksContents reports whether Ferry holds an identity that opens
// archives (encryption.identity_file): a verify job then checks every
// record and signature inside, not only the stored bytes.
func (s *Service) ChecksContents() bool { return len(s.jobs.Identities) > 0 }

// Verify queues a verify job (jobs.VerifyStored) of a completed export's
// archive under job ID id (empty: a new one).
func (s *Service) Verify(ctx context.Context, id, export string, by Actor) (*View, error) {
	if _, err := s.completed(ctx, export, "verify"); err != nil {
		return nil, err
	}
	if id == "" {
		id = "ver-" + NewID()
	}
	e, err := s.jobs.SubmitVerify(ctx, id, export, by.Name, by.Via)
	if err != nil {
		return nil, err
	}
	return view(e), nil
}

// SubmitImport queues an import of a published archive into a configured
// target (jobs.SubmitImport); keyLine opens an encrypted archive that
// Ferry's identity does not (kept only until the job ends).
func (s *Service) SubmitImport(ctx context.Context, id string, req ImportRequest, keyLine string, by Actor) (*View, error) {
	if id == "" {
		id = "imp-" + NewID()
	}
	if req.Export != "" {
		// Only an export in Ferry's storage: a CLI export's name could
		// be another archive's there.
		if _, err := s.completed(ctx, req.Export, "import"); err != nil {
			return nil, err
		}
	}
	e, err := s.jobs.SubmitImport(ctx, id, req, keyLine, by.Name, by.Via)
	if err != nil {
		return nil, err
	}
	return view(e), nil
}

// Links are download links of an archive and its key file.
type Links struct {
	Archive, Key string
	Expires      time.Time
}

// DownloadLinks mints fresh links to a completed export's archive and
// key file, for a view (not audited: each download is).
func (s *Service) DownloadLinks(ctx context.Context, v *View) (*Links, error) {
	if v.Kind != KindExport || v.Status != StatusCompleted {
		return nil, conflict("%s %s is %s: only a completed export has an archive to link to", v.Kind, v.ID, v.Status)
	}
	if v.Location != "" {
		return nil, conflict("export %s was written by the CLI to %s, not to Ferry's storage: there is no archive here to link to", v.ID, v.Location)
	}
	if s.links == nil {
		return nil, errors.New("this Ferry serves no download links")
	}
	key := storage.ArchiveKey(v.Name)
	archiveURL, exp, err := s.links.Link(ctx, s.cfg.BaseURL, key, s.cfg.LinkTTL)
	if err != nil {
		return nil, err
	}
	keyURL, _, err := s.links.Link(ctx, s.cfg.BaseURL, key+storage.KeyExt, s.cfg.LinkTTL)
	if err != nil {
		return nil, err
	}
	return &Links{Archive: archiveURL, Key: keyURL, Expires: exp}, nil
}

// IssueLink is DownloadLinks for a caller that asked for a link, audited.
func (s *Service) IssueLink(ctx context.Context, id string, by Actor) (*Links, error) {
	e, err := s.completed(ctx, id, "link to")
	if err != nil {
		return nil, err
	}
	l, err := s.DownloadLinks(ctx, view(e))
	if err != nil {
		return nil, err
	}
	if err := s.audit(ctx, AuditEntry{Actor: by.Name, Via: by.Via, Action: "link.create", Target: id, Outcome: "ok",
		Detail: "expires " + l.Expires.Format(time.RFC3339)}); err != nil {
		return nil, err
	}
	return l, nil
}

// Audit writes an entry the surfaces record themselves (commands,
// refusals, downloads).
func (s *Service) Audit(ctx context.Context, e AuditEntry) error { return s.audit(ctx, e) }

// audit writes an entry even when ctx is cancelled (the action happened).
func (s *Service) audit(ctx context.Context, e AuditEntry) error {
	if err := s.store.Audit(context.WithoutCancel(ctx), e); err != nil {
		return fmt.Errorf("%s of %s: the audit log could not be written: %w", e.Action, e.Target, err)
	}
	return nil
}

// SaveFollow keeps the bot's follow state of a job (its own JSON, in the
// bot's table); an empty state forgets it.
func (s *Service) SaveFollow(ctx context.Context, id, state string) error {
	return s.store.SaveFollow(context.WithoutCancel(ctx), id, state)
}

// Follows returns the bot's follow states by job ID (SaveFollow).
func (s *Service) Follows(ctx context.Context) (map[string]string, error) {
	return s.store.Follows(ctx)
}

// AddSchedule adds a schedule at run time (stored; every instance runs
// it; audited), checked against the source's capabilities like Submit.
func (s *Service) AddSchedule(ctx context.Context, r ScheduleRequest) (Schedule, error) {
	sch := Schedule{Name: r.Name, Cron: r.Cron, Keep: r.Keep, MaxAge: r.MaxAge, CreatedBy: r.By.Name,
		Request: jobs.Request{Source: s.cfg.Source, Selection: r.Selection, Recipients: r.Recipients}}
	return sch, s.jobs.AddSchedule(ctx, sch)
}

// RemoveSchedule removes a schedule added at run time; its archives stay.
func (s *Service) RemoveSchedule(ctx context.Context, name string, by Actor) error {
	return s.jobs.RemoveSchedule(ctx, name, by.Name)
}

// ScheduleView is a schedule and when it last succeeded.
type ScheduleView struct {
	Schedule
	LastSuccess time.Time // zero: never
}

// Schedules lists the installed schedules by name.
func (s *Service) Schedules(ctx context.Context) ([]ScheduleView, error) {
	last, err := s.store.LastScheduledSuccess(ctx)
	if err != nil {
		return nil, err
	}
	var out []ScheduleView
	for _, sch := range s.jobs.Schedules() {
		out = append(out, ScheduleView{Schedule: sch, LastSuccess: last[sch.Name]})
	}
	return out, nil
}

// Stats are the numbers behind the metrics.
type Stats struct {
	Counts      []StatusCount
	LastSuccess map[string]time.Time // per schedule
}

// Stats reads the jobs' counts by kind and status, and the schedules'
// last successes.
func (s *Service) Stats(ctx context.Context) (*Stats, error) {
	counts, err := s.store.CountByStatus(ctx)
	if err != nil {
		return nil, err
	}
	last, err := s.store.LastScheduledSuccess(ctx)
	if err != nil {
		return nil, err
	}
	return &Stats{Counts: counts, LastSuccess: last}, nil
}

// Ping checks that the state database answers.
func (s *Service) Ping(ctx context.Context) error { return s.store.DB.PingContext(ctx) }

// ScheduleRequest asks for a schedule added at run time.
type ScheduleRequest struct {
	Name, Cron string
	Selection  exporter.Selection
	Recipients []string
	Keep       int           // keep the newest Keep archives (0: no limit)
	MaxAge     time.Duration // delete archives older than this (0: no limit)
	By         Actor
}
