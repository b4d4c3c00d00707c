// Package store is Ferry's own state database: the ledger of its jobs
// (what each was asked and produced, with the fencing token and checkpoint
// an export resumes from), the audit log, schedules, secrets, dashboard
// sessions and the bot's follow state, on SQLite (the embedded default:
// one file, no server) or PostgreSQL (several Ferry instances). River's job
// tables live in the same database and hold every job's queue and run
// state; Open migrates them too, since the ledger's views read a job's
// status from them. Ferry's upgrades are ordered SQL files in migrations/,
// applied once each and recorded in ferry_schema.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/ferry-matrix/ferry/internal/sqlq"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Dialect of the database.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Store is an open state database.
type Store struct {
	DB      *sql.DB
	Dialect Dialect
	// Pool is the pgx pool (PostgreSQL only), for River's pgx driver.
	Pool *pgxpool.Pool
	path string // the SQLite database file ("" in memory or on PostgreSQL)
	now  func() time.Time
	seal *sealer
}

// Open opens a state database by URL: sqlite:///path/to/ferry.db (created
// if missing), sqlite://:memory: for tests, or postgres://... . It
// applies pending upgrades and seals secrets an older Ferry left in the
// clear (see KeyFile). A SQLite database and its -wal and -shm files are
// made mode 0600, also when an older Ferry created them 0644: they hold
// job requests, the audit log and (sealed) secrets.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := &Store{now: time.Now}
	dbPath := ""
	switch {
	case strings.HasPrefix(rawURL, "sqlite://"):
		path := strings.TrimPrefix(rawURL, "sqlite://")
		if path != ":memory:" {
			dbPath = path
			if o.existing {
				if _, err := os.Stat(path); err != nil {
					return nil, fmt.Errorf("state database: %w: start the bot (bot run or bot serve) once to create it", err)
				}
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return nil, err
			}
			if err := privateFiles(path); err != nil {
				return nil, err
			}
		}
		// Immediate transactions take the write lock at BEGIN, so two
		// instances serialise instead of failing halfway.
		dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_txlock=immediate"
		if path == ":memory:" {
			dsn = "file::memory:?_pragma=busy_timeout(10000)"
		}
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("state database: %w", err)
		}
		// SQLite allows one writer; River's SQLite driver asks for one connection.
		db.SetMaxOpenConns(1)
		s.DB, s.Dialect = db, SQLite
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		pool, err := pgxpool.New(ctx, rawURL)
		if err != nil {
			u, _ := url.Parse(rawURL)
			where := "the database"
			if u != nil {
				where = u.Redacted()
			}
			return nil, fmt.Errorf("state database %s: %w", where, err)
		}
		s.Pool, s.DB, s.Dialect = pool, stdlib.OpenDBFromPool(pool), Postgres
	default:
		return nil, fmt.Errorf("state database %q: use sqlite:///path/ferry.db or postgres://...", rawURL)
	}
	var err error
	s.path = dbPath
	if s.seal, err = openSealer(o, dbPath); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.DB.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("state database: %w", err)
	}
	if o.existing {
		if err := s.checkSchema(ctx); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	if err := s.upgrade(ctx, o.upgradeTo); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.migrateRiver(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if o.upgradeTo > 0 {
		return s, nil
	}
	if err := s.sealAtRest(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if dbPath != "" {
		if err := privateFiles(dbPath); err != nil { // the -wal and -shm files SQLite just made
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// privateFiles makes a SQLite database file (created empty if missing, so
// that SQLite never creates it with the umask's mode) and its journal
// files mode 0600. SQLite gives the -wal and -shm files it creates the
// database file's mode.
func privateFiles(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("state database: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil && st.Mode().Perm()&0o077 != 0 {
			err = os.Chmod(p, 0o600)
		}
		if err != nil {
			return fmt.Errorf("state database file %s must be mode 0600 (it holds job requests and the audit log): %w; chown it to Ferry's user", p, err)
		}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	err := s.DB.Close()
	if s.Pool != nil {
		s.Pool.Close()
	}
	return err
}

// q rewrites ? placeholders into $n for PostgreSQL.
func (s *Store) q(query string) string {
	if s.Dialect != Postgres {
		return query
	}
	return sqlq.Dollar(query)
}

// upgradeLock is the PostgreSQL advisory lock that serialises upgrades
// when several Ferry instances start at once.
const upgradeLock = 0x46657272 // "Ferr"

// upgrade applies the migrations not yet recorded, in order (up to
// version upTo, if not 0), in one transaction that holds off other
// instances doing the same (an advisory lock on PostgreSQL, an immediate
// write lock on SQLite), so that two instances starting together never
// apply one twice.
func (s *Store) upgrade(ctx context.Context, upTo int) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state database: %w", err)
	}
	defer tx.Rollback()
	if s.Dialect == Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, upgradeLock); err != nil {
			return fmt.Errorf("state database: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ferry_schema (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("state database: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version, err := strconv.Atoi(strings.SplitN(filepath.Base(name), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: file names start with a number", name)
		}
		var done int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM ferry_schema WHERE version = ?`), version).Scan(&done); err != nil {
			return err
		}
		if done > 0 || upTo > 0 && version > upTo {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		for _, stmt := range splitStatements(string(body)) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("state database upgrade %s: %w", filepath.Base(name), err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO ferry_schema (version, applied_at) VALUES (?, ?)`), version, s.now().UnixMilli()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// checkSchema refuses a database whose upgrades are not exactly this
// Ferry's (Existing).
func (s *Store) checkSchema(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	var have int
	if err := s.DB.QueryRowContext(ctx, `SELECT COALESCE(max(version), 0) FROM ferry_schema`).Scan(&have); err != nil {
		return fmt.Errorf("state database: %w: it is not one Ferry's bot made", err)
	}
	want := 0
	for _, name := range names {
		if v, err := strconv.Atoi(strings.SplitN(filepath.Base(name), "_", 2)[0]); err == nil {
			want = max(want, v)
		}
	}
	if have != want {
		return fmt.Errorf("the state database is at Ferry's schema %d, and this Ferry's is %d: run the same Ferry version as the bot (a bot started with this version upgrades its database)", have, want)
	}
	return nil
}

// riverLock is the PostgreSQL advisory lock that serialises River's
// migrations when several Ferry instances start at once.
const riverLock = 0x52697672 // "Rivr"

// migrateRiver creates or upgrades River's tables (river_job, ...): the
// ledger's reads join river_job for a job's run state. On SQLite it runs
// in one immediate transaction (two processes starting together
// serialise); on PostgreSQL under an advisory lock, since some of River's
// migrations cannot share one transaction.
func (s *Store) migrateRiver(ctx context.Context) error {
	switch s.Dialect {
	case SQLite:
		m, err := rivermigrate.New(riversqlite.New(s.DB), nil)
		if err != nil {
			return err
		}
		tx, err := s.DB.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("job tables: %w", err)
		}
		defer tx.Rollback()
		if _, err := m.MigrateTx(ctx, tx, rivermigrate.DirectionUp, nil); err != nil { //nolint:staticcheck // one transaction is what SQLite needs here
			return fmt.Errorf("job tables: %w", err)
		}
		return tx.Commit()
	default:
		conn, err := s.Pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("job tables: %w", err)
		}
		defer conn.Release()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, riverLock); err != nil {
			return fmt.Errorf("job tables: %w", err)
		}
		defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, riverLock)
		m, err := rivermigrate.New(riverpgxv5.New(s.Pool), nil)
		if err != nil {
			return err
		}
		if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
			return fmt.Errorf("job tables: %w", err)
		}
		return nil
	}
}

// splitStatements splits a migration file at semicolons ending a line,
// dropping comment lines.
func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		cur.WriteString(line + "\n")
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			if st := strings.TrimSpace(cur.String()); st != ";" {
				out = append(out, strings.TrimSuffix(st, ";"))
			}
			cur.Reset()
		}
	}
	if st := strings.TrimSpace(cur.String()); st != "" {
		out = append(out, st)
	}
	return out
}

// ErrNotFound: no such job.
var ErrNotFound = errors.New("no such export")
