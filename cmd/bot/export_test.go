package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/source/sources"
	"github.com/ferry-matrix/ferry/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const fixtureDir = "../../testdata/synapse-1.67/"

func synapseFixture(t *testing.T) (db, media string) {
	t.Helper()
	return synapseFixtureNamed(t, "synapse-1.67")
}

// synapseFixtureNamed restores testdata/<fixture>/synapse.sql.gz into a
// fresh database and unpacks the (shared) media store.
func synapseFixtureNamed(t *testing.T, fixture string) (db, media string) {
	t.Helper()
	return testenv.SynapseFixture(t, "../../testdata", fixture)
}

// bot export end to end: a packed, passphrase-encrypted archive that
// verifies; then Ctrl-C in the middle leaves nothing that looks complete.
func TestExportCommand(t *testing.T) {
	ctx := context.Background()
	db, media := synapseFixture(t)
	dir := t.TempDir()
	t.Setenv("FERRY_TEST_PASS", "a long enough passphrase")
	out := filepath.Join(dir, "full.ferry")
	args := []string{"export", "--quiet", "--db", db, "--media-store", media, "--signing-key", fixtureDir + "fixture.test.signing.key",
		"--synapse-config", fixtureDir + "homeserver.yaml", "--passphrase-env", "FERRY_TEST_PASS", "--to", out}
	var stdout bytes.Buffer
	if err := execute(ctx, append(args, "--json"), &stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
	var res exportResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Archive != out || res.KeyFile != out+".key.age" || res.ArchiveID == "" ||
		res.ServerName != "fixture.test" || res.Records == 0 || res.MediaFiles == 0 || res.Source.Implementation != "synapse" {
		t.Fatalf("export --json: %+v (%v)\n%s", res, err, stdout.String())
	}
	if err := run(ctx, []string{"archive", "verify", "--key-file", out + ".key.age", "--passphrase-env", "FERRY_TEST_PASS", out}); err != nil {
		t.Fatal(err)
	}
	// The key file beside the packed archive is found without --key-file.
	if err := run(ctx, []string{"archive", "verify", "--passphrase-env", "FERRY_TEST_PASS", out}); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, args); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("export over an existing archive: %v", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	time.AfterFunc(20*time.Millisecond, cancel)
	stored := filepath.Join(dir, "stored")
	args = []string{"export", "--quiet", "--db", db, "--media-store", media, "--signing-key", fixtureDir + "fixture.test.signing.key",
		"--plaintext", "--to", stored}
	err := run(cancelled, args)
	if err == nil {
		t.Skip("the export finished before it could be cancelled")
	}
	if err := run(ctx, []string{"archive", "verify", stored}); err == nil || !strings.Contains(err.Error(), "incomplete") && !strings.Contains(err.Error(), "no archive parts") &&
		!strings.Contains(err.Error(), "not marked final") && !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a cancelled export looks complete: %v", err)
	}

	if err := run(ctx, []string{"export", "--db", db, "--to", filepath.Join(dir, "x")}); err == nil || !strings.Contains(err.Error(), "--plaintext") {
		t.Fatalf("export without a key choice: %v", err)
	}
	if err := run(ctx, []string{"export", "--db", db, "--plaintext", "--access-tokens", "--to", filepath.Join(dir, "y")}); err == nil {
		t.Fatal("access tokens in a plaintext export accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "y")); err == nil {
		t.Error("a refused export left output behind")
	}
}

// A time range on a Dendrite source is refused before the source is
// opened (the dendrite.yaml here does not even exist), with the message
// chat and the API give.
func TestExportRefusesUnsupportedSelection(t *testing.T) {
	caps, err := sources.Capabilities(sources.Dendrite)
	if err != nil {
		t.Fatal(err)
	}
	want := exporter.Selection{Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}.Check(caps)
	out := filepath.Join(t.TempDir(), "x.ferry")
	err = run(context.Background(), []string{"export", "--source", "dendrite", "--config", "/nonexistent/dendrite.yaml",
		"--since", "2026-01-01", "--plaintext", "--to", out})
	if err == nil || err.Error() != want.Error() {
		t.Fatalf("export --since from Dendrite: %v, want %v", err, want)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused export left output behind")
	}
}

// bot export --record config.yaml lists the finished export in the bot's
// state database (the dashboard's exports, as made through the CLI, with
// where the archive went) and its audit log; a config that cannot be used
// stops the export before it writes anything.
func TestExportRecordsInFerryState(t *testing.T) {
	ctx := context.Background()
	db, media := synapseFixture(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte("state:\n  database: sqlite://"+filepath.Join(dir, "ferry.db")+"\n  key_file: "+filepath.Join(dir, "state.key")+"\n"), 0o600)
	out := filepath.Join(dir, "full")
	args := []string{"export", "--quiet", "--db", db, "--media-store", media, "--signing-key", fixtureDir + "fixture.test.signing.key", "--plaintext"}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("state:\n  database: mysql://db/ferry\n"), 0o600)
	// Before the bot ever ran, there is no state database to record in:
	// --record creates none (nor a key file), and exports nothing.
	for _, c := range []string{bad, cfg} {
		if err := run(ctx, append(args, "--to", out, "--record", c)); err == nil || !strings.Contains(err.Error(), "--record") {
			t.Fatalf("export with an unusable --record config %s: %v", c, err)
		}
	}
	for _, f := range []string{out, filepath.Join(dir, "ferry.db"), filepath.Join(dir, "state.key")} {
		if _, err := os.Stat(f); err == nil {
			t.Fatalf("the refused export created %s", f)
		}
	}
	bot, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "ferry.db"), store.KeyFile(filepath.Join(dir, "state.key"))) // the bot's first start
	if err != nil {
		t.Fatal(err)
	}
	bot.Close()

	var stdout bytes.Buffer
	if err := execute(ctx, append(args, "--to", out, "--record", cfg, "--json"), &stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
	var res exportResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Recorded == "" {
		t.Fatalf("export --json: %+v (%v)", res, err)
	}
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "ferry.db"), store.KeyFile(filepath.Join(dir, "state.key")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := st.GetExport(ctx, res.Recorded)
	if err != nil {
		t.Fatal(err)
	}
	if e.Via != "cli" || !strings.HasPrefix(e.RequestedBy, "cli:") || e.Location != out || e.ArchiveID != res.ArchiveID ||
		e.Status != store.StatusCompleted || e.Kind != store.KindExport || e.Name != "full" {
		t.Errorf("the recorded export: %+v", e)
	}
	var req jobs.Request
	if err := json.Unmarshal([]byte(e.Request), &req); err != nil || req.Source != "synapse" || req.ArchiveType() != exporter.TypeFull || !req.Plaintext {
		t.Errorf("its request: %s (%v)", e.Request, err)
	}
	log, err := st.AuditLog(ctx, 10)
	if err != nil || len(log) == 0 || log[0].Action != "export.finish" || log[0].Target != e.ID || log[0].Via != "cli" {
		t.Errorf("audit log: %+v (%v)", log, err)
	}
}
