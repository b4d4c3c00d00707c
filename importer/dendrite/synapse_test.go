package dendrite_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source/synapse"
)

const testdata = "../../testdata/"

var update = flag.Bool("update", false, "rewrite the golden files")

// checkGoldenReport compares a fidelity report with a committed golden
// file (go test -run X -update rewrites it).
func checkGoldenReport(t *testing.T, path string, rep *fidelity.Report) {
	t.Helper()
	got, err := json.MarshalIndent(rep.Entries, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the fidelity report differs from %s (run with -update after checking the change):\n%s", path, got)
	}
}

// synapseFixture restores a Synapse fixture and its media store.
func synapseFixture(t *testing.T, name string) synapse.Config {
	t.Helper()
	db, media := testenv.SynapseFixture(t, testdata, name)
	return synapse.Config{Database: db, MediaStore: media, SigningKey: testdata + "synapse-1.67/fixture.test.signing.key",
		HomeserverConfig: testdata + "synapse-1.67/homeserver.yaml"}
}

// The real Synapse fixture (schema 72) migrated into a fresh Dendrite: the
// import completes and Dendrite holds, read back, every user, room, event,
// media file, account data item, receipt and key backup of the archive.
// (The client-server API acceptance check of the migration is issue 6.)
func TestSynapseFixtureIntoDendrite(t *testing.T) {
	ctx := context.Background()
	cfg := synapseFixture(t, "synapse-1.67")
	// Synapse-only data the fixture lacks, as an admin's server has it: a
	// registration token, two event reports, a retention policy.
	conn, err := pgx.Connect(ctx, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO registration_tokens (token, uses_allowed, pending, completed) VALUES ('s3cr3t-invite', 5, 0, 1);
		INSERT INTO event_reports (id, received_ts, room_id, event_id, user_id, reason, content) VALUES
		 (1, 1700000000000, '!ogWeHYJmPRtxIzbUbr:fixture.test', '$report-one', '@nina:fixture.test', 'spam', '{}'),
		 (2, 1700000001000, '!ogWeHYJmPRtxIzbUbr:fixture.test', '$report-two', '@oliver:fixture.test', 'rude', '{}');
		INSERT INTO room_retention (room_id, event_id, min_lifetime, max_lifetime) VALUES ('!ogWeHYJmPRtxIzbUbr:fixture.test', '$retention', 86400000, 604800000)`)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src, err := synapse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := exportSource(t, src, dir)
	src.Close()
	to := testenv.NewDendrite(t, "fixture.test")
	to.Start(t)
	to.Stop()
	res, err := importInto(ctx, t, to, openArchive(t, dir, key), importer.Options{Migration: true})
	if res != nil && res.Report != nil {
		t.Logf("report:\n%s", res.Report)
		t.Logf("archive %v\ntarget %v", res.InArchive, res.InTarget)
	}
	if err != nil {
		t.Fatal(err)
	}
	checkGoldenReport(t, "testdata/synapse-1.67-to-dendrite.fidelity.json", res.Report)
	// Every Synapse-only row is listed by its ID.
	r := openArchive(t, dir, key)
	vendorFiles := 0
	for _, f := range r.Manifest().Files {
		if archive.ItemOf(f.Path) != "org.matrix.synapse" || f.Path == "org.matrix.synapse/homeserver.json" {
			continue
		}
		var listed int64
		for _, e := range res.Report.Entries {
			if e.Item == f.Path && e.Code == fidelity.TargetNoPlace && e.ID != "" {
				listed++
			}
		}
		if listed != f.Records || listed == 0 {
			t.Errorf("%s: %d rows, %d listed by ID in the report", f.Path, f.Records, listed)
		}
		vendorFiles++
	}
	if vendorFiles != 3 {
		t.Errorf("%d Synapse-only tables in the archive, want 3 (tokens, reports, retention)", vendorFiles)
	}
	if strings.Contains(res.Report.String(), "s3cr3t-invite") {
		t.Error("the report shows a registration token")
	}
	// The suggested dendrite.yaml: the settings with a counterpart, no
	// secret, and the rest named.
	suggestion, err := idendrite.SuggestConfig(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server_name: fixture.test", "registration_disabled: true", "max_file_size_bytes: 52428800",
		"dynamic_thumbnails: false", "copy registration_shared_secret from homeserver.yaml", "url_preview_enabled", "rc_message", "default_room_version"} {
		if !strings.Contains(suggestion, want) {
			t.Errorf("the suggested config lacks %q:\n%s", want, suggestion)
		}
	}
	for _, secret := range []string{"hTcAu3bQE_g3nfPkVOlHMPxcTvXIC54KTsUzbI9bhAsjpICi", "fixturepw", "macaroon"} {
		if strings.Contains(suggestion, secret) {
			t.Errorf("the suggested config shows %q", secret)
		}
	}
	for _, s := range []string{archive.SectionUsers, archive.SectionRooms, archive.SectionEvents, archive.SectionMedia,
		archive.SectionAccountData, archive.SectionReceipts, archive.SectionBackupVersions, archive.SectionBackupSessions, archive.SectionDevices} {
		if res.InTarget[s] != res.InArchive[s] || res.InArchive[s] == 0 {
			t.Errorf("%s: %d in the target, %d in the archive", s, res.InTarget[s], res.InArchive[s])
		}
	}
}
