package archive_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

func TestSmokeRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, encrypted := range []bool{false, true} {
		dir := t.TempDir()
		b, err := container.OpenDirBucket(dir, true)
		if err != nil {
			t.Fatal(err)
		}
		store := &container.BucketStore{Bucket: b}
		var key keywrap.Key
		if encrypted {
			key = keywrap.New()
		}
		w, err := archive.NewWriter(ctx, store, archive.WriterOptions{Key: key, ChunkSize: 1024, PartSize: 4096,
			Export: archive.ExportInfo{ServerName: "example.org", Type: "full"}})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 500; i++ {
			if err := w.Add(archive.SectionUsers, &archive.User{UserID: "@u" + string(rune('a'+i%26)) + ":example.org", CreatedTS: int64(i)}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.MaybeCheckpoint(nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.AddBlob(archive.MediaBlobPath("example.org", "abc", ""), 5, bytes.NewReader([]byte("hello"))); err != nil {
			t.Fatal(err)
		}
		m, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		src, err := container.Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := archive.Open(ctx, src, archive.OpenOptions{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := archive.ReadSection(ctx, r, archive.SectionUsers, func(u *archive.User) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 500 {
			t.Fatalf("read %d users", n)
		}
		blobs := 0
		if err := r.Walk(ctx, func(f *archive.File) error {
			if f.Blob != nil {
				b, _ := io.ReadAll(f.Blob)
				if string(b) != "hello" {
					t.Errorf("blob = %q", b)
				}
				blobs++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("encrypted=%v parts=%d files=%d blobs=%d", encrypted, len(m.Parts), len(m.Files), blobs)
	}
}
