package synapse

import (
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/importer/targettest"
	"github.com/ferry-matrix/ferry/internal/testrig/exporttest"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	ssource "github.com/ferry-matrix/ferry/source/synapse"
)

// Synapse passes the Target conformance suite on a full migration export of
// the real Synapse 1.67 fixture, into fresh Synapse 1.160 databases that
// Synapse initialised. The interruptions cancel the restore in the rooms
// phase, the first, which rolls back (nothing is kept): among the state
// groups, among the events, and while the deferred indexes are rebuilt
// (they come back with the rollback); then among the accounts (the rerun
// skips the rooms phase) and among the media (files already placed, rows
// rolled back): each rerun completes as an uninterrupted restore does.
func TestTargetConformance(t *testing.T) {
	db, media := testenv.SynapseFixture(t, testdata, "synapse-1.67")
	src, err := ssource.Open(t.Context(), ssource.Config{Database: db, MediaStore: media,
		SigningKey: testdata + "synapse-1.67/fixture.test.signing.key", HomeserverConfig: testdata + "synapse-1.67/homeserver.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir, key, _ := exporttest.ExportDir(t, src, source.Filter{}, source.Options{AccessTokens: true, PrivateServerKey: true})
	targettest.Run(t, targettest.Harness{
		Archive: func(t *testing.T) *archive.Reader { return exporttest.Open(t, dir, key) },
		Options: importer.Options{Migration: true},
		NewTarget: func(t *testing.T, serverName string, populated bool) *targettest.Instance {
			s := testenv.NewSynapse(t, serverName)
			if populated {
				s.Start(t)
				s.Register(t, "someone", "someone-password-1", false)
				s.Stop()
			}
			return &targettest.Instance{Target: NewTarget(Config{Database: s.DB, HomeserverConfig: s.Config,
				MediaStore: s.MediaStore, SigningKey: s.SigningKey})}
		},
		Interrupt: []targettest.Point{{Phase: "state groups", After: 10, NothingKept: true}, {Phase: "events", After: 1500, NothingKept: true},
			{Phase: "indexes, constraints and triggers", After: 2}, {Phase: "accounts", After: 1}, {Phase: "media", After: 3}},
	})
}
