package synapse

import (
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
	"github.com/ferry-matrix/ferry/internal/testrig/exporttest"
	"github.com/ferry-matrix/ferry/internal/testrig/fixturecheck"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	sdendrite "github.com/ferry-matrix/ferry/source/dendrite"
)

// Dendrite -> Synapse: a live Dendrite seeded through the client-server API
// (display-name changes among its events), exported and restored into a
// fresh Synapse 1.160, shows every user what Dendrite showed them (less
// what each implementation serves its own way: default push rules, an
// empty tag list).
func TestDendriteIntoSynapse(t *testing.T) {
	ctx := context.Background()
	const name = "move.ferry.test"
	from := testenv.StartDendrite(t, name)
	truth, err := seed.Run(ctx, seed.Server{URL: from.URL, ServerName: name,
		Register: func(local, pw string, admin bool) (string, error) { return from.Register(t, local, pw, admin), nil }})
	if err != nil {
		t.Fatal(err)
	}
	before := capture(t, from.URL, truth)
	from.Stop()
	src, err := sdendrite.Open(ctx, from.Config())
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
	t.Logf("report:\n%s\nin archive %v\nin target %v", res.Report, res.InArchive, res.InTarget)
	to.Start(t)
	after := capture(t, to.URL, truth)
	for _, d := range clientview.Diff(clientview.Portable(before), clientview.Portable(after)) {
		t.Errorf("after the move: %s", d)
	}
	c := &clientview.Client{URL: to.URL, ServerName: name}
	tokens := fixturecheck.Login(t, c, truth)
	fixturecheck.Rooms(t, c, truth, tokens, fixturecheck.ArchiveEvents(t, exporttest.Open(t, dir, key)))
	fixturecheck.Search(t, c, truth, tokens)
}
