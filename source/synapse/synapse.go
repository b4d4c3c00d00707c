// Package synapse reads a Synapse homeserver — its PostgreSQL database,
// media store and signing key — as a source.Source.
//
// Everything is read inside one REPEATABLE READ READ ONLY transaction, so
// an export taken while Synapse runs describes one moment, and nothing is
// ever written. A long transaction on a busy primary holds back vacuum:
// point Ferry at a streaming replica for big servers (docs/SYNAPSE.md).
//
// The schema version and the columns of the tables read are looked up at
// start; optional columns (added by later Synapse versions) are read when
// present. Schemas 72 (Synapse 1.67) to 94 (1.157) are tested; a newer one
// exports with a warning, an older one than MinSchema is refused.
package synapse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"gocloud.dev/blob"

	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/source"
)

// Schema versions this package knows.
const (
	MinSchema    = 69 // Synapse 1.58: older ones lack tables this reader needs
	TestedSchema = 94 // the newest schema tested (Synapse 1.157)
)

// Config says where a Synapse server's data is.
type Config struct {
	// Database is a PostgreSQL URL; a read-only role is enough.
	Database string
	// MediaStore is media_store_path (a directory) or a bucket URL when
	// Synapse keeps media in object storage; empty exports no media files.
	MediaStore string
	// SigningKey is the path of the server's signing key file.
	SigningKey string
	// HomeserverConfig is the path of homeserver.yaml (optional): exported
	// to org.matrix.synapse/, and read for old signing keys and the
	// password pepper.
	HomeserverConfig string
}

// Source is an open Synapse export.
type Source struct {
	cfg  Config
	pcfg *pgx.ConnConfig
	conn *pgx.Conn
	// snapshotID is the exported snapshot helper connections share (empty
	// when the server cannot export one: exports then use one connection).
	snapshotID string
	tx         pgx.Tx
	media      *blob.Bucket
	info       source.Info
	cols       map[string]map[string]bool // table -> columns present
	keys       *signingKeys
	hsConf     *homeserverConfig
	// selectedEvents caches plan.countSelected's counts by selection.
	selectedEvents map[string]int64
}

// Open connects, starts the read-only snapshot and inspects the schema.
func Open(ctx context.Context, cfg Config) (*Source, error) {
	if cfg.Database == "" {
		return nil, errors.New("synapse: no database URL given (--db postgres://user@host/synapse)")
	}
	pcfg, err := parseDatabaseURL(cfg.Database)
	if err != nil {
		return nil, fmt.Errorf("synapse: database URL: %w", err)
	}
	pcfg.RuntimeParams["application_name"] = "ferry-export"
	// An export streams gigabytes from the server. pgx reads its socket
	// 8 KiB at a time; a 256 KiB buffer in front of it saves most of those
	// read calls (0.8 s of a 1M-event export's CPU went to them).
	pcfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, 256<<10), w)
	}
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("synapse: connect to %s: %w", pcfg.Host, err)
	}
	s := &Source{cfg: cfg, pcfg: pcfg, conn: conn, cols: map[string]map[string]bool{}}
	if err := s.begin(ctx); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	if err := s.inspect(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.keys, err = loadSigningKeys(cfg.SigningKey); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.HomeserverConfig != "" {
		if s.hsConf, err = loadHomeserverConfig(cfg.HomeserverConfig); err != nil {
			s.Close()
			return nil, err
		}
		if err := s.keys.addOld(s.hsConf.OldSigningKeys); err != nil {
			s.Close()
			return nil, err
		}
		if s.hsConf.ServerName != "" && s.keys.serverName == "" {
			s.keys.serverName = s.hsConf.ServerName
		}
		if s.hsConf.DefaultRoomVersion != "" {
			s.info.DefaultRoomVersion = s.hsConf.DefaultRoomVersion
		}
	}
	if err := s.detectServerName(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.MediaStore != "" {
		if s.media, err = openMediaStore(ctx, cfg.MediaStore); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func openMediaStore(ctx context.Context, loc string) (*blob.Bucket, error) {
	if strings.Contains(loc, "://") && !strings.HasPrefix(loc, "file://") {
		b, err := blob.OpenBucket(ctx, loc)
		if err != nil {
			return nil, fmt.Errorf("synapse: open media store %s: %w", loc, err)
		}
		return b, nil
	}
	b, err := container.OpenDirBucket(strings.TrimPrefix(loc, "file://"), false)
	if err != nil {
		return nil, fmt.Errorf("synapse: media store: %w", err)
	}
	return b, nil
}

// begin starts the export's transaction and exports its snapshot, so that
// a helper connection can read the same moment in parallel.
func (s *Source) begin(ctx context.Context) error {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	tx, err := s.conn.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("synapse: start the read-only snapshot: %w", err)
	}
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&s.snapshotID); err != nil {
		tx.Rollback(ctx) // e.g. a standby that cannot export snapshots
		s.snapshotID = ""
		if tx, err = s.conn.BeginTx(ctx, opts); err != nil {
			return fmt.Errorf("synapse: start the read-only snapshot: %w", err)
		}
	}
	s.tx = tx
	s.info.SnapshotTime = time.Now().UTC()
	return nil
}

// helper opens a second connection on the export's snapshot; nil when
// the snapshot cannot be shared. The caller closes it.
func (s *Source) helper(ctx context.Context) (*pgx.Conn, pgx.Tx, error) {
	if s.snapshotID == "" {
		return nil, nil, nil
	}
	conn, err := pgx.ConnectConfig(ctx, s.pcfg.Copy())
	if err != nil {
		return nil, nil, fmt.Errorf("synapse: second connection: %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil {
		_, err = tx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+strings.ReplaceAll(s.snapshotID, "'", "")+`'`)
	}
	if err != nil {
		conn.Close(ctx)
		return nil, nil, fmt.Errorf("synapse: second connection cannot share the snapshot: %w", err)
	}
	return conn, tx, nil
}

// databaseURLForm is the form a database URL takes, for messages.
const databaseURLForm = "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, for example postgres://synapse@db/synapse " +
	"(a password is better kept in PGPASSWORD or ~/.pgpass; an export needs only a read-only role, a restore the owner of the database), " +
	"or PostgreSQL's key=value form (host=db user=synapse dbname=synapse)"

// parseDatabaseURL parses a PostgreSQL connection string. Its errors say
// what is wrong and what form is expected, and never repeat a password;
// the user and host are shown, being no secret and where mistakes are.
func parseDatabaseURL(s string) (*pgx.ConnConfig, error) {
	if !strings.Contains(s, "://") {
		if !strings.Contains(s, "=") {
			return nil, fmt.Errorf("%q is not a PostgreSQL database URL: %s", redactUserinfo(s), databaseURLForm)
		}
		cfg, err := pgx.ParseConfig(s)
		if err != nil { // pgx's message would repeat the string, password= and all
			return nil, fmt.Errorf("the key=value connection string does not parse: %s", databaseURLForm)
		}
		return cfg, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL, which may hold a password
		}
		return nil, fmt.Errorf("%s is not a valid URL (%v): %s", redactUserinfo(s), err, databaseURLForm)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("%s is a %s:// URL, and Synapse's database must be PostgreSQL: %s", u.Redacted(), u.Scheme, databaseURLForm)
	}
	cfg, err := pgx.ParseConfig(s)
	if err != nil {
		return nil, fmt.Errorf("%s does not parse as a PostgreSQL URL (check the port and the parameters after ?): %s", u.Redacted(), databaseURLForm)
	}
	return cfg, nil
}

// redactUserinfo replaces the password of a URL-like string that net/url
// cannot parse: "postgres://user:secret@host/db" -> "postgres://user:xxxxx@host/db".
func redactUserinfo(s string) string {
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	end := len(s)
	if i := strings.IndexAny(s[start:], "/?#"); i >= 0 {
		end = start + i
	}
	at := strings.LastIndex(s[start:end], "@")
	if at < 0 {
		return s
	}
	at += start
	colon := strings.Index(s[start:at], ":")
	if colon < 0 {
		return s
	}
	return s[:start+colon+1] + "xxxxx" + s[at:]
}

func (s *Source) Info() source.Info { return s.info }

// Close ends the snapshot (rolling back: nothing was written) and closes
// the connection and media store.
func (s *Source) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.tx != nil {
		s.tx.Rollback(ctx)
	}
	if s.media != nil {
		s.media.Close()
	}
	if s.conn != nil {
		return s.conn.Close(ctx)
	}
	return nil
}

// tablesRead are the tables whose columns are looked up at start.
var tablesRead = []string{"events", "users", "profiles", "devices", "local_media_repository", "receipts_linearized",
	"redactions", "user_filters", "pushers", "current_state_events", "room_memberships", "e2e_cross_signing_keys",
	"access_tokens", "partial_state_rooms", "erased_users", "blocked_rooms", "user_threepids", "user_external_ids",
	"room_retention", "event_reports", "registration_tokens", "server_keys_json", "remote_media_cache", "rejections"}

func (s *Source) inspect(ctx context.Context) error {
	var version int
	var upgraded bool
	err := s.tx.QueryRow(ctx, `SELECT version, upgraded FROM schema_version`).Scan(&version, &upgraded)
	if err != nil {
		return fmt.Errorf("synapse: %w: no schema_version table (%v): is this a Synapse database?", source.ErrSchema, err)
	}
	s.info.Implementation = "synapse"
	s.info.SchemaVersion = version
	switch {
	case version < MinSchema:
		return fmt.Errorf("synapse: %w: schema %d is older than %d; upgrade Synapse (to 1.58 or later) first", source.ErrSchema, version, MinSchema)
	case version > TestedSchema:
		s.info.Warnings = append(s.info.Warnings, fmt.Sprintf("schema %d is newer than the newest tested (%d): exporting what this Ferry knows; check the fidelity report", version, TestedSchema))
	}
	rows, err := s.tx.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = ANY($1)`, tablesRead)
	if err != nil {
		return fmt.Errorf("synapse: read the schema: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			return err
		}
		if s.cols[t] == nil {
			s.cols[t] = map[string]bool{}
		}
		s.cols[t][c] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range []string{"users", "profiles", "devices", "current_state_events", "room_memberships", "redactions"} {
		if s.cols[t] == nil {
			return fmt.Errorf("synapse: %w: table %s is missing", source.ErrSchema, t)
		}
	}
	return nil
}

func (s *Source) has(table, column string) bool { return s.cols[table][column] }

// detectServerName takes the server name from the signing key config or,
// failing that, from the users table.
func (s *Source) detectServerName(ctx context.Context) error {
	name := s.keys.serverName
	if name == "" {
		var any string
		err := s.tx.QueryRow(ctx, `SELECT name FROM users ORDER BY name LIMIT 1`).Scan(&any)
		if err == nil {
			if i := strings.IndexByte(any, ':'); i > 0 {
				name = any[i+1:]
			}
		}
	}
	if name == "" {
		return errors.New("synapse: cannot tell the server name: pass homeserver.yaml (--synapse-config) or a signing key named <server>.signing.key")
	}
	s.info.ServerName = name
	s.keys.serverName = name
	return nil
}

// localpart of a local user ID.
func localpart(userID string) string {
	return strings.TrimPrefix(strings.SplitN(userID, ":", 2)[0], "@")
}
