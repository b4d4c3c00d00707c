package exporter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/source"
)

// Plan is one export, derived once from what was asked (NewPlan): the
// selection, the export options or a personal export's user, how the
// archive key reaches its readers, and the writer's settings. Run carries
// it out; the job worker and bot export both build one.
type Plan struct {
	Selection Selection
	Options   source.Options
	// Personal, a user ID, makes a personal export of that user (archive
	// type "user"); Selection is then empty.
	Personal string
	// Wrap wraps the archive key for its readers (recipients, a
	// passphrase): the key file beside the archive, or nil for none (a
	// caller that keeps the key in memory). A nil Wrap writes a plaintext
	// archive.
	Wrap func(key keywrap.Key, archiveID string) ([]byte, error)

	PartSize    int64             // each part is a resume point (default archive.DefaultPartSize)
	Concurrency int               // zstd encoder goroutines (default the writer's)
	Level       zstd.EncoderLevel // compression (default the writer's)
	Interval    time.Duration     // between progress reports (default 1 s)
}

// NewPlan checks what was asked, once, for every caller: the selection
// (Validate), a personal export taking no selection or options, and
// secrets only in an encrypted archive (encrypted: a key will be wrapped).
// The caller sets Wrap and the writer settings on the result.
func NewPlan(sel Selection, o source.Options, personal string, encrypted bool) (Plan, error) {
	if err := sel.Validate(); err != nil {
		return Plan{}, err
	}
	if personal != "" && !sel.IsFull() {
		return Plan{}, errors.New("a personal export takes no filter")
	}
	if personal != "" && (o != source.Options{}) {
		return Plan{}, errors.New("a personal export takes no export options (no tokens, keys or redacted originals)")
	}
	if !encrypted && (o.AccessTokens || o.RedactedOriginals || o.PrivateServerKey) {
		return Plan{}, errors.New("access tokens, redacted originals and the private key need an encrypted archive")
	}
	return Plan{Selection: sel, Options: o, Personal: personal}, nil
}

// Type is the archive type the plan makes (ArchiveType).
func (p Plan) Type() string { return ArchiveType(p.Selection, p.Personal) }

// ExportInfo is the manifest's description of this export from a server:
// the archive type and the filters the manifest records (a personal
// export's: its user and all their media).
func (p Plan) ExportInfo(info source.Info) archive.ExportInfo {
	filters := p.Selection.Filter().Archive()
	if p.Personal != "" {
		filters = &archive.Filters{Users: []string{p.Personal}, Media: source.MediaAll}
	}
	return archive.ExportInfo{ServerName: info.ServerName, Type: p.Type(), Filters: filters, Options: p.Options.Archive(),
		Source: archive.SourceInfo{Implementation: info.Implementation, Version: info.Version, SchemaVersion: info.SchemaVersion}}
}

// Destination is where an export's archive goes: its parts are staged
// (the same staging again when an export resumes), its wrapped key is
// kept beside them, and the closed archive is published under its final
// name. The job service's is the storage bucket; bot export's a local
// directory, a packed file or a bucket URL.
type Destination interface {
	// Stage returns the sink the parts of archive id are written to.
	Stage(ctx context.Context, archiveID string) (container.Sink, error)
	// WriteKey keeps the wrapped key of archive id beside its parts.
	WriteKey(ctx context.Context, archiveID string, wrapped []byte) error
	// Publish makes the closed archive id available under its final
	// name, and says where and what it is.
	Publish(ctx context.Context, archiveID string) (Published, error)
}

// Published is an archive once Publish has put it in place.
type Published struct {
	Location string // the archive's name or path, for people
	KeyFile  string // its key file's, when kept apart from it (a packed file's)
	Size     int64  // bytes, when the destination counts them
	SHA256   string // hex, when the destination hashes it
}

// Checkpointer keeps an export's resume state: the archive ID and key,
// recorded before the first part is written, and the writer's checkpoint
// after every committed part. An export that is run again with the same
// checkpointer resumes from its last complete part. The job store keeps
// it with the job's row (fenced by the lease); bot export in a file
// beside its output; NoCheckpoints keeps nothing.
type Checkpointer interface {
	// Load returns the state an earlier run left, or nil to start afresh.
	Load(ctx context.Context) (*Resume, error)
	// Start records a new archive's ID and key (zero: plaintext).
	Start(ctx context.Context, archiveID string, key keywrap.Key) error
	// Save records the writer's checkpoint (archive.MarshalCheckpoint).
	Save(ctx context.Context, checkpoint []byte) error
	// Done forgets the state once the archive is published.
	Done(ctx context.Context) error
}

// Resume is what a Checkpointer kept of an interrupted export.
type Resume struct {
	ArchiveID  string
	Key        keywrap.Key // zero for a plaintext archive
	Checkpoint []byte      // nil: no part was committed yet (a fresh start)
}

// NoCheckpoints keeps no state: every run starts afresh.
var NoCheckpoints Checkpointer = noCheckpoints{}

type noCheckpoints struct{}

func (noCheckpoints) Load(context.Context) (*Resume, error)            { return nil, nil }
func (noCheckpoints) Start(context.Context, string, keywrap.Key) error { return nil }
func (noCheckpoints) Save(context.Context, []byte) error               { return nil }
func (noCheckpoints) Done(context.Context) error                       { return nil }

// Result is a finished export: its last progress, the archive's ID and
// where it was published.
type Result struct {
	Progress
	ArchiveID string
	Info      source.Info
	Published Published
	Resumed   bool // it continued an interrupted run
	// ArchiveRecords is every record the archive holds, as its manifest
	// counts them (what verify reports): Progress.Records counts the
	// streamed records only, not whole files (state snapshots, the server's
	// keys) nor the omissions.
	ArchiveRecords int64
}

// Run does (or resumes) the whole export of plan from src into dst: the
// archive ID and key (new, or the checkpointer's), the writer with the
// manifest's export info, the wrapped key, the streams (Export), closing
// and publishing. progress, if set, hears a snapshot after every stream
// and at most every plan.Interval. On error nothing is published; what
// was staged stays for a resume (the caller discards it when the export
// has ended for good).
func Run(ctx context.Context, plan Plan, src source.Source, dst Destination, cp Checkpointer, progress func(Progress)) (*Result, error) {
	if cp == nil {
		cp = NoCheckpoints
	}
	log := zerolog.Ctx(ctx)
	info := src.Info()
	var estimate int64
	if est, ok := src.(source.Estimator); ok {
		n, err := est.EstimateSize(ctx, plan.Selection.Filter(), plan.Options)
		if err != nil {
			log.Warn().Err(err).Msg("the archive's size could not be estimated")
		} else if n > 0 {
			estimate = n
			if progress != nil {
				progress(Progress{EstimatedBytes: n, Started: time.Now(), SnapshotAt: info.SnapshotTime})
			}
		}
	}
	state, err := cp.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the export's checkpoint: %w", err)
	}
	res := &Result{Info: info, Resumed: state != nil && state.Checkpoint != nil}
	var key keywrap.Key
	var saved *archive.Checkpoint
	if res.Resumed {
		res.ArchiveID, key = state.ArchiveID, state.Key
		if key.IsZero() != (plan.Wrap == nil) {
			was := "encrypted"
			if key.IsZero() {
				was = "plaintext"
			}
			return nil, permanentf("the interrupted export's archive %s is %s and this one is not: start it afresh", state.ArchiveID, was)
		}
		if saved, err = archive.UnmarshalCheckpoint(state.Checkpoint); err != nil {
			return nil, permanentf("%w", err)
		}
	} else {
		// A new archive: its ID and key are recorded before its first
		// part, so that a crash after it resumes the same archive.
		res.ArchiveID = container.NewArchiveID().String()
		if plan.Wrap != nil {
			key = keywrap.New()
		}
		if err := cp.Start(ctx, res.ArchiveID, key); err != nil {
			return nil, err
		}
	}
	id, err := container.ParseArchiveID(res.ArchiveID)
	if err != nil {
		return nil, permanentf("%w", err)
	}
	sink, err := dst.Stage(ctx, res.ArchiveID)
	if err != nil {
		return nil, err
	}
	opts := archive.WriterOptions{ArchiveID: id, Key: key, PartSize: plan.PartSize, Concurrency: plan.Concurrency, Level: plan.Level,
		Export: plan.ExportInfo(info),
		Core:   archive.Core{ServerName: info.ServerName, DefaultRoomVersion: info.DefaultRoomVersion},
		OnCheckpoint: func(c *archive.Checkpoint) error {
			b, err := archive.MarshalCheckpoint(c)
			if err != nil {
				return err
			}
			return cp.Save(ctx, b)
		}}
	var w *archive.Writer
	var cursor []byte
	if saved != nil {
		if w, err = archive.ResumeWriter(ctx, sink, opts, saved); err != nil {
			return nil, err
		}
		cursor = saved.Cursor
		log.Info().Str("archive", res.ArchiveID).Int("next_part", saved.NextPart).Msg("resuming the export after its last complete part")
	} else if w, err = archive.NewWriter(ctx, sink, opts); err != nil {
		return nil, err
	}
	if plan.Wrap != nil {
		// Wrapped again on a resume too: the key file is the running
		// plan's (a passphrase given anew, say), not the first run's.
		wrapped, err := plan.Wrap(key, res.ArchiveID)
		if err != nil {
			w.Abort()
			return nil, permanentf("wrap the archive key: %w", err)
		}
		if wrapped != nil { // nil: the caller keeps the key itself
			if err := dst.WriteKey(ctx, res.ArchiveID, wrapped); err != nil {
				w.Abort()
				return nil, fmt.Errorf("store the wrapped key: %w", err)
			}
		}
	}
	report := progress
	if progress != nil && estimate > 0 {
		report = func(p Progress) { p.EstimatedBytes = estimate; progress(p) }
	}
	res.Progress, err = Export(ctx, src, w, Options{Filter: plan.Selection.Filter(), Source: plan.Options, Resume: cursor,
		Personal: plan.Personal, OnProgress: report, Interval: plan.Interval})
	res.Progress.EstimatedBytes = estimate
	if err != nil {
		w.Abort()
		return res, err
	}
	m, err := w.Close()
	if err != nil {
		return res, err
	}
	res.ArchiveRecords = m.TotalRecords()
	if res.Published, err = dst.Publish(ctx, res.ArchiveID); err != nil {
		return res, err
	}
	if err := cp.Done(ctx); err != nil {
		// The archive is published and complete; only the state is left.
		log.Warn().Err(err).Str("archive", res.ArchiveID).Msg("the published export's checkpoint could not be removed")
	}
	return res, nil
}

// ErrPermanent marks an error of Run that running it again will not fix
// (a checkpoint that does not decode, a key that cannot be wrapped).
var ErrPermanent = errors.New("permanent")

func permanentf(format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrPermanent, fmt.Errorf(format, args...))
}
