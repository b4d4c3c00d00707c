package exporter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivediff"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/source"
)

// fakeSource emits users and media from memory, resumably.
type fakeSource struct {
	users int
	// onRecord is called after each user with its index.
	onRecord func(i int) error
}

func (f *fakeSource) Info() source.Info {
	return source.Info{ServerName: "fake.test", Implementation: "fake"}
}
func (f *fakeSource) Close() error { return nil }
func (f *fakeSource) Capabilities() source.Capabilities {
	return source.Capabilities{Implementation: "fake"}
}
func (f *fakeSource) Streams(context.Context, source.Filter, source.Options) ([]source.Stream, error) {
	return []source.Stream{{
		Name:  "users",
		Count: func(context.Context) (int64, error) { return int64(f.users), nil },
		Run: func(ctx context.Context, cursor []byte, sink source.Sink) error {
			start := 0
			if err := source.DecodeCursor(cursor, &start); err != nil {
				return err
			}
			for i := start; i < f.users; i++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				u := &archive.User{UserID: fmt.Sprintf("@u%05d:fake.test", i), DisplayName: fmt.Sprintf("User %d of the fake server", i)}
				if err := sink.Record(archive.SectionUsers, u); err != nil {
					return err
				}
				if i%50 == 0 {
					body := bytes.Repeat([]byte{byte(i)}, 2000)
					if _, err := sink.Blob(archive.MediaBlobPath("fake.test", fmt.Sprintf("m%05d", i), ""), int64(len(body)), bytes.NewReader(body)); err != nil {
						return err
					}
				}
				if f.onRecord != nil {
					if err := f.onRecord(i); err != nil {
						return err
					}
				}
				if err := sink.Checkpoint(source.EncodeCursor(i + 1)); err != nil {
					return err
				}
			}
			// One thing left out, as real sources report theirs: a record
			// of the archive that is no streamed record.
			return sink.Omit(archive.Omission{Code: "excluded_by_default", Item: "m.users/devices#access_tokens"})
		},
	}}, nil
}

func newStore(t *testing.T, dir string) *container.BucketStore {
	b, err := container.OpenDirBucket(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &container.BucketStore{Bucket: b}
}

var export = archive.ExportInfo{ServerName: "fake.test", Type: "full"}

// Cancelling an export stops it promptly and leaves no archive that opens
// as complete.
func TestCancelLeavesNoCompleteArchive(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	w, err := archive.NewWriter(ctx, newStore(t, dir), archive.WriterOptions{Export: export, PartSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{users: 5000, onRecord: func(i int) error {
		if i == 700 {
			cancel()
		}
		return nil
	}}
	p, err := exporter.Export(ctx, src, w, exporter.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("export: %v", err)
	}
	w.Abort()
	if p.Records > 702 {
		t.Errorf("%d records written after cancellation", p.Records)
	}
	if _, err := archive.OpenLocation(context.Background(), dir, archive.OpenOptions{}); !errors.Is(err, archive.ErrIncomplete) {
		t.Fatalf("cancelled archive opens: %v", err)
	}
}

var errCrash = errors.New("simulated crash")

// A crashed export resumes from its last checkpoint and yields the same
// archive as an uninterrupted one.
func TestResumeFromCheckpoint(t *testing.T) {
	ctx := context.Background()
	key := keywrap.New()
	id := container.ArchiveID{7}
	dir := t.TempDir()
	var saved *archive.Checkpoint
	w, _ := archive.NewWriter(ctx, newStore(t, dir), archive.WriterOptions{ArchiveID: id, Key: key, Export: export, PartSize: 8 << 10,
		OnCheckpoint: func(cp *archive.Checkpoint) error { saved = cp; return nil }})
	src := &fakeSource{users: 2000, onRecord: func(i int) error {
		if i == 1234 {
			return errCrash
		}
		return nil
	}}
	if _, err := exporter.Export(ctx, src, w, exporter.Options{}); !errors.Is(err, errCrash) {
		t.Fatalf("export: %v", err)
	}
	if saved == nil {
		t.Fatal("no checkpoint was taken")
	}
	w, err := archive.ResumeWriter(ctx, newStore(t, dir), archive.WriterOptions{Key: key, Export: export, PartSize: 8 << 10}, saved)
	if err != nil {
		t.Fatal(err)
	}
	var progress []exporter.Progress
	src.onRecord = nil
	if _, err := exporter.Export(ctx, src, w, exporter.Options{Resume: saved.Cursor, OnProgress: func(p exporter.Progress) { progress = append(progress, p) }}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cleanDir := t.TempDir()
	w, _ = archive.NewWriter(ctx, newStore(t, cleanDir), archive.WriterOptions{ArchiveID: id, Key: key, Export: export, PartSize: 8 << 10})
	if _, err := exporter.Export(ctx, &fakeSource{users: 2000}, w, exporter.Options{}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	a, err := archive.OpenLocation(ctx, cleanDir, archive.OpenOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := archive.OpenLocation(ctx, dir, archive.OpenOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	res, err := archivediff.Compare(ctx, a, b)
	if err != nil || !res.Equal() {
		t.Fatalf("resumed export differs: %v %v", err, res.Differences)
	}
	if rep, err := archive.Validate(ctx, b); err != nil || !rep.OK() || rep.Blobs != 40 {
		t.Fatalf("resumed archive: %v %+v", err, rep)
	}
	if len(progress) == 0 {
		t.Fatal("progress not reported")
	}
	// The resumed export's progress goes on from where the interrupted one
	// was (the crash came after record 1234 of 2000), not from nothing.
	if first := progress[0]; first.Records < 1000 || first.Fraction() < 0.4 {
		t.Errorf("first progress after the resume: %d records, %.2f done", first.Records, first.Fraction())
	}
	if last := progress[len(progress)-1]; last.Done != last.Streams || last.Fraction() != 1 {
		t.Errorf("last progress: done %d of %d streams, %.2f", last.Done, last.Streams, last.Fraction())
	}
	// Every stream is done at the end, those finished before the resume
	// too, and the resumed stream counts its records.
	last := progress[len(progress)-1]
	if len(last.StreamCounts) == 0 {
		t.Fatal("no per-stream progress")
	}
	for _, c := range last.StreamCounts {
		if !c.Done {
			t.Errorf("stream %s not done at the end: %+v", c.Name, last.StreamCounts)
		}
	}
	if c := last.StreamCounts[len(last.StreamCounts)-1]; c.Records == 0 || c.Records != last.PerStream[c.Name] {
		t.Errorf("the resumed stream's records: %+v, per stream %v", c, last.PerStream)
	}
}

func TestResumeCursorMustMatch(t *testing.T) {
	w, _ := archive.NewWriter(context.Background(), newStore(t, t.TempDir()), archive.WriterOptions{Export: export})
	_, err := exporter.Export(context.Background(), &fakeSource{users: 1}, w, exporter.Options{Resume: []byte(`{"stream":3,"name":"events"}`)})
	if err == nil {
		t.Fatal("a cursor for another export was accepted")
	}
}
