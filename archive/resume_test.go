package archive_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivediff"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

const resumeUsers = 400

// produce writes users from index start on, checkpointing with the next
// index as the cursor, as an exporter does.
func produce(w *archive.Writer, start int) error {
	for i := start; i < resumeUsers; i++ {
		u := &archive.User{UserID: fmt.Sprintf("@user%04d:resume.test", i), DisplayName: fmt.Sprintf("User number %d with a longer name", i)}
		if err := w.Add(archive.SectionUsers, u); err != nil {
			return err
		}
		if i%25 == 0 {
			body := bytes.Repeat([]byte{byte(i)}, 3000)
			if _, err := w.AddBlob(archive.MediaBlobPath("resume.test", fmt.Sprintf("m%d", i), ""), int64(len(body)), bytes.NewReader(body)); err != nil {
				return err
			}
		}
		cursor := binary.BigEndian.AppendUint32(nil, uint32(i+1))
		if _, err := w.MaybeCheckpoint(cursor); err != nil {
			return err
		}
	}
	return nil
}

var errCrash = errors.New("simulated crash")

// An export that dies after committing a part but before saving the
// checkpoint for it resumes from the last saved checkpoint: the part
// written after it is discarded, nothing is duplicated or lost, and the
// result equals an uninterrupted export.
func TestResumeAfterCrash(t *testing.T) {
	ctx := context.Background()
	key := keywrap.New()
	export := archive.ExportInfo{ServerName: "resume.test", Type: "full"}
	id := container.ArchiveID{42}
	open := func(t *testing.T, dir string) *container.BucketStore {
		b, err := container.OpenDirBucket(dir, true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return &container.BucketStore{Bucket: b}
	}

	crashedDir := t.TempDir()
	var saved []byte
	checkpoints := 0
	w, err := archive.NewWriter(ctx, open(t, crashedDir), archive.WriterOptions{ArchiveID: id, Key: key, Export: export, PartSize: 4 << 10, ChunkSize: 1 << 10,
		OnCheckpoint: func(cp *archive.Checkpoint) error {
			checkpoints++
			if checkpoints == 4 {
				return errCrash // part 3 is committed, its checkpoint is not saved
			}
			var err error
			saved, err = archive.MarshalCheckpoint(cp)
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := produce(w, 0); !errors.Is(err, errCrash) {
		t.Fatalf("producer: %v", err)
	}
	if parts, _ := filepath.Glob(filepath.Join(crashedDir, "part-*")); len(parts) != 4 {
		t.Fatalf("crashed export left %d parts, want 4", len(parts))
	}
	if _, err := archive.OpenLocation(ctx, crashedDir, archive.OpenOptions{Key: key}); !errors.Is(err, archive.ErrIncomplete) {
		t.Fatalf("an interrupted archive must not open as complete: %v", err)
	}

	cp, err := archive.UnmarshalCheckpoint(saved)
	if err != nil {
		t.Fatal(err)
	}
	if cp.NextPart != 3 {
		t.Fatalf("last saved checkpoint resumes at part %d, want 3", cp.NextPart)
	}
	w, err = archive.ResumeWriter(ctx, open(t, crashedDir), archive.WriterOptions{Key: key, Export: export, PartSize: 4 << 10, ChunkSize: 1 << 10}, cp)
	if err != nil {
		t.Fatal(err)
	}
	if err := produce(w, int(binary.BigEndian.Uint32(cp.Cursor))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}

	resumed, err := archive.OpenLocation(ctx, crashedDir, archive.OpenOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	if rep, err := archive.Validate(ctx, resumed); err != nil || !rep.OK() || rep.Blobs != resumeUsers/25 {
		t.Fatalf("resumed archive: %v %+v", err, rep)
	}
	var seen []string
	archive.ReadSection(ctx, resumed, archive.SectionUsers, func(u *archive.User) error { seen = append(seen, u.UserID); return nil })
	if len(seen) != resumeUsers {
		t.Fatalf("%d users after resume, want %d", len(seen), resumeUsers)
	}
	for i, u := range seen {
		if u != fmt.Sprintf("@user%04d:resume.test", i) {
			t.Fatalf("user %d is %s: duplicated or lost records", i, u)
		}
	}

	cleanDir := t.TempDir()
	w, _ = archive.NewWriter(ctx, open(t, cleanDir), archive.WriterOptions{ArchiveID: id, Key: key, Export: export, PartSize: 4 << 10, ChunkSize: 1 << 10})
	if err := produce(w, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	clean, err := archive.OpenLocation(ctx, cleanDir, archive.OpenOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer clean.Close()
	res, err := archivediff.Compare(ctx, clean, resumed)
	if err != nil || !res.Equal() {
		t.Fatalf("resumed archive differs from an uninterrupted one: %v %v", err, res.Differences)
	}
}
