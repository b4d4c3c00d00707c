package synapse

import (
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/clientview"
	"github.com/ferry-matrix/ferry/internal/fixturecheck"
	"github.com/ferry-matrix/ferry/internal/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// The real Synapse 1.67 fixture, exported and restored whole into a fresh
// Synapse 1.160: Synapse starts on it, and what its users see through the
// client-server API is the ground truth.
func TestRestoreFixtureIntoSynapse(t *testing.T) {
	ctx := context.Background()
	truth, err := sourcetest.LoadGroundTruth(testdata + "synapse-1.67/ground_truth.json")
	if err != nil {
		t.Fatal(err)
	}
	r := exportFixture(t, "synapse-1.67", source.Options{AccessTokens: true, PrivateServerKey: true, Encrypted: true})
	s := testenv.NewSynapse(t, truth.ServerName)
	target := NewTarget(Config{Database: s.DB, HomeserverConfig: s.Config, MediaStore: s.MediaStore, SigningKey: s.SigningKey,
		RunBackgroundUpdates: s.RunBackgroundUpdates})
	res, err := importer.Run(ctx, target, r, importer.Options{Migration: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s\nfiles: %v\nnotes: %v\nin archive %v\nin target %v", res.Report, res.Files, res.Notes, res.InArchive, res.InTarget)
	s.Start(t)
	c := &clientview.Client{URL: s.URL, ServerName: truth.ServerName}
	tokens := fixturecheck.Login(t, c, truth)
	fixturecheck.Rooms(t, c, truth, tokens, fixturecheck.ArchiveEvents(t, r))
	fixturecheck.Users(t, c, truth, tokens)
	fixturecheck.CrossSigning(t, c, truth, tokens)
}
