package synapse

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const serverName = "restore.ferry.test"

// refused asserts that Check refuses with a message containing every want.
func refused(t *testing.T, target Config, server string, want ...string) {
	t.Helper()
	_, err := Check(context.Background(), target, server)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("Check: %v, want a refusal", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q does not say %q", err, w)
		}
	}
}

// A database Synapse 1.160 initialised and never served is a target; the
// same one is refused while Synapse runs on it, for another server name,
// and once it holds a user.
func TestCheckTarget(t *testing.T) {
	ctx := context.Background()
	s := testenv.NewSynapse(t, serverName)
	target := Config{Database: s.DB, HomeserverConfig: s.Config}
	p, err := Check(ctx, target, serverName)
	if err != nil {
		t.Fatal(err)
	}
	if p.SchemaVersion != SupportedSchema || len(p.NonEmpty) != 0 || p.ServerName != serverName {
		t.Fatalf("preflight of a fresh target: %+v", p)
	}
	refused(t, target, "other.test", `"other.test"`, `"`+serverName+`"`)
	// Another Synapse's homeserver.yaml with this database: its server_name
	// could pass for this one's.
	other := testenv.NewSynapse(t, serverName)
	refused(t, Config{Database: s.DB, HomeserverConfig: other.Config}, serverName, "names database", "the Synapse that uses this database")

	s.Start(t)
	refused(t, target, serverName, "sessions", "running")
	s.Register(t, "alice", "alice-Fixtur3pw", false)
	s.Stop()
	refused(t, target, serverName, "not empty", "users: 1 rows")
}

// A pid_file naming a live process means Synapse runs, whatever the
// database says.
func TestCheckRefusesLivePidFile(t *testing.T) {
	s := testenv.NewSynapse(t, serverName)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "homeserver.pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	cfg := filepath.Join(dir, "homeserver.yaml")
	os.WriteFile(cfg, []byte("server_name: "+serverName+"\npid_file: "+pidFile+"\n"), 0o644)
	refused(t, Config{Database: s.DB, HomeserverConfig: cfg}, serverName, "running", pidFile)
}

// A database Synapse never initialised, or initialised at another schema,
// is refused with what to run.
func TestCheckRefusesUninitialisedOrOtherSchema(t *testing.T) {
	ctx := context.Background()
	s := testenv.NewSynapse(t, serverName)
	bare := testenv.StartPostgres(t).CreateDatabase(t, "bare_"+strings.ToLower(t.Name()[:20]))
	cfg := filepath.Join(t.TempDir(), "homeserver.yaml") // one that names no database
	os.WriteFile(cfg, []byte("server_name: "+serverName+"\n"), 0o644)
	refused(t, Config{Database: bare, HomeserverConfig: cfg}, serverName, "not initialised by Synapse", "update_synapse_database")

	conn, err := pgx.Connect(ctx, s.DB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE schema_version SET version = 93`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	refused(t, Config{Database: s.DB, HomeserverConfig: s.Config}, serverName, "schema 93", "schema 94")
}

// A whole restore whose files could not be written is refused before any
// database write: a media store that does not exist, and a signing key
// path whose directory is not on this host (a container's path).
func TestCheckRefusesUnwritableFiles(t *testing.T) {
	ctx := context.Background()
	r := exportFixture(t, "synapse-1.67", source.Options{PrivateServerKey: true, Encrypted: true})
	s := testenv.NewSynapse(t, r.Core().ServerName)
	check := func(cfg Config, want ...string) {
		t.Helper()
		_, err := NewTarget(cfg).Check(ctx, r, importer.Options{})
		if !errors.Is(err, importer.ErrRefused) {
			t.Fatalf("Check: %v, want a refusal", err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("refusal %q does not say %q", err, w)
			}
		}
	}
	good := Config{Database: s.DB, HomeserverConfig: s.Config, MediaStore: s.MediaStore, SigningKey: s.SigningKey}
	if _, err := NewTarget(good).Check(ctx, r, importer.Options{}); err != nil {
		t.Fatalf("a good target: %v", err)
	}
	noMedia := good
	noMedia.MediaStore = filepath.Join(t.TempDir(), "nonexistent", "media")
	check(noMedia, noMedia.MediaStore, "--media-store")
	containerKey := good
	containerKey.SigningKey = "/data/in-a-container/" + r.Core().ServerName + ".signing.key"
	check(containerKey, containerKey.SigningKey, "--signing-key-file")
}
