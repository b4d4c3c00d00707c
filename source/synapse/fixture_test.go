package synapse

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/testrig/exporttest"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
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
	src, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	return exporttest.Export(t, src, f, o)
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
