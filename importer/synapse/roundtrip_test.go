package synapse

import (
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/clientview"
	"github.com/ferry-matrix/ferry/internal/exporttest"
	"github.com/ferry-matrix/ferry/internal/fixturecheck"
	"github.com/ferry-matrix/ferry/internal/seed"
	"github.com/ferry-matrix/ferry/internal/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
	ssource "github.com/ferry-matrix/ferry/source/synapse"
)

// A live Synapse 1.160, seeded through the client-server API (users with
// passwords and profiles; public, private, DM and encrypted rooms and a
// space; joins, leaves, kicks, bans, an invite, a room upgrade; messages
// with edits, reactions, threads and redactions; account data, tags, keys,
// a key backup, media), exported and restored into a fresh Synapse: what
// every user sees through the client-server API is what they saw before,
// and the seed's ground truth.
func TestLiveSynapseRoundTrip(t *testing.T) {
	ctx := context.Background()
	const name = "roundtrip.ferry.test"
	from := testenv.StartSynapse(t, name)
	truth, err := seed.Run(ctx, seed.Server{URL: from.URL, ServerName: name,
		Register: func(local, pw string, admin bool) (string, error) { return from.Register(t, local, pw, admin), nil }})
	if err != nil {
		t.Fatal(err)
	}
	before := capture(t, from.URL, truth)
	from.Stop()

	src, err := ssource.Open(ctx, ssource.Config{Database: from.DB, MediaStore: from.MediaStore, SigningKey: from.SigningKey, HomeserverConfig: from.Config})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir, key, _ := exporttest.ExportDir(t, src, source.Filter{}, source.Options{AccessTokens: true, PrivateServerKey: true})
	to := testenv.NewSynapse(t, name)
	res, err := importer.Run(ctx, NewTarget(Config{Database: to.DB, HomeserverConfig: to.Config, MediaStore: to.MediaStore,
		SigningKey: to.SigningKey, RunBackgroundUpdates: to.RunBackgroundUpdates}), exporttest.Open(t, dir, key), importer.Options{Migration: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", res.Report)
	to.Start(t)
	after := capture(t, to.URL, truth)
	for _, d := range clientview.Diff(before, after) {
		t.Errorf("after the restore: %s", d)
	}
	c := &clientview.Client{URL: to.URL, ServerName: name}
	tokens := fixturecheck.Login(t, c, truth)
	fixturecheck.Rooms(t, c, truth, tokens, fixturecheck.ArchiveEvents(t, exporttest.Open(t, dir, key)))
	fixturecheck.Users(t, c, truth, tokens)
}

// capture records what the seeded users see.
func capture(t *testing.T, url string, truth *sourcetest.GroundTruth) *clientview.View {
	t.Helper()
	c := &clientview.Client{URL: url, ServerName: truth.ServerName}
	v, err := c.Capture(context.Background(), fixturecheck.Logins(truth), fixturecheck.MediaURIs(truth))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
