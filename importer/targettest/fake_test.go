package targettest_test

import (
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/importer/targettest"
)

// The suite on the in-memory Fake and the sample archive: the suite's own
// check, with the interruption points it picks itself.
func TestFake(t *testing.T) {
	dir := t.TempDir()
	archivetest.WriteSample(t, dir, keywrap.Key{}, 20)
	targettest.Run(t, targettest.Harness{
		Archive: func(t *testing.T) *archive.Reader { return archivetest.Open(t, dir, archive.OpenOptions{}) },
		NewTarget: func(t *testing.T, serverName string, populated bool) *targettest.Instance {
			f := targettest.NewFake(serverName)
			if populated {
				f.Populate(1)
			}
			return &targettest.Instance{Target: f}
		},
	})
}
