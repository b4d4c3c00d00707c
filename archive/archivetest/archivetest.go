// Package archivetest builds archives for tests: the sample server, and
// copies of an archive with records changed, dropped or added, so that a
// test can make exactly the defect it wants to see caught.
package archivetest

import (
	"context"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/archive/sample"
)

// Small part and chunk sizes, so that even the sample spans several of each.
const (
	PartSize  = 8 << 10
	ChunkSize = 4 << 10
)

// WriteSample writes the sample server with messages messages into dir (the
// stored form), encrypted when key is set, and returns the archive ID.
func WriteSample(t testing.TB, dir string, key keywrap.Key, messages int) string {
	t.Helper()
	return WriteSampleWith(t, dir, key, messages, nil)
}

// WriteSampleWith is WriteSample with extra records or files added by
// extra before the archive is closed.
func WriteSampleWith(t testing.TB, dir string, key keywrap.Key, messages int, extra func(w *archive.Writer)) string {
	t.Helper()
	ctx := context.Background()
	b, err := container.OpenDirBucket(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w, err := archive.NewWriter(ctx, &container.BucketStore{Bucket: b}, archive.WriterOptions{Key: key, Export: sample.Export(),
		PartSize: PartSize, ChunkSize: ChunkSize, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := sample.Write(w, messages); err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		extra(w)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.ArchiveID()
}

// OpenSample writes the sample server (100 messages, plaintext) and opens it.
func OpenSample(t testing.TB) *archive.Reader {
	t.Helper()
	dir := t.TempDir()
	WriteSample(t, dir, keywrap.Key{}, 100)
	return Open(t, dir, archive.OpenOptions{})
}

// Open opens an archive and closes it when the test ends.
func Open(t testing.TB, loc string, opts archive.OpenOptions) *archive.Reader {
	t.Helper()
	r, err := archive.OpenLocation(context.Background(), loc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Rewrite copies r into a new plaintext archive through archive.Copy with
// edit, then lets extra add records or files before it is closed, and opens
// the result.
func Rewrite(t testing.TB, r *archive.Reader, edit archive.EditFunc, extra func(w *archive.Writer)) (*archive.Reader, *archive.CopyReport) {
	t.Helper()
	return RewriteAt(t, t.TempDir(), r, edit, extra)
}

// RewriteAt is Rewrite into the directory dir.
func RewriteAt(t testing.TB, dir string, r *archive.Reader, edit archive.EditFunc, extra func(w *archive.Writer)) (*archive.Reader, *archive.CopyReport) {
	t.Helper()
	return rewrite(t, dir, keywrap.Key{}, r, edit, extra)
}

// RewriteEncrypted is Rewrite into a new archive encrypted with key: the
// copy of an archive holding secrets (password hashes, access tokens,
// backed-up room keys), which a plaintext archive refuses.
func RewriteEncrypted(t testing.TB, key keywrap.Key, r *archive.Reader, edit archive.EditFunc, extra func(w *archive.Writer)) (*archive.Reader, *archive.CopyReport) {
	t.Helper()
	return rewrite(t, t.TempDir(), key, r, edit, extra)
}

func rewrite(t testing.TB, dir string, key keywrap.Key, r *archive.Reader, edit archive.EditFunc, extra func(w *archive.Writer)) (*archive.Reader, *archive.CopyReport) {
	t.Helper()
	ctx := context.Background()
	b, err := container.OpenDirBucket(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w, err := archive.NewWriter(ctx, &container.BucketStore{Bucket: b}, archive.WriterOptions{Key: key,
		Export: r.Manifest().Export, Core: r.Core(), PartSize: PartSize, ChunkSize: ChunkSize})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := archive.Copy(ctx, r, w, edit)
	if err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		extra(w)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return Open(t, dir, archive.OpenOptions{Key: key}), rep
}

// Validate runs archive.Validate and fails the test on an I/O error.
func Validate(t testing.TB, r *archive.Reader) *archive.ValidationReport {
	t.Helper()
	rep, err := archive.Validate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}
