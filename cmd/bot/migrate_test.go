package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
	"github.com/ferry-matrix/ferry/internal/testrig/fixturecheck"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	sdendrite "github.com/ferry-matrix/ferry/source/dendrite"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// The acceptance check of the Synapse -> Dendrite migration, on the real
// Synapse fixtures (schema 72 and today's schema) into a fresh Dendrite on
// SQLite and on PostgreSQL: `bot migrate`, start Dendrite, and then,
// through the client-server API only, compare with the fixture's ground
// truth and the archive: every user logs in with the fixture password and
// sees the joined rooms, invites and room state the ground truth lists;
// /messages returns every event of each room in order with the same IDs and
// content (redacted ones redacted); profiles, account data, tags and push
// rules match; every media file downloads byte-identical; new messages
// reach the other members. A second run changes nothing.
func TestMigrateSynapseFixtures(t *testing.T) {
	for _, tc := range []struct{ fixture, backend string }{
		{"synapse-1.67", "sqlite"}, {"synapse-latest-schema", "sqlite"}, {"synapse-1.67", "postgres"}, {"synapse-latest-schema", "postgres"},
	} {
		t.Run(tc.fixture+"/"+tc.backend, func(t *testing.T) { migrateFixture(t, tc.fixture, tc.backend) })
	}
}

func migrateFixture(t *testing.T, fixture, backend string) {
	ctx := context.Background()
	// Both fixtures hold the same data (latest-schema is 1.67 upgraded): one ground truth.
	truth, err := sourcetest.LoadGroundTruth("../../testdata/synapse-1.67/ground_truth.json")
	if err != nil {
		t.Fatal(err)
	}
	db, media := synapseFixtureNamed(t, fixture)
	var target *testenv.Dendrite
	if backend == "postgres" {
		target = testenv.NewDendritePostgres(t, truth.ServerName)
	} else {
		target = testenv.NewDendrite(t, truth.ServerName)
	}
	target.Start(t)
	target.Stop()
	dir := t.TempDir()
	t.Setenv("FERRY_TEST_PASS", "a long enough passphrase")
	kept := filepath.Join(dir, "archive")
	args := []string{"migrate", "--quiet", "--db", db, "--media-store", media, "--signing-key", fixtureDir + "fixture.test.signing.key",
		"--synapse-config", fixtureDir + "homeserver.yaml", "--config", target.Config(), "--migration",
		"--archive", kept, "--passphrase-env", "FERRY_TEST_PASS"}
	if err := run(ctx, args); err != nil {
		t.Fatal(err)
	}
	// The Synapse signing key is Dendrite's now.
	key, _ := os.ReadFile(filepath.Join(target.Dir, "matrix_key.pem"))
	if !bytes.Contains(key, []byte("Key-ID: ed25519:")) || !strings.Contains(string(key), "MATRIX PRIVATE KEY") {
		t.Errorf("matrix_key.pem after the migration:\n%s", key)
	}

	events := archiveEvents(t, kept)
	target.Start(t)
	c := &clientview.Client{URL: target.URL, ServerName: truth.ServerName}
	tokens := fixturecheck.Login(t, c, truth)
	fixturecheck.Rooms(t, c, truth, tokens, events)
	fixturecheck.Users(t, c, truth, tokens)
	fixturecheck.CrossSigning(t, c, truth, tokens)

	// New messages reach the other members.
	var square *sourcetest.TruthRoom
	for i := range truth.Rooms {
		if truth.Rooms[i].RoomID == "!ogWeHYJmPRtxIzbUbr:fixture.test" {
			square = &truth.Rooms[i]
		}
	}
	if square != nil {
		id, err := c.Send(ctx, tokens["@nina:fixture.test"], square.RoomID, "after-migration", "hello from Dendrite")
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for try := 0; try < 100 && !got; try++ {
			tl, err := c.SyncTimelineIDs(ctx, tokens["@oliver:fixture.test"])
			if err != nil {
				t.Fatal(err)
			}
			got = slices.Contains(tl[square.RoomID], id)
			time.Sleep(100 * time.Millisecond)
		}
		if !got {
			t.Errorf("oliver never received %s via /sync", id)
		}
	}

	// Repeatable: the same migration again changes nothing.
	target.Stop()
	before := census(t, target)
	args[len(args)-3] = filepath.Join(dir, "again") // a second archive of the same server
	if err := run(ctx, args); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a second migration with a new archive into the migrated server: %v", err)
	}
	if err := run(ctx, []string{"import", "--quiet", "--target", "dendrite", "--config", target.Config(), "--migration",
		"--passphrase-env", "FERRY_TEST_PASS", kept}); err != nil {
		t.Fatalf("the same archive again: %v", err)
	}
	if after := census(t, target); after != before {
		t.Errorf("the rerun changed the target: %v -> %v", before, after)
	}
}

func census(t *testing.T, d *testenv.Dendrite) [2]int64 {
	t.Helper()
	src, err := sdendrite.Open(context.Background(), d.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	u, r, err := src.Census(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return [2]int64{u, r}
}

// archiveEvents reads the timeline events of each room from the archive,
// in archive order.
func archiveEvents(t *testing.T, dir string) map[string][]archive.Event {
	t.Helper()
	ctx := context.Background()
	oo, err := (&keyFlags{passphraseEnv: "FERRY_TEST_PASS"}).options()
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.OpenLocation(ctx, dir, oo)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return fixturecheck.ArchiveEvents(t, r)
}
