// Package importer restores a Ferry archive into a homeserver: the twin of
// package source. A Target is one homeserver implementation (Dendrite in
// importer/dendrite, Synapse in importer/synapse); Run is the one import
// pipeline every surface calls (the CLI's import and migrate, the jobs, the
// bot's !import preview): validate the archive, preview what the target
// cannot hold, check the target before any write, import, read back.
//
// importer/targettest is the conformance suite every Target passes.
package importer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/matrixevent"
)

// Target is a homeserver an archive can be restored into. Its constructor
// (dendrite.NewTarget, synapse.NewTarget) takes where the target lives: its
// config file, database and media store.
//
// The contract:
//
//   - Capabilities says what the target cannot hold, rebuilds itself, or
//     which room versions it lacks; previews and fidelity reports come from
//     it alone.
//   - Check reads the target and writes nothing. It refuses (an error that
//     errors.Is ErrRefused, saying what is wrong and what to do) a target
//     that is unreachable, running, of another server_name, of a schema the
//     target package does not support, or not empty, unless it is a rerun
//     of the same archive (State.Resuming) or Options.AllowNonEmpty.
//   - Import writes. It is called only after Check passed, never for a dry
//     run. It is idempotent and resumable: run again after an interruption
//     (a kill at any point) it completes, and the result is the same as an
//     uninterrupted import's. It stops when ctx is cancelled and reports
//     its phases and counts to Progress.
//   - ReadBack counts, per archive section, what the target now holds, read
//     with Ferry's own export of that implementation, or counted in the
//     target as that export selects records (never the importer's
//     counters).
type Target interface {
	Capabilities() *fidelity.Target
	Check(ctx context.Context, r *archive.Reader, opts Options) (*State, error)
	Import(ctx context.Context, r *archive.Reader, opts Options, p Progress, res *Result) error
	ReadBack(ctx context.Context, opts Options) (map[string]int64, error)
}

// Planner is a Target that can say, writing nothing, what an import would
// do: it fills Result.InArchive and adds to Result.Report what the target
// will not take, as Import does before its first write, and refuses (an
// ErrRefused) what Import would refuse then (a room not in the archive).
// Run calls it after Check for a dry run, which then shows the same counts
// and report as the import; a Target without it shows the preview only.
type Planner interface {
	Plan(ctx context.Context, r *archive.Reader, opts Options, res *Result) error
}

// Options select what an import writes. The same words as the CLI's flags.
type Options struct {
	// Rooms limits the import to these rooms. Server-wide data (users,
	// media, keys) is still imported, unless the target's room mode says
	// otherwise (Synapse's deleted-room restore).
	Rooms []string
	// Migration carries devices and access tokens, so clients stay logged
	// in. Encrypted migration exports only.
	Migration bool
	// AllowNonEmpty lets the import write into a target that already holds
	// users or rooms and was not started by an import of this archive.
	AllowNonEmpty bool
	// DryRun validates and checks, and reports what would be imported.
	DryRun bool
	// Unblock lets a room restore lift the target's block on the room.
	Unblock bool
}

// State is what Check found in the target.
type State struct {
	// Name says what the target is, e.g. "Synapse 1.160.0 (schema 94)".
	Name         string
	Users, Rooms int64
	// Resuming: an import of this same archive was started here before.
	Resuming bool
}

// Result is what an import did.
type Result struct {
	Validation *archive.ValidationReport
	// Report lists everything that does not arrive unchanged, with the
	// format's reason codes: the preview's entries and the import's own.
	Report *fidelity.Report
	Target *State
	// InArchive counts records per section of the archive (of the selected
	// rooms); the target fills it. InTarget is ReadBack's count after the
	// import (nil after a dry run).
	InArchive map[string]int64
	InTarget  map[string]int64
	// Skipped counts items the target already had (a rerun).
	Skipped int64
	// Files lists the files the import wrote or replaced, one line each
	// ("/etc/matrix/signing.key (the previous one saved as ...)").
	Files []string
	// ConfigAdvice is what to add to the target's config file by hand
	// (retired signing keys, for instance); empty if nothing.
	ConfigAdvice string
	// Notes are things the admin must do or know after the import
	// ("clients that synced past the archive must clear their cache").
	Notes []string
}

// ErrRefused marks an import stopped before it wrote anything.
var ErrRefused = errors.New("import refused")

// Refuse returns an error that errors.Is ErrRefused.
func Refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Progress receives an import's phases and counts. Implementations must be
// safe to call from the importing goroutine only; they must not block.
type Progress interface {
	// Phase starts a named phase ("events") of total items (0: unknown).
	Phase(name string, total int64)
	// Add counts n more items done in the current phase.
	Add(n int64)
}

// NoProgress discards progress.
var NoProgress Progress = noProgress{}

type noProgress struct{}

func (noProgress) Phase(string, int64) {}
func (noProgress) Add(int64)           {}

// ValidatingTarget is a Target that can import while Run validates the
// archive, so that a restore takes about the longer of the two instead of
// their sum. Run calls ImportValidating instead of Import, and no
// Planner or preview has seen the validation yet: res.Report is a report
// of the import's own entries, which Run puts after the preview's once the
// validation is done.
//
// The target must call v.Wait before anything it writes can stay (a
// commit, a file placed), and, when it returns an error, undo what it
// wrote: a refused archive leaves the target as it was, as when Run
// validates first. It may take the archive's events from the validation
// (v.Events) instead of reading them again.
type ValidatingTarget interface {
	Target
	ImportValidating(ctx context.Context, r *archive.Reader, opts Options, p Progress, res *Result, v *Validation) error
}

// Validation is the validation Run runs beside a ValidatingTarget's
// import. A nil *Validation is one that already passed.
type Validation struct {
	done chan struct{}
	err  error // set before done closes
	tap  *archive.EventTap
}

// Wait blocks until the validation is done and returns nil, the refusal
// (ErrRefused) of an archive that failed it, or ctx's error. It first
// gives up the events Events has not taken: the validation waits for
// them.
func (v *Validation) Wait(ctx context.Context) error {
	if v == nil {
		return nil
	}
	v.Release()
	select {
	case <-v.done:
		return v.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release gives up the events: the import does not take them from the
// validation (it reads them itself, if at all).
func (v *Validation) Release() {
	if v != nil {
		v.tap.Release()
	}
}

// Events calls fn with every event of r (the archive Run validates), in
// archive order, as the validation decodes and checks it, with the fields
// its checks parsed (nil: parse the event yourself), so that the import
// needs no walk of the events of its own; the event and its fields are
// fn's once handed (the validation keeps nothing of them). It returns nil once
// the last event was handed, fn's error, the error that stopped the
// validation first, or ctx's. It may be called once, before Wait; ok is
// false (and nothing done) when v is nil: read the events yourself.
func (v *Validation) Events(ctx context.Context, r *archive.Reader, fn func(*archive.Event, *matrixevent.Fields) error) (ok bool, err error) {
	if v == nil {
		return false, nil
	}
	return true, v.tap.Each(ctx, r, fn)
}

// Run imports r into t: it validates the archive, previews what t cannot
// hold, checks t, and (unless opts.DryRun) imports and reads back. A
// refusal leaves the target untouched and errors.Is ErrRefused; the Result
// is returned with whatever was learned before the error. A
// ValidatingTarget imports while the archive is validated.
func Run(ctx context.Context, t Target, r *archive.Reader, opts Options, p Progress) (*Result, error) {
	if p == nil {
		p = NoProgress
	}
	m := r.Manifest()
	if opts.Migration {
		if m.Encryption == archive.EncryptionNone {
			return nil, Refuse("--migration needs an encrypted archive (access tokens are secrets)")
		}
		if !m.Export.Options[archive.OptAccessTokens] {
			return nil, Refuse("--migration needs an archive exported with access tokens (bot export --migration)")
		}
	}
	if vt, ok := t.(ValidatingTarget); ok && !opts.DryRun {
		return runValidating(ctx, vt, r, opts, p)
	}
	p.Phase("validating the archive", 0)
	v, err := archive.Validate(ctx, r)
	if err != nil {
		return nil, err
	}
	res := &Result{Validation: v}
	if err := refuseInvalid(v); err != nil {
		return res, err
	}
	res.Report = fidelity.Preview(r, v, t.Capabilities())
	p.Phase("checking the target", 0)
	state, err := t.Check(ctx, r, opts)
	if err != nil {
		return res, err
	}
	res.Target = state
	if opts.DryRun {
		if pl, ok := t.(Planner); ok {
			if err := pl.Plan(ctx, r, opts, res); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	if err := t.Import(ctx, r, opts, p, res); err != nil {
		return res, err
	}
	return res, readBack(ctx, t, opts, p, res)
}

// refuseInvalid is the refusal of an archive that failed validation.
func refuseInvalid(v *archive.ValidationReport) error {
	if fatal := FirstErrors(v, 3); fatal != "" {
		return Refuse("the archive failed validation (%s); run `bot archive verify` on it for the full list", fatal)
	}
	return nil
}

func readBack(ctx context.Context, t Target, opts Options, p Progress, res *Result) error {
	p.Phase("reading the target back", 0)
	var err error
	res.InTarget, err = t.ReadBack(ctx, opts)
	if err != nil {
		return fmt.Errorf("reading the target back: %w", err)
	}
	return nil
}

// runValidating is Run for a ValidatingTarget: the validation runs on its
// own goroutine from the start, beside the check and the import. An
// archive that fails it is refused with the same error as when it is
// validated first, whatever the check or the import said meanwhile.
func runValidating(ctx context.Context, t ValidatingTarget, r *archive.Reader, opts Options, p Progress) (*Result, error) {
	p.Phase("validating the archive (beside the import)", 0)
	vctx, stop := context.WithCancel(ctx)
	defer stop()
	var rep *archive.ValidationReport
	val := &Validation{done: make(chan struct{}), tap: archive.NewEventTap()}
	go func() {
		defer close(val.done)
		rep, val.err = archive.ValidateTapped(vctx, r, val.tap)
		if val.err == nil {
			val.err = refuseInvalid(rep)
		}
	}()
	res := &Result{Report: &fidelity.Report{}}
	// finish waits for the validation (stopping it when the import
	// failed), and puts the preview before the import's report entries.
	finish := func(importErr error) error {
		if ctx.Err() != nil {
			stop() // cancelled: the validation need not finish
		}
		// Otherwise it finishes even after a failed import: an archive the
		// import found damaged is refused as validation words it. Events
		// the import did not take no longer hold it up.
		val.tap.Release()
		<-val.done
		v, verr := rep, val.err
		res.Validation = v
		if v != nil {
			own := res.Report
			res.Report = fidelity.Preview(r, v, t.Capabilities())
			for _, e := range own.Entries {
				res.Report.AddN(e.Code, e.Item, e.ID, e.Detail, e.Count)
			}
		}
		if verr != nil && (importErr == nil || errors.Is(verr, ErrRefused)) {
			return verr
		}
		return importErr
	}
	p.Phase("checking the target", 0)
	state, err := t.Check(ctx, r, opts)
	if err != nil {
		return res, finish(err)
	}
	res.Target = state
	if err := finish(t.ImportValidating(ctx, r, opts, p, res, val)); err != nil {
		return res, err
	}
	return res, readBack(ctx, t, opts, p, res)
}

// FirstErrors lists up to n validation errors that stop an import. A room
// of a version this Ferry cannot check is not one: the target skips the
// room and the preview reports it (room_version_unsupported).
func FirstErrors(v *archive.ValidationReport, n int) string {
	var out []string
	for _, p := range v.Problems {
		if p.Severity == archive.SeverityError && p.Check != archive.CheckUnsupportedRoomVersion {
			out = append(out, fmt.Sprintf("%s: %s", p.Check, p.Message))
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "; ")
}
