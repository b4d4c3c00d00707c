// Package synapse restores archives into a stopped Synapse (1.160, schema
// 94) whose database Synapse itself initialised. This file is the check
// that runs before any write: the target must be reachable, stopped,
// initialised at the supported schema, for the archive's server name, and
// empty. The restore itself (issue 16) builds on it.
package synapse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/importer"
	"gopkg.in/yaml.v3"
)

// SupportedSchema is the Synapse schema version (Synapse 1.160) a restore
// writes.
const SupportedSchema = 94

// ErrRefused marks a target that must not be written: nothing was written.
// It is importer.ErrRefused, as every target's refusals are.
var ErrRefused = importer.ErrRefused

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Config names the Synapse to restore into.
type Config struct {
	// Database is the PostgreSQL URL of Synapse's database.
	Database string
	// HomeserverConfig is the path of homeserver.yaml: its server_name,
	// pid_file and signing_key_path are used.
	HomeserverConfig string
	// MediaStore is media_store_path, the directory of Synapse's media.
	MediaStore string
	// SigningKey is where the signing key goes; empty: homeserver.yaml's
	// signing_key_path.
	SigningKey string
	// RunBackgroundUpdates, if set, runs Synapse's background updates
	// (update_synapse_database --run-background-updates) after the restore;
	// nil leaves them to Synapse's start.
	RunBackgroundUpdates func(ctx context.Context) error
}

// Preflight is what Check found.
type Preflight struct {
	ServerName    string `json:"server_name"`
	SchemaVersion int    `json:"schema_version"`
	// NonEmpty lists the tables (of emptyTables and the e2e_* tables) that
	// hold rows, with their counts.
	NonEmpty map[string]int64 `json:"non_empty,omitempty"`
}

// emptyTables (with every e2e_* table) define an empty Synapse: a freshly
// initialised database already has background-update, scheduled-task and
// stream-position rows, but none of these.
var emptyTables = []string{"users", "rooms", "events", "state_groups", "local_media_repository"}

type homeserverYAML struct {
	ServerName     string `yaml:"server_name"`
	PidFile        string `yaml:"pid_file"`
	SigningKeyPath string `yaml:"signing_key_path"`
	Database       struct {
		Name string `yaml:"name"`
		Args struct {
			Database string `yaml:"database"`
			DBName   string `yaml:"dbname"`
		} `yaml:"args"`
	} `yaml:"database"`
	// Workers need Redis for replication: its caches are keyed by state
	// group IDs, which a restore reallocates.
	Redis struct {
		Enabled bool `yaml:"enabled"`
	} `yaml:"redis"`
}

// readHomeserverYAML reads the parts of homeserver.yaml a restore uses.
func readHomeserverYAML(path string) (*homeserverYAML, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the target's homeserver.yaml: %w", err)
	}
	var hs homeserverYAML
	if err := yaml.Unmarshal(data, &hs); err != nil {
		return nil, fmt.Errorf("the target's homeserver.yaml %s is not valid YAML: %w", path, err)
	}
	return &hs, nil
}

// databaseName is the PostgreSQL database homeserver.yaml names, "" when
// it names none (libpq's defaults then decide).
func (hs *homeserverYAML) databaseName() string {
	if hs.Database.Args.Database != "" {
		return hs.Database.Args.Database
	}
	return hs.Database.Args.DBName
}

// Check inspects a target without writing to it and refuses, with what to
// do, a target that is running, not initialised by Synapse at
// SupportedSchema, for another server than serverName, or not empty.
func Check(ctx context.Context, t Config, serverName string) (*Preflight, error) {
	hs, err := readHomeserverYAML(t.HomeserverConfig)
	if err != nil {
		return nil, refuse("%v", err)
	}
	if hs.ServerName != serverName {
		return nil, refuse("the archive is of %q but the target's homeserver.yaml says server_name %q: signatures and IDs carry the server name, so a restore needs a Synapse configured for %q",
			serverName, hs.ServerName, serverName)
	}
	if hs.Database.Name == "sqlite3" {
		return nil, refuse("the target's homeserver.yaml %s uses SQLite: Ferry restores into Synapse on PostgreSQL; configure its database as psycopg2 and initialise it with update_synapse_database", t.HomeserverConfig)
	}
	if pid, alive := pidFileAlive(hs.PidFile); alive {
		return nil, refuse("Synapse is running (pid_file %s names process %d): stop it (and its workers) before restoring", hs.PidFile, pid)
	}
	conn, err := connectReadOnly(ctx, t.Database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)

	// A session that has just closed (a previous run of Ferry's own, say)
	// can linger in pg_stat_activity for a moment: look again for up to 2 s
	// before calling the target busy. A running Synapse stays.
	var sessions []string
	for try := 0; try < 10; try++ {
		rows, err := conn.Query(ctx, `SELECT COALESCE(NULLIF(application_name, ''), client_addr::text, 'a local client') FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY 1`)
		if err != nil {
			return nil, refuse("list the sessions on the target database: %v", err)
		}
		if sessions, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, refuse("list the sessions on the target database: %v", err)
		}
		if len(sessions) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(sessions) > 0 {
		return nil, refuse("%d other sessions are connected to the target database (%s): Synapse or one of its workers is running, or another tool holds it; stop them before restoring",
			len(sessions), strings.Join(sessions, ", "))
	}

	// The config's server_name and signing key are checked and written for
	// the database --db names: they must be one Synapse's. Hosts and ports
	// differ across a container's boundary; the database's name does not.
	var current string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&current); err != nil {
		return nil, refuse("read the target database's name: %v", err)
	}
	if want := hs.databaseName(); want != "" && want != current {
		return nil, refuse("the target's homeserver.yaml %s names database %q, but the database given connects to %q: give the homeserver.yaml of the Synapse that uses this database (its server_name and signing key are what the restore checks and writes)",
			t.HomeserverConfig, want, current)
	}

	p := &Preflight{ServerName: hs.ServerName, NonEmpty: map[string]int64{}}
	if err := conn.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&p.SchemaVersion); err != nil {
		return nil, refuse("the target database was not initialised by Synapse (%v): run `update_synapse_database --database-config homeserver.yaml` of Synapse 1.160 on it first", err)
	}
	if p.SchemaVersion != SupportedSchema {
		return nil, refuse("the target database is at Synapse schema %d; Ferry restores into schema %d (Synapse 1.160): initialise a fresh database with Synapse 1.160's update_synapse_database",
			p.SchemaVersion, SupportedSchema)
	}
	rows, err := conn.Query(ctx, `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name LIKE 'e2e\_%' ORDER BY 1`)
	if err != nil {
		return nil, refuse("list the target's e2e tables: %v", err)
	}
	e2e, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, refuse("list the target's e2e tables: %v", err)
	}
	tables := append(append([]string(nil), emptyTables...), e2e...)
	for _, table := range tables {
		var n int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+pgx.Identifier{table}.Sanitize()+` LIMIT 1000000) t`).Scan(&n); err != nil {
			return nil, refuse("count the rows of %s: %v", table, err)
		}
		if n > 0 {
			p.NonEmpty[table] = n
		}
	}
	if len(p.NonEmpty) > 0 {
		var held []string
		for _, table := range tables {
			if n, ok := p.NonEmpty[table]; ok {
				held = append(held, fmt.Sprintf("%s: %d rows", table, n))
			}
		}
		return p, refuse("the target Synapse is not empty (%s): a whole restore goes into a fresh database that Synapse 1.160 initialised (update_synapse_database) and that holds no users, rooms or media yet; to bring back deleted rooms into this server, use --rooms", strings.Join(held, ", "))
	}
	return p, nil
}

// pidFileAlive reads a pid file and says whether its process exists.
func pidFileAlive(path string) (int, bool) {
	if path == "" {
		return 0, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	err = syscall.Kill(pid, 0)
	return pid, err == nil || errors.Is(err, syscall.EPERM)
}
