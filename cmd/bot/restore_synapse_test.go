package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
	"github.com/ferry-matrix/ferry/internal/testrig/fixturecheck"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// Disaster recovery as an admin runs it: last night's `bot export` of the
// real Synapse fixture, then `bot import --target synapse` into a database
// that Synapse 1.160 initialised, with its background updates run by
// update_synapse_database; Synapse starts and its users see their rooms.
// Refusals come before any write.
func TestImportIntoSynapse(t *testing.T) {
	ctx := context.Background()
	truth, err := sourcetest.LoadGroundTruth(fixtureDir + "ground_truth.json")
	if err != nil {
		t.Fatal(err)
	}
	db, media := synapseFixture(t)
	t.Setenv("FERRY_TEST_PASS", "a long enough passphrase")
	backup := filepath.Join(t.TempDir(), "backup.ferry")
	if err := execute(ctx, []string{"export", "--quiet", "--db", db, "--media-store", media, "--signing-key", fixtureDir + "fixture.test.signing.key",
		"--synapse-config", fixtureDir + "homeserver.yaml", "--migration", "--passphrase-env", "FERRY_TEST_PASS", "--to", backup}, os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}

	s := testenv.NewSynapse(t, truth.ServerName)
	updater := updateSynapseDatabase(t, s)
	target := []string{"import", "--quiet", "--target", "synapse", "--db", s.DB, "--media-store", s.MediaStore, "--synapse-config", s.Config,
		"--signing-key-file", s.SigningKey, "--passphrase-env", "FERRY_TEST_PASS"}

	// Refused before any write: another server's archive is not the issue
	// here; a missing flag and --rooms (the deleted-room mode) are.
	if err := execute(ctx, []string{"import", "--target", "synapse", "--db", s.DB, backup}, os.Stdout, os.Stderr); err == nil ||
		!strings.Contains(err.Error(), "--media-store and --synapse-config") {
		t.Errorf("import without --media-store: %v", err)
	}
	var out bytes.Buffer
	if err := execute(ctx, append(append([]string{}, target...), "--dry-run", backup), &out, os.Stderr); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"nothing was written", "m.events/events", "would replace the target's signing key " + s.SigningKey} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the dry run's output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if err := execute(ctx, append(append([]string{}, target...), "--migration", "--update-synapse-database", updater, backup), &out, os.Stderr); err != nil {
		t.Fatalf("import: %v\n%s", err, out.String())
	}
	t.Logf("bot import --target synapse:\n%s", out.String())
	for _, want := range []string{"m.events/events", s.SigningKey, "background updates ran", "background updates are done", "clear their cache"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the import's output lacks %q", want)
		}
	}
	// Run again, it writes nothing and says so.
	out.Reset()
	if err := execute(ctx, append(append([]string{}, target...), "--migration", backup), &out, os.Stderr); err != nil {
		t.Fatalf("the import again: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "no data was restored again") || !strings.Contains(out.String(), "already in place") {
		t.Errorf("the rerun's output does not say it wrote nothing:\n%s", out.String())
	}
	s.Start(t)
	c := &clientview.Client{URL: s.URL, ServerName: truth.ServerName}
	tokens := fixturecheck.Login(t, c, truth)
	fixturecheck.Rooms(t, c, truth, tokens, archiveEvents(t, backup))
	fixturecheck.Search(t, c, truth, tokens)
}

// updateSynapseDatabase writes what an admin's update_synapse_database is
// to Ferry, for the test Synapse s: the chroot's, run on s's config.
func updateSynapseDatabase(t *testing.T, s *testenv.Synapse) string {
	t.Helper()
	updater := filepath.Join(t.TempDir(), "update_synapse_database")
	script := "#!/bin/sh\nexec chroot " + os.Getenv("FERRY_SYNAPSE_CHROOT") + " update_synapse_database --database-config " + s.Inside(s.Config) + " --run-background-updates\n"
	if err := os.WriteFile(updater, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return updater
}

// Dendrite -> Synapse in one step: bot migrate --from dendrite --to synapse
// of a seeded live Dendrite, then Synapse starts and every user finds their
// rooms, timelines, profiles and account data; the suggested homeserver.yaml
// section names the server.
func TestMigrateDendriteToSynapse(t *testing.T) {
	ctx := context.Background()
	const name = "move.ferry.test"
	from := testenv.StartDendrite(t, name)
	truth, err := seed.Run(ctx, seed.Server{URL: from.URL, ServerName: name,
		Register: func(local, pw string, admin bool) (string, error) { return from.Register(t, local, pw, admin), nil }})
	if err != nil {
		t.Fatal(err)
	}
	from.Stop()
	to := testenv.NewSynapse(t, name)
	var out bytes.Buffer
	if err := execute(ctx, []string{"migrate", "--quiet", "--from", "dendrite", "--from-config", from.Config(), "--to", "synapse",
		"--to-db", to.DB, "--to-media-store", to.MediaStore, "--to-synapse-config", to.Config, "--to-signing-key-file", to.SigningKey,
		"--update-synapse-database", updateSynapseDatabase(t, to), "--migration"}, &out, os.Stderr); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	t.Logf("bot migrate --from dendrite --to synapse:\n%s", out.String())
	if !strings.Contains(out.String(), `server_name: "`+name+`"`) {
		t.Errorf("no suggested homeserver.yaml section in the output")
	}
	to.Start(t)
	c := &clientview.Client{URL: to.URL, ServerName: name}
	tokens := fixturecheck.Login(t, c, truth)
	fixturecheck.Users(t, c, truth, tokens)
}
