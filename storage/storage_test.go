package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/archive/sample"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stores opens the same conformance subject on every kind of store.
func stores(t *testing.T) map[string]*storage.Store {
	ctx := context.Background()
	out := map[string]*storage.Store{}
	for name, url := range map[string]string{
		"file": "file://" + t.TempDir(),
		"mem":  "mem://",
	} {
		s, err := storage.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = s
	}
	s3 := testenv.StartS3(t)
	s3.CreateBucket(t, "ferry-archives")
	s, err := storage.Open(ctx, strings.Replace(s3.BucketURL("ferry-archives"), "ferry-archives?", "ferry-archives/ferry?", 1))
	if err != nil {
		t.Fatal(err)
	}
	out["s3"] = s
	testenv.StartGCS(t, "ferry-gcs")
	if out["gs"], err = storage.Open(ctx, "gs://ferry-gcs/ferry"); err != nil {
		t.Fatal(err)
	}
	az := testenv.StartAzure(t, "ferry-azure")
	if out["azblob"], err = storage.Open(ctx, az.BucketURL("ferry-azure", "ferry")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range out {
			s.Close()
		}
	})
	return out
}

type failingReader struct {
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), f.n)
	clear(p[:n])
	f.n -= n
	return n, nil
}

func TestStoreConformance(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			data := bytes.Repeat([]byte("0123456789"), 100_000)
			obj, err := s.Put(ctx, "dir/a.bin", bytes.NewReader(data))
			if err != nil || obj.Size != int64(len(data)) || obj.SHA256 == "" {
				t.Fatalf("put: %+v %v", obj, err)
			}
			if st, err := s.Stat(ctx, "dir/a.bin"); err != nil || st.Size != int64(len(data)) {
				t.Fatalf("stat: %+v %v", st, err)
			}
			rc, err := s.Range(ctx, "dir/a.bin", 123_456, 10)
			if err != nil {
				t.Fatal(err)
			}
			part, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(part, data[123_456:123_466]) {
				t.Fatalf("range read %q", part)
			}
			rc, _ = s.Range(ctx, "dir/a.bin", 0, -1)
			all, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(all, data) {
				t.Fatal("full read differs")
			}
			s.Put(ctx, "dir/b.bin", strings.NewReader("b"))
			if objs, err := s.List(ctx, "dir/"); err != nil || len(objs) != 2 || objs[0].Key != "dir/a.bin" {
				t.Fatalf("list: %+v %v", objs, err)
			}
			// A write that fails midway leaves nothing behind.
			if _, err := s.Put(ctx, "dir/broken.bin", &failingReader{n: 3 << 20}); err == nil {
				t.Fatal("failing write succeeded")
			}
			if _, err := s.Stat(ctx, "dir/broken.bin"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a failed write is visible: %v", err)
			}
			if err := s.Delete(ctx, "dir/a.bin"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Stat(ctx, "dir/a.bin"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("deleted object: %v", err)
			}
			if err := s.Delete(ctx, "dir/a.bin"); err != nil {
				t.Fatalf("deleting twice: %v", err)
			}
			if _, err := s.Range(ctx, "nope", 0, 1); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("missing object: %v", err)
			}
		})
	}
}

// stageSample writes an encrypted sample export into the store's staging.
func stageSample(t *testing.T, s *storage.Store) string {
	t.Helper()
	ctx := context.Background()
	key := keywrap.New()
	id := "0102030405060708090a0b0c0d0e0f10"
	stage := s.Stage(id)
	w, err := archive.NewWriter(ctx, stage, archive.WriterOptions{Key: key, Export: sample.Export(), PartSize: 16 << 10, ArchiveID: mustID(t, id)})
	if err != nil {
		t.Fatal(err)
	}
	if err := stage.WriteKey(ctx, key.Encode(id)); err != nil {
		t.Fatal(err)
	}
	if err := sample.Write(w, 500); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestPublish(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			id := stageSample(t, s)
			// A publish that is cancelled midway publishes nothing and keeps the staging.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := s.Publish(cctx, id, "nightly-1"); err == nil {
				t.Fatal("cancelled publish succeeded")
			}
			if _, err := s.Stat(ctx, storage.ArchiveKey("nightly-1")); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a failed publish is visible: %v", err)
			}
			obj, err := s.Publish(ctx, id, "nightly-1")
			if err != nil {
				t.Fatal(err)
			}
			if staged, _ := s.StagedArchives(ctx); len(staged) != 0 {
				t.Errorf("staging left behind: %v", staged)
			}
			if _, err := s.Publish(ctx, id, "nightly-1"); err == nil {
				t.Error("publishing twice succeeded")
			}
			list, _ := s.Archives(ctx)
			if len(list) != 1 || list[0].Key != storage.ArchiveKey("nightly-1") || list[0].Size != obj.Size {
				t.Fatalf("archives %+v", list)
			}
			// The published single file opens with its key and verifies.
			rc, _ := s.Range(ctx, storage.ArchiveKey("nightly-1")+storage.KeyExt, 0, -1)
			keyFile, _ := io.ReadAll(rc)
			rc.Close()
			r := openPublished(t, s, "nightly-1", keyFile)
			rep, err := archive.Validate(ctx, r)
			if err != nil || !rep.OK() || rep.Events != 506 {
				t.Fatalf("published archive: %v %+v", err, rep)
			}
			if err := storage.CheckName("../x"); err == nil {
				t.Error("bad name accepted")
			}
		})
	}
}

// Presigned URLs (S3): work until they expire, then 403.
// Presigned links on the stores that sign (S3, Azure shared key): they
// work, then answer 403 once expired. The others say they can't, and
// links.Handler serves Ferry's own signed /download links instead.
func TestPresignedURL(t *testing.T) {
	ctx := context.Background()
	all := stores(t)
	for _, name := range []string{"s3", "azblob"} {
		t.Run(name, func(t *testing.T) {
			s := all[name]
			if _, err := s.Put(ctx, "archives/x.ferry", strings.NewReader("archive bytes")); err != nil {
				t.Fatal(err)
			}
			u, err := s.SignedURL(ctx, "archives/x.ferry", 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "archive bytes" {
				t.Fatalf("presigned GET: %d %q", resp.StatusCode, body)
			}
			time.Sleep(3 * time.Second)
			resp, err = http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("expired presigned URL: %d", resp.StatusCode)
			}
		})
	}
	if _, err := all["file"].SignedURL(ctx, "x", time.Minute); !errors.Is(err, storage.ErrNotSupported) {
		t.Fatalf("file store presign: %v", err)
	}
}
