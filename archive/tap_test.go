package archive_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/matrixevent"
)

// validateTapped runs ValidateTapped on its own goroutine, as
// importer.Run does; wait returns its outcome, failing the test when the
// validation does not end.
func validateTapped(t *testing.T, r *archive.Reader) (*archive.EventTap, func() *archive.ValidationReport) {
	t.Helper()
	tap, wait := validateTappedCtx(t, context.Background(), r)
	return tap, func() *archive.ValidationReport {
		t.Helper()
		rep, err := wait()
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
}

// validateTappedCtx is validateTapped under ctx, its wait giving the error.
func validateTappedCtx(t *testing.T, ctx context.Context, r *archive.Reader) (*archive.EventTap, func() (*archive.ValidationReport, error)) {
	t.Helper()
	tap := archive.NewEventTap()
	type outcome struct {
		rep *archive.ValidationReport
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		rep, err := archive.ValidateTapped(ctx, r, tap)
		done <- outcome{rep, err}
	}()
	return tap, func() (*archive.ValidationReport, error) {
		t.Helper()
		select {
		case o := <-done:
			return o.rep, o.err
		case <-time.After(time.Minute):
			t.Fatal("the validation did not end")
			return nil, nil
		}
	}
}

// The tap hands every event, in the order ReadSection reads them, with
// the fields matrixevent.Parse gives, and the validation reports what
// Validate reports.
func TestEventTapHandsEveryEventInOrder(t *testing.T) {
	dir := t.TempDir()
	archivetest.WriteSample(t, dir, keywrap.Key{}, 5000)
	r := archivetest.Open(t, dir, archive.OpenOptions{})
	if n := len(r.Manifest().FilesOf(archive.SectionEvents)); n < 3 {
		t.Fatalf("%d events files, want several", n)
	}
	var want []string
	if err := archive.ReadSection(context.Background(), r, archive.SectionEvents, func(e *archive.Event) error {
		want = append(want, e.EventID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tap, wait := validateTapped(t, r)
	var got []string
	err := tap.Each(context.Background(), r, func(e *archive.Event, f *matrixevent.Fields) error {
		got = append(got, e.EventID)
		parsed, err := matrixevent.Parse(e.JSON)
		if err != nil || f == nil {
			t.Fatalf("%s: fields %v, Parse: %v", e.EventID, f, err)
		}
		// Content is the canonical form, Depth and Unsigned of it too.
		a, b := *f, *parsed
		a.Content, b.Content, a.Depth, b.Depth, a.Unsigned, b.Unsigned = nil, nil, nil, nil, nil, nil
		if !reflect.DeepEqual(a, b) || len(f.Depth) == 0 {
			t.Fatalf("%s: tapped fields %+v, Parse gives %+v", e.EventID, f, parsed)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("tapped %d events, ReadSection %d, or in another order", len(got), len(want))
	}
	rep := wait()
	plain := validate(t, archivetest.Open(t, dir, archive.OpenOptions{}))
	if !rep.OK() || rep.Events != plain.Events || rep.Signatures != plain.Signatures || rep.Files != plain.Files {
		t.Fatalf("tapped validation %+v, Validate %+v", rep, plain)
	}
}

// A consumer that stops (fn's error) or never takes the events releases
// the validation, which goes on to the end alone.
func TestEventTapReleaseLetsTheValidationEnd(t *testing.T) {
	dir := t.TempDir()
	archivetest.WriteSample(t, dir, keywrap.Key{}, 5000)
	stop := errors.New("stop")
	t.Run("fn fails", func(t *testing.T) {
		r := archivetest.Open(t, dir, archive.OpenOptions{})
		tap, wait := validateTapped(t, r)
		n := 0
		err := tap.Each(context.Background(), r, func(*archive.Event, *matrixevent.Fields) error {
			if n++; n == 10 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || n != 10 {
			t.Fatalf("Each: %v after %d events, want fn's error after 10", err, n)
		}
		if rep := wait(); !rep.OK() || rep.Events < 5000 {
			t.Fatalf("validation after the release: %+v", rep)
		}
	})
	t.Run("never taken", func(t *testing.T) {
		r := archivetest.Open(t, dir, archive.OpenOptions{})
		tap, wait := validateTapped(t, r)
		tap.Release()
		if rep := wait(); !rep.OK() || rep.Events < 5000 {
			t.Fatalf("validation after the release: %+v", rep)
		}
	})
	t.Run("released first", func(t *testing.T) {
		r := archivetest.Open(t, dir, archive.OpenOptions{})
		tap, wait := validateTapped(t, r)
		tap.Release()
		err := tap.Each(context.Background(), r, func(*archive.Event, *matrixevent.Fields) error { return nil })
		if err == nil {
			t.Fatal("Each on a released tap ended cleanly: it may have missed events")
		}
		wait()
	})
	t.Run("validation cancelled", func(t *testing.T) {
		r := archivetest.Open(t, dir, archive.OpenOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		tap, wait := validateTappedCtx(t, ctx, r)
		time.Sleep(50 * time.Millisecond) // the validation fills the tap and waits
		cancel()
		err := tap.Each(context.Background(), r, func(*archive.Event, *matrixevent.Fields) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Each after the validation was cancelled: %v, want the cancellation", err)
		}
		// The validation sees the cancellation between parts: it may end
		// with it or finish this one-part archive.
		if _, err := wait(); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("validation: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		r := archivetest.Open(t, dir, archive.OpenOptions{})
		tap, wait := validateTapped(t, r)
		ctx, cancel := context.WithCancel(context.Background())
		err := tap.Each(ctx, r, func(*archive.Event, *matrixevent.Fields) error { cancel(); return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Each: %v, want the cancellation", err)
		}
		wait()
	})
}

// A damaged archive ends the events with an error, never with a clean
// end that would pass for all of them.
func TestEventTapEndsDamagedArchiveWithError(t *testing.T) {
	dir := t.TempDir()
	archivetest.WriteSample(t, dir, keywrap.Key{}, 5000)
	p := filepath.Join(dir, container.PartName(0))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := archivetest.Open(t, dir, archive.OpenOptions{})
	tap, wait := validateTapped(t, r)
	n := 0
	err = tap.Each(context.Background(), r, func(*archive.Event, *matrixevent.Fields) error { n++; return nil })
	if err == nil {
		t.Fatalf("Each took %d events of a damaged archive and ended cleanly", n)
	}
	if rep := wait(); rep.OK() || rep.Counts[archive.CheckFile] != 1 {
		t.Fatalf("damaged part not reported: %+v", rep.Problems)
	}
}
