package archive_test

import (
	"context"
	"strings"
	"testing"

	"gocloud.dev/blob"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/archive/sample"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// An encrypted archive written to and read from a real S3-compatible
// server: stored form under a prefix, then packed into one object that is
// read back with range requests; a truncated object is refused.
func TestArchiveOnS3(t *testing.T) {
	ctx := context.Background()
	s3 := testenv.StartS3(t)
	s3.CreateBucket(t, "ferry-test")
	bucketURL := s3.BucketURL("ferry-test")
	at := func(key string) string { return strings.Replace(bucketURL, "ferry-test?", "ferry-test/"+key+"?", 1) }

	store, err := container.Create(ctx, at("backups/one"))
	if err != nil {
		t.Fatal(err)
	}
	key := keywrap.New()
	w, err := archive.NewWriter(ctx, store, archive.WriterOptions{Key: key, Export: sample.Export(), PartSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := sample.Write(w, 300); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wrapped := key.Encode(w.ArchiveID())
	if err := store.WriteKey(ctx, wrapped); err != nil {
		t.Fatal(err)
	}
	store.Close()
	if _, err := container.Create(ctx, at("backups/one")); err == nil {
		t.Fatal("Create accepted a prefix that already holds an archive")
	}

	r, err := archive.OpenLocation(ctx, at("backups/one"), archive.OpenOptions{KeyFile: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := archive.Validate(ctx, r)
	if err != nil || !rep.OK() || rep.Events != 306 {
		t.Fatalf("validate from S3: %v %+v", err, rep)
	}
	if len(r.Manifest().Parts) < 3 {
		t.Fatalf("expected several parts, got %d", len(r.Manifest().Parts))
	}

	b, err := blob.OpenBucket(ctx, bucketURL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	out, err := b.NewWriter(ctx, "packed/one.ferry", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := container.Pack(ctx, r.Source(), out); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	packed, err := archive.OpenLocation(ctx, at("packed/one.ferry"), archive.OpenOptions{KeyFile: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	defer packed.Close()
	if rep, err := archive.Validate(ctx, packed); err != nil || !rep.OK() || rep.Events != 306 {
		t.Fatalf("validate packed object: %v %+v", err, rep)
	}

	data, err := b.ReadAll(ctx, "packed/one.ferry")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteAll(ctx, "packed/cut.ferry", data[:len(data)-100], nil); err != nil {
		t.Fatal(err)
	}
	_, err = archive.OpenLocation(ctx, at("packed/cut.ferry"), archive.OpenOptions{KeyFile: wrapped})
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated object: %v", err)
	}
}
