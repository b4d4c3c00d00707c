package dendrite_test

import (
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/importer"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
	"github.com/ferry-matrix/ferry/importer/targettest"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// Dendrite passes the Target conformance suite, on a migration export of a
// seeded live Dendrite, into Dendrites configured as an admin would
// (Dendrite's sample config, JetStream on disk) and initialised by starting
// them once. After every complete import the re-export equals the archive.
//
// The interruptions kill the helper (and the Dendrite components in it)
// with SIGKILL: among the accounts, at two points of the events (the
// create event of the second room falls between them) and among the media.
func TestTargetConformance(t *testing.T) {
	const name = "conformance.ferry.test"
	dir, key := seededArchive(t, name)
	targettest.Run(t, targettest.Harness{
		Archive: func(t *testing.T) *archive.Reader { return openArchive(t, dir, key) },
		Options: importer.Options{Migration: true},
		NewTarget: func(t *testing.T, serverName string, populated bool) *targettest.Instance {
			d := testenv.NewDendrite(t, serverName)
			d.Start(t) // Dendrite initialises its databases and JetStream store
			if populated {
				d.Register(t, "someone", "someone-password-1", false)
			}
			d.Stop()
			return &targettest.Instance{
				Target: idendrite.NewTarget(idendrite.Config{ConfigPath: d.Config()}),
				Verify: func(t *testing.T) { assertSameContent(t, d.Config(), dir, key) },
			}
		},
		Interrupt: []targettest.Point{{Phase: "importing users", After: 1}, {Phase: "importing events", After: 29},
			{Phase: "importing events", After: 54}, {Phase: "importing media", After: 2}},
	})
}
