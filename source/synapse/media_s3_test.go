package synapse

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"gocloud.dev/blob"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// Synapse can keep media in object storage: the media store may be a
// bucket URL. The fixture's media store, uploaded to a real S3 server,
// exports byte for byte.
func TestMediaStoreInS3(t *testing.T) {
	ctx := context.Background()
	cfg := fixture(t, "synapse-1.67")
	s3 := testenv.StartS3(t)
	s3.CreateBucket(t, "synapse-media")
	b, err := blob.OpenBucket(ctx, s3.BucketURL("synapse-media"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = filepath.Walk(cfg.MediaStore, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(cfg.MediaStore, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return b.WriteAll(ctx, filepath.ToSlash(rel), data, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MediaStore = s3.BucketURL("synapse-media")
	src, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	truth, _ := sourcetest.LoadGroundTruth(testdata + "synapse-1.67/ground_truth.json")
	recs := sourcetest.Collect(t, src, source.Filter{}, source.Options{Encrypted: true})
	got := map[string]string{}
	for _, r := range recs[archive.SectionMedia] {
		m := r.(*archive.Media)
		got[m.MediaID] = m.SHA256
		if len(m.Thumbnails) > 0 && m.Thumbnails[0].SHA256 == "" {
			t.Errorf("thumbnail of %s not copied from the bucket", m.MediaID)
		}
	}
	for _, m := range truth.Media {
		if got[m.MediaID] != m.SHA256 {
			t.Errorf("media %s: sha %q, want %s", m.MediaID, got[m.MediaID], m.SHA256)
		}
	}
}

// A password pepper makes the exported hashes useless elsewhere: every
// user with a password is reported.
func TestPasswordPepperIsReported(t *testing.T) {
	cfg := fixture(t, "synapse-1.67")
	conf, err := os.ReadFile(cfg.HomeserverConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HomeserverConfig = filepath.Join(t.TempDir(), "homeserver.yaml")
	os.WriteFile(cfg.HomeserverConfig, append(conf, []byte("password_config:\n  pepper: \"s3cr3t-pepper-value\"\n")...), 0o600)
	src, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	streams, err := src.Streams(context.Background(), source.Filter{}, source.Options{Encrypted: true})
	if err != nil {
		t.Fatal(err)
	}
	var sink omissionSink
	for _, st := range streams {
		if st.Name == "users" {
			if err := st.Run(context.Background(), nil, &sink); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := 0
	for _, o := range sink.omissions {
		if o.Code == "password_unusable" {
			n++
		}
	}
	if n != 7 {
		t.Errorf("%d users reported with an unusable password, want 7", n)
	}
}

type omissionSink struct {
	sourcetestNop
	omissions []archive.Omission
}

func (s *omissionSink) Omit(o archive.Omission) error {
	s.omissions = append(s.omissions, o)
	return nil
}
