// Package exporttest is a test rig: it runs a Source into a new encrypted
// archive, as `bot export` would, and opens it. Product code never imports
// it.
package exporttest

import (
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/source"
)

// Export writes what src selects with f and o into a new archive in a
// temporary directory, encrypted with a fresh key (small parts, so that
// readers cross part boundaries), and returns it opened, with the
// exporter's final progress. The archive is closed when the test ends.
func Export(t testing.TB, src source.Source, f source.Filter, o source.Options) (*archive.Reader, exporter.Progress) {
	t.Helper()
	dir, key, prog := ExportDir(t, src, f, o)
	return Open(t, dir, key), prog
}

// ExportDir is Export without opening: it returns the archive's directory
// and key, for tests that open the same archive many times (Open).
func ExportDir(t testing.TB, src source.Source, f source.Filter, o source.Options) (string, keywrap.Key, exporter.Progress) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := container.Create(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	key, info := keywrap.New(), src.Info()
	typ := "partial"
	if f.IsFull() {
		typ = "full"
	}
	w, err := archive.NewWriter(ctx, store, archive.WriterOptions{Key: key, PartSize: 256 << 10,
		Export: archive.ExportInfo{ServerName: info.ServerName, Type: typ,
			Source:  archive.SourceInfo{Implementation: info.Implementation, SchemaVersion: info.SchemaVersion},
			Filters: f.Archive(), Options: o.Archive()},
		Core: archive.Core{ServerName: info.ServerName, DefaultRoomVersion: info.DefaultRoomVersion}})
	if err != nil {
		t.Fatal(err)
	}
	prog, err := exporter.Export(ctx, src, w, exporter.Options{Filter: f, Source: o})
	if err != nil {
		w.Abort()
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, key, prog
}

// Open opens the archive in dir with key; it is closed when the test ends.
func Open(t testing.TB, dir string, key keywrap.Key) *archive.Reader {
	t.Helper()
	r, err := archive.OpenLocation(context.Background(), dir, archive.OpenOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
