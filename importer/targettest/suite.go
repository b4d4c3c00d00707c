// Package targettest is the conformance suite every importer.Target
// passes, the twin of source/sourcetest: the same checks, through
// importer.Run, on one archive the harness provides, into fresh targets it
// makes. What a target reads back is compared with what it says the archive
// holds, section by section, except where its capabilities say it has no
// place for a section or rebuilds it.
//
// The checks:
//
//   - dry run: writes nothing (the target reads back as before, and Check
//     passes as on a fresh target);
//   - import: every stored section reads back as many records as the
//     archive holds; progress names its phases, and every phase that counts
//     items has a total they add up to (what a CLI needs for counts and an
//     ETA);
//   - rerun: the same archive again is accepted as a rerun, skips what the
//     target has and changes nothing;
//   - refusals: another server_name, a target holding data no import of
//     this archive wrote, and a corrupt archive are refused (ErrRefused)
//     before any write;
//   - interruption: an import cancelled at several points (picked by its
//     progress) and run again ends where an uninterrupted import ends.
package targettest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
)

// Harness describes one target implementation to the suite.
type Harness struct {
	// Archive opens the archive every check imports: a new reader per call,
	// always of the same archive. It should hold every section the target
	// stores, so that each is compared.
	Archive func(t *testing.T) *archive.Reader
	// Options are those of every import (Migration for a migration export).
	Options importer.Options
	// NewTarget returns a fresh, stopped target for serverName, initialised
	// as the homeserver initialises itself, and empty (no users, no rooms);
	// with populated, holding a user that no import wrote.
	NewTarget func(t *testing.T, serverName string, populated bool) *Instance
	// Interrupt lists where the interruption check cancels an import; nil:
	// three points picked from an uninterrupted import's progress (early in
	// the first phase that counts items, halfway through the largest, late
	// in the last).
	Interrupt []Point
}

// Instance is one target made by a Harness.
type Instance struct {
	importer.Target
	// Verify, if set, fails t unless the target holds the archive as a
	// complete import leaves it, in more detail than ReadBack's counts (a
	// re-export compared with the archive, for instance).
	Verify func(t *testing.T)
}

// Point is where an import is cancelled: once After items of the progress
// phase Phase are done.
type Point struct {
	Phase string
	After int64
	// NothingKept: the import keeps nothing written before this point (a
	// target whose phase is one transaction rolls it back), so its rerun
	// starts over and need not skip anything.
	NothingKept bool
}

func (p Point) String() string {
	return fmt.Sprintf("%s_%d", strings.ReplaceAll(p.Phase, " ", "_"), p.After)
}

// Run runs the conformance checks as subtests.
func Run(t *testing.T, h Harness) {
	name := h.Archive(t).Core().ServerName
	var want map[string]int64 // an uninterrupted import, read back
	var trace *recorder
	t.Run("import", func(t *testing.T) {
		want, trace = h.checkImport(t, name)
	})
	t.Run("refusals", func(t *testing.T) { h.checkRefusals(t, name) })
	t.Run("interrupted", func(t *testing.T) {
		if want == nil {
			t.Skip("no uninterrupted import to compare with")
		}
		points := h.Interrupt
		if points == nil {
			points = trace.points()
		}
		if len(points) == 0 {
			t.Fatal("no phase of the import counts items: nowhere to interrupt it")
		}
		for _, pt := range points {
			t.Run(pt.String(), func(t *testing.T) { h.checkInterrupted(t, name, pt, want) })
		}
	})
}

// checkImport: a dry run, the import, and the same again, into one target.
func (h Harness) checkImport(t *testing.T, name string) (map[string]int64, *recorder) {
	ctx := testContext(t)
	inst := h.NewTarget(t, name, false)
	fresh := readBack(t, inst)

	dry := h.Options
	dry.DryRun = true
	planned, err := importer.Run(ctx, inst.Target, h.Archive(t), dry, nil)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if planned.InTarget != nil {
		t.Errorf("the dry run read the target back: %v", planned.InTarget)
	}
	if s := planned.Target; s == nil || s.Users != 0 || s.Rooms != 0 || s.Resuming {
		t.Errorf("the dry run's check found %+v in a fresh target, want no users, no rooms, no import started", s)
	}
	h.untouched(t, inst, fresh, "the dry run", true)

	rec := &recorder{}
	res, err := importer.Run(ctx, inst.Target, h.Archive(t), h.Options, rec)
	if res != nil && res.Report != nil && !res.Report.Lossless() {
		t.Logf("fidelity report:\n%s", res.Report)
	}
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if len(res.InArchive) == 0 {
		t.Fatal("the target did not count what the archive holds (Result.InArchive)")
	}
	if planned.InArchive != nil && !maps.Equal(planned.InArchive, res.InArchive) {
		t.Errorf("the dry run counted %v, the import %v", planned.InArchive, res.InArchive)
	}
	checkStored(t, inst.Capabilities(), res.InArchive, res.InTarget)
	rec.check(t)
	if inst.Verify != nil {
		inst.Verify(t)
	}

	again, err := importer.Run(ctx, inst.Target, h.Archive(t), h.Options, nil)
	if err != nil {
		t.Fatalf("the same archive again: %v", err)
	}
	if again.Target == nil || !again.Target.Resuming {
		t.Errorf("the same archive again is not taken for a rerun: %+v", again.Target)
	}
	if again.Skipped == 0 {
		t.Error("the rerun skipped nothing: it found nothing of the first import")
	}
	if !maps.Equal(again.InTarget, res.InTarget) {
		t.Errorf("the rerun changed the target: %v, after the first import %v", again.InTarget, res.InTarget)
	}
	if inst.Verify != nil {
		inst.Verify(t)
	}
	return res.InTarget, rec
}

// checkRefusals: what Check and Run must refuse, leaving the target as it
// was.
func (h Harness) checkRefusals(t *testing.T, name string) {
	ctx := testContext(t)
	refused := func(t *testing.T, inst *Instance, r *archive.Reader, opts importer.Options, why string, check bool) {
		t.Helper()
		before := readBack(t, inst)
		res, err := importer.Run(ctx, inst.Target, r, opts, nil)
		if !errors.Is(err, importer.ErrRefused) {
			t.Fatalf("%s: Run returned %v, want a refusal (importer.ErrRefused)", why, err)
		}
		t.Logf("refused: %v", err)
		if res != nil && res.InTarget != nil {
			t.Errorf("%s: refused, yet the target was read back after an import", why)
		}
		h.untouched(t, inst, before, "the refusal", check)
	}
	t.Run("other-server-name", func(t *testing.T) {
		refused(t, h.NewTarget(t, "other-"+name, false), h.Archive(t), h.Options, "a target of another server_name", false)
	})
	t.Run("not-empty", func(t *testing.T) {
		inst := h.NewTarget(t, name, true)
		refused(t, inst, h.Archive(t), h.Options, "a target holding a user no import wrote", true)
		opts := h.Options
		opts.AllowNonEmpty, opts.DryRun = true, true
		if inst.Capabilities().NoMerge {
			refused(t, inst, h.Archive(t), opts, "AllowNonEmpty on a target that never merges", true)
			return
		}
		res, err := importer.Run(ctx, inst.Target, h.Archive(t), opts, nil)
		if err != nil {
			t.Fatalf("a non-empty target with AllowNonEmpty (a dry run): %v", err)
		}
		if res.Target.Users == 0 && res.Target.Rooms == 0 {
			t.Errorf("the check found no users and no rooms in a populated target: %+v", res.Target)
		}
	})
	t.Run("corrupt-archive", func(t *testing.T) {
		refused(t, h.NewTarget(t, name, false), Corrupt(t, h.Archive(t)), h.Options, "a corrupt archive", true)
	})
}

// checkInterrupted cancels an import at pt, runs it again, and compares
// the result with an uninterrupted import's.
func (h Harness) checkInterrupted(t *testing.T, name string, pt Point, want map[string]int64) {
	inst := h.NewTarget(t, name, false)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	at := &canceller{point: pt, cancel: cancel}
	_, err := importer.Run(ctx, inst.Target, h.Archive(t), h.Options, at)
	if !at.fired {
		t.Fatalf("the import never did %d items of phase %q (%v)", pt.After, pt.Phase, err)
	}
	if err == nil {
		t.Fatalf("the import cancelled after %d items of %q completed anyway", pt.After, pt.Phase)
	}
	t.Logf("interrupted: %v", err)
	res, err := importer.Run(testContext(t), inst.Target, h.Archive(t), h.Options, nil)
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if !res.Target.Resuming {
		t.Errorf("the rerun after an interruption is not taken for one: %+v", res.Target)
	}
	if res.Skipped == 0 && !pt.NothingKept {
		t.Error("the rerun skipped nothing: it found nothing of the interrupted import")
	}
	if !maps.Equal(res.InTarget, want) {
		t.Errorf("after the interruption and a rerun the target holds %v, after an uninterrupted import %v", res.InTarget, want)
	}
	if inst.Verify != nil {
		inst.Verify(t)
	}
}

// untouched fails t unless inst reads back as before and, when check,
// Check passes on it and finds no import of the archive started.
func (h Harness) untouched(t *testing.T, inst *Instance, before map[string]int64, after string, check bool) {
	t.Helper()
	if now := readBack(t, inst); !maps.Equal(now, before) {
		t.Errorf("after %s the target holds %v, before %v", after, now, before)
	}
	if !check {
		return
	}
	// A target that never merges refuses a populated target: that it
	// refuses, rather than continue an import, is what shows none started.
	noMerge := inst.Capabilities().NoMerge
	state, err := inst.Check(testContext(t), h.Archive(t), importer.Options{AllowNonEmpty: !noMerge})
	if noMerge && errors.Is(err, importer.ErrRefused) {
		return
	}
	if err != nil {
		t.Errorf("after %s, Check: %v", after, err)
	} else if state.Resuming {
		t.Errorf("after %s, Check finds an import of the archive started", after)
	}
}

func readBack(t *testing.T, inst *Instance) map[string]int64 {
	t.Helper()
	got, err := inst.ReadBack(testContext(t), importer.Options{})
	if err != nil {
		t.Fatalf("ReadBack: %v", err)
	}
	return got
}

// checkStored compares, for every section the target stores (not listed
// as rebuilt or without a place in its capabilities), the archive's count
// with the target's.
func checkStored(t *testing.T, caps *fidelity.Target, inArchive, inTarget map[string]int64) {
	t.Helper()
	for _, s := range slices.Sorted(maps.Keys(inArchive)) {
		switch handling(caps, s) {
		case fidelity.Rebuilds, fidelity.NoPlace:
			continue
		}
		if inTarget[s] != inArchive[s] {
			t.Errorf("%s: %d in the archive, %d read back from the target", s, inArchive[s], inTarget[s])
		}
	}
}

func handling(caps *fidelity.Target, section string) fidelity.Handling {
	if h, ok := caps.Sections[section]; ok {
		return h
	}
	if h, ok := caps.Sections[archive.ItemOf(section)]; ok {
		return h
	}
	return fidelity.Stored
}

// Corrupt copies r (encrypted with a new key, so that secrets may stay)
// with one event's content changed after it was signed: its ID and content
// hash no longer match, which validation reports as an error.
func Corrupt(t *testing.T, r *archive.Reader) *archive.Reader {
	t.Helper()
	done := false
	c, _ := archivetest.RewriteEncrypted(t, keywrap.New(), r, func(section string, rec any) (bool, error) {
		e, ok := rec.(*archive.Event)
		if !ok || done || e.Redacted {
			return true, nil
		}
		var ev map[string]any
		if err := json.Unmarshal(e.JSON, &ev); err != nil {
			return true, nil
		}
		content, _ := ev["content"].(map[string]any)
		if content == nil {
			content = map[string]any{}
		}
		content["org.example.tampered"] = true
		ev["content"] = content
		raw, err := json.Marshal(ev)
		if err != nil {
			return false, err
		}
		e.JSON, done = raw, true
		return true, nil
	}, nil)
	if !done {
		t.Fatal("the archive has no event to corrupt")
	}
	return c
}

// phase is one progress phase as a recorder saw it.
type phase struct {
	name         string
	total, added int64
}

// recorder is an importer.Progress that keeps every phase.
type recorder struct{ phases []phase }

func (r *recorder) Phase(name string, total int64) {
	r.phases = append(r.phases, phase{name: name, total: total})
}

func (r *recorder) Add(n int64) {
	if len(r.phases) == 0 {
		r.phases = append(r.phases, phase{name: "(Add before any Phase)"})
	}
	r.phases[len(r.phases)-1].added += n
}

// check: a complete import's phases that count items announce a total,
// and their items add up to it.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	counted := 0
	for _, p := range r.phases {
		t.Logf("phase %q: %d of %d", p.name, p.added, p.total)
		if p.added == 0 && p.total == 0 {
			continue
		}
		counted++
		if p.added != p.total {
			t.Errorf("phase %q counted %d items of a total of %d", p.name, p.added, p.total)
		}
	}
	if counted == 0 {
		t.Error("no phase of the import counts items: a CLI can show neither counts nor an ETA")
	}
}

// points picks three interruptions: after the first item of the first
// phase that counts more than one, halfway through the largest phase, and
// before the last item of the last phase that counts more than one.
func (r *recorder) points() []Point {
	var counted []phase
	for _, p := range r.phases {
		if p.added > 1 {
			counted = append(counted, p)
		}
	}
	if len(counted) == 0 {
		return nil
	}
	largest := slices.MaxFunc(counted, func(a, b phase) int { return int(a.added - b.added) })
	var out []Point
	for _, p := range []Point{{Phase: counted[0].name, After: 1}, {Phase: largest.name, After: largest.added / 2}, {Phase: counted[len(counted)-1].name, After: counted[len(counted)-1].added - 1}} {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// canceller is an importer.Progress that cancels the import at a point.
type canceller struct {
	point   Point
	cancel  func()
	current string
	done    int64
	fired   bool
}

func (c *canceller) Phase(name string, _ int64) { c.current, c.done = name, 0 }

func (c *canceller) Add(n int64) {
	c.done += n
	if !c.fired && c.current == c.point.Phase && c.done >= c.point.After {
		c.fired = true
		c.cancel()
	}
}

// testContext carries a logger into the test's log, where a target's own
// lines (the Dendrite import helper's, say) go.
func testContext(t *testing.T) context.Context {
	return zerolog.New(zerolog.NewTestWriter(t)).WithContext(context.Background())
}
