package archive_test

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivediff"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/sample"
)

// goldenV10 is the sample server as a format 1.0 writer wrote it, thumbnail
// included: m.media/files/<origin>/<id> and, under the same path,
// .../<id>/thumbnails/<name>, the layout that cannot be extracted.
var goldenV10 = filepath.Join("testdata", "golden", "sample-v1.0-plain.ferry")

const (
	avatarFile  = "m.media/files/sample.ferry.test/avatarbob"
	avatarThumb = "m.media/thumbnails/sample.ferry.test/avatarbob/32-32-text-plain-crop"
)

// A revision 0 archive reads as if it were written in revision 1: blobs and
// media records name the 1.1 paths, validation finds nothing wrong.
func TestRevision0ReadsWithRevision1Paths(t *testing.T) {
	ctx := context.Background()
	r, err := archive.OpenLocation(ctx, goldenV10, archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if rev := r.Manifest().Revision; rev != 0 {
		t.Fatalf("golden 1.0 archive says revision %d", rev)
	}
	var blobs []string
	if err := r.Walk(ctx, func(f *archive.File) error {
		if f.Blob != nil {
			blobs = append(blobs, f.BlobPath)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(blobs)
	if want := []string{avatarFile, avatarThumb}; !slices.Equal(blobs, want) {
		t.Fatalf("blob paths %q, want %q", blobs, want)
	}
	var media []archive.Media
	if err := archive.ReadSection(ctx, r, archive.SectionMedia, func(m *archive.Media) error {
		media = append(media, *m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(media) != 1 || media[0].Path != avatarFile || len(media[0].Thumbnails) != 1 || media[0].Thumbnails[0].Path != avatarThumb {
		t.Fatalf("media records %+v", media)
	}
	rep, err := archive.Validate(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors() > 0 {
		t.Fatalf("validation of the 1.0 golden archive: %+v", rep.Problems)
	}
}

// Copy (decrypt, re-encrypt, re-export) of a revision 0 archive writes
// revision 1: the same records as a 1.1 writer makes of the same data, the
// blobs in their 1.1 places.
func TestCopyUpgradesRevision0(t *testing.T) {
	ctx := context.Background()
	r, err := archive.OpenLocation(ctx, goldenV10, archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dir := t.TempDir()
	b, err := container.OpenDirBucket(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w, err := archive.NewWriter(ctx, &container.BucketStore{Bucket: b}, archive.WriterOptions{ArchiveID: fixedID, Export: sample.Export(),
		PartSize: 8 << 10, ChunkSize: 4 << 10, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Copy(ctx, r, w, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	copied, err := archive.OpenLocation(ctx, dir, archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Close()
	if rev := copied.Manifest().Revision; rev != archive.FormatRevision {
		t.Fatalf("copy says revision %d", rev)
	}
	var blobs []string
	copied.Walk(ctx, func(f *archive.File) error {
		if f.Blob != nil {
			blobs = append(blobs, f.BlobPath)
		}
		return nil
	})
	slices.Sort(blobs)
	if want := []string{avatarFile, avatarThumb}; !slices.Equal(blobs, want) {
		t.Fatalf("copy's blobs %q, want %q", blobs, want)
	}
	golden, err := archive.OpenLocation(ctx, filepath.Join("testdata", "golden", "sample-v1.1-plain.ferry"), archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer golden.Close()
	diff, err := archivediff.Compare(ctx, copied, golden)
	if err != nil {
		t.Fatal(err)
	}
	if !diff.Equal() {
		t.Fatalf("a copy of the 1.0 golden archive differs from the 1.1 golden archive: %+v", diff)
	}
}

// The writer refuses blob paths of any other shape than MediaBlobPath's,
// the 1.0 thumbnail place included.
func TestWriterRefusesCollidingBlobPaths(t *testing.T) {
	ctx := context.Background()
	b, err := container.OpenDirBucket(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w, err := archive.NewWriter(ctx, &container.BucketStore{Bucket: b}, archive.WriterOptions{Export: sample.Export()})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"m.media/files/sample.ferry.test/avatarbob/thumbnails/32-32-text-plain-crop",
		"m.media/files/sample.ferry.test",
		"m.media/thumbnails/sample.ferry.test/avatarbob",
		"m.media/files/sample.ferry.test//x",
		"m.media/other/x",
	} {
		if _, err := w.AddBlob(p, 1, bytes.NewReader([]byte("x"))); err == nil {
			t.Errorf("AddBlob(%q) accepted", p)
		}
	}
}

// A manifest whose files could not all be extracted onto a filesystem (one
// is the directory of another, or one sits where media blobs go) is refused.
func TestManifestRefusesCollidingPaths(t *testing.T) {
	r, err := archive.OpenLocation(context.Background(), filepath.Join("testdata", "golden", "sample-v1.1-plain.ferry"), archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := *r.Manifest()
	r.Close()
	base := m.Files[len(m.Files)-1]
	for _, paths := range [][]string{
		{"org.example/a", "org.example/a/b"},
		{"org.example/a/b/c", "org.example/a/b"},
		{"m.media/files/sample.ferry.test/x"},
		{"m.media/thumbnails"},
	} {
		bad := m
		bad.Files = slices.Clone(m.Files)
		for _, p := range paths {
			f := base
			f.Path = p
			bad.Files = append(bad.Files, f)
		}
		data, err := bad.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := archive.ParseManifest(data); err == nil {
			t.Errorf("manifest with files %q accepted", paths)
		} else if !strings.Contains(err.Error(), paths[0]) && !strings.Contains(err.Error(), paths[len(paths)-1]) {
			t.Errorf("files %q: error %q does not name the file", paths, err)
		}
	}
}
