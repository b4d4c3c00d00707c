package synapse

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/testenv"
	"github.com/ferry-matrix/ferry/source"
)

const testdata = "../../testdata/"

// fixture restores a Synapse fixture into a fresh database and unpacks
// its media store; name is "synapse-1.67" or "synapse-latest-schema".
func fixture(t *testing.T, name string) Config {
	t.Helper()
	db, media := testenv.SynapseFixture(t, testdata, name)
	return Config{Database: db, MediaStore: media, SigningKey: testdata + "synapse-1.67/fixture.test.signing.key",
		HomeserverConfig: testdata + "synapse-1.67/homeserver.yaml"}
}

// export runs a whole export of cfg into a new encrypted archive and opens it.
func export(t *testing.T, cfg Config, f source.Filter, o source.Options) (*archive.Reader, exporter.Progress) {
	t.Helper()
	ctx := context.Background()
	src, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	store, err := container.Create(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	key := keywrap.New()
	info := src.Info()
	w, err := archive.NewWriter(ctx, store, archive.WriterOptions{Key: key, PartSize: 256 << 10,
		Export: archive.ExportInfo{ServerName: info.ServerName, Type: exportType(f),
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
	r, err := archive.OpenLocation(ctx, dir, archive.OpenOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, prog
}

func exportType(f source.Filter) string {
	if f.IsFull() {
		return "full"
	}
	return "partial"
}

func TestExportFixtureValidates(t *testing.T) {
	for _, name := range []string{"synapse-1.67", "synapse-latest-schema"} {
		t.Run(name, func(t *testing.T) {
			r, prog := export(t, fixture(t, name), source.Filter{}, source.Options{})
			rep, err := archive.Validate(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("progress %+v", prog)
			for _, p := range rep.Problems {
				t.Log(p)
			}
			t.Logf("events %d signatures %+v blobs %d", rep.Events, rep.Signatures, rep.Blobs)
			if !rep.OK() {
				t.Fatal("archive does not validate")
			}
		})
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// sourcetestNop is a Sink that drops everything.
type sourcetestNop struct{}

func (sourcetestNop) Record(string, any) error { return nil }
func (sourcetestNop) Blob(_ string, size int64, r io.Reader) (string, error) {
	_, err := io.Copy(io.Discard, r)
	return "", err
}
func (sourcetestNop) File(string, []byte, int64, []string) error { return nil }
func (sourcetestNop) Omit(archive.Omission) error                { return nil }
func (sourcetestNop) Checkpoint([]byte) error                    { return nil }
