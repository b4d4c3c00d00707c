package storage_test

import (
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/storage"
)

func mustID(t *testing.T, s string) container.ArchiveID {
	id, err := container.ParseArchiveID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// openPublished opens a published archive through range reads.
func openPublished(t *testing.T, s *storage.Store, name string, keyFile []byte) *archive.Reader {
	t.Helper()
	ctx := context.Background()
	src, err := s.OpenArchive(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(ctx, src, archive.OpenOptions{KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
