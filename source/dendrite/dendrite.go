// Package dendrite reads a Dendrite homeserver (v0.15) — its databases on
// PostgreSQL or SQLite, media directory and signing key — as a
// source.Source. One query layer serves both engines (database/sql, with
// placeholders rewritten for PostgreSQL).
//
// Work in progress (issue 5): exported so far are accounts, profiles,
// devices, account data (push rules and tags are account data in Dendrite
// already), the server's keys, rooms, state snapshots, events (stored
// JSON, redacted ones already redacted by Dendrite), memberships and
// redactions, receipts, media with files and thumbnails, e2ee keys and key
// backups; selections by rooms, users and referenced media as
// source.Filter says. Not yet: invites of remote users, time-range
// selections (refused: Caps), resume cursors, progress counts.
//
// Consistency: each Dendrite component has its own database, so there is
// no single snapshot of the whole server. Each component database is read
// in its own read-only transaction (on SQLite a deferred read transaction
// in WAL mode: it does not block Dendrite's writers, but the WAL cannot be
// checkpointed past it while the export runs).
package dendrite

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/internal/sqlq"
	"github.com/ferry-matrix/ferry/source"
)

// Config is the part of dendrite.yaml that Ferry reads (the export here,
// the importer in importer/dendrite).
type Config struct {
	Global struct {
		ServerName     string `yaml:"server_name"`
		PrivateKey     string `yaml:"private_key"`
		OldPrivateKeys []struct {
			PrivateKey string `yaml:"private_key"`
			PublicKey  string `yaml:"public_key"`
			KeyID      string `yaml:"key_id"`
			ExpiredAt  int64  `yaml:"expired_at"`
		} `yaml:"old_private_keys"`
		Database dbConfig `yaml:"database"`
	} `yaml:"global"`
	KeyServer struct {
		Database dbConfig `yaml:"database"`
	} `yaml:"key_server"`
	SyncAPI struct {
		Database dbConfig `yaml:"database"`
	} `yaml:"sync_api"`
	UserAPI struct {
		AccountDatabase dbConfig `yaml:"account_database"`
	} `yaml:"user_api"`
	RoomServer struct {
		Database dbConfig `yaml:"database"`
	} `yaml:"room_server"`
	MediaAPI struct {
		Database dbConfig `yaml:"database"`
		BasePath string   `yaml:"base_path"`
	} `yaml:"media_api"`

	dir string // of dendrite.yaml, for relative paths
}

type dbConfig struct {
	ConnectionString string `yaml:"connection_string"`
}

// LoadConfig reads dendrite.yaml.
func LoadConfig(configPath string) (*Config, error) {
	data, err := os.ReadFile(configPath)
	if err != nil {
		return nil, fmt.Errorf("dendrite: config: %w", err)
	}
	c := &Config{dir: filepath.Dir(configPath)}
	if err := yaml.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("dendrite: config %s: %w", configPath, err)
	}
	if c.Global.ServerName == "" {
		return nil, fmt.Errorf("dendrite: %s has no global.server_name", configPath)
	}
	return c, nil
}

// Path resolves a path of the config (relative ones are relative to the
// config file's directory, as Dendrite started from there sees them).
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// KeyPath is the signing key file; MediaPath the media store directory.
func (c *Config) KeyPath() string   { return c.Path(c.Global.PrivateKey) }
func (c *Config) MediaPath() string { return c.Path(c.MediaAPI.BasePath) }

// Source is an open Dendrite export.
type Source struct {
	cfg        *Config
	info       source.Info
	userapi    *component
	roomserver *component
	syncapi    *component
	mediaapi   *component
	keyserver  *component
	// maxEventNID is the newest event when the export started.
	maxEventNID int64
	keyID       string
	priv        ed25519.PrivateKey
}

// component is one Dendrite database. On PostgreSQL it is read in one
// REPEATABLE READ READ ONLY transaction. On SQLite it is not: Dendrite
// keeps its SQLite files in rollback-journal mode, where a reader blocks
// every writer for as long as its transaction lasts (Dendrite's logins and
// sends then fail after its 10 s busy timeout: tested). So on SQLite each
// query is its own short read, big tables are read in pages, and the
// append-only tables are cut at the high-water marks taken at Open.
type component struct {
	db       *sql.DB
	tx       *sql.Tx // nil on SQLite
	postgres bool
}

func (c *component) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if c.tx != nil {
		return c.tx.QueryContext(ctx, c.q(query), args...)
	}
	return c.db.QueryContext(ctx, c.q(query), args...)
}

func (c *component) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if c.tx != nil {
		return c.tx.QueryRowContext(ctx, c.q(query), args...)
	}
	return c.db.QueryRowContext(ctx, c.q(query), args...)
}

// Open reads dendrite.yaml and opens the component databases.
func Open(ctx context.Context, configPath string) (*Source, error) {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg}
	s.info = source.Info{ServerName: s.cfg.Global.ServerName, Implementation: "dendrite", SnapshotTime: time.Now().UTC()}
	if err := s.loadKey(); err != nil {
		return nil, err
	}
	if s.userapi, err = s.open(ctx, s.cfg.UserAPI.AccountDatabase); err != nil {
		return nil, err
	}
	if s.roomserver, err = s.open(ctx, s.cfg.RoomServer.Database); err != nil {
		s.Close()
		return nil, err
	}
	if s.syncapi, err = s.open(ctx, s.cfg.SyncAPI.Database); err != nil {
		s.Close()
		return nil, err
	}
	if s.mediaapi, err = s.open(ctx, s.cfg.MediaAPI.Database); err != nil {
		s.Close()
		return nil, err
	}
	if s.keyserver, err = s.open(ctx, s.cfg.KeyServer.Database); err != nil {
		s.Close()
		return nil, err
	}
	// High-water marks: what the export includes of the append-only tables.
	if err := s.roomserver.queryRow(ctx, `SELECT COALESCE(max(event_nid), 0) FROM roomserver_events`).Scan(&s.maxEventNID); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Census counts the local accounts (without Dendrite's own "_server"
// account) and the rooms: an import target must have none of either.
func (s *Source) Census(ctx context.Context) (users, rooms int64, err error) {
	if err := s.userapi.queryRow(ctx, `SELECT COUNT(*) FROM userapi_accounts WHERE localpart <> '_server'`).Scan(&users); err != nil {
		return 0, 0, err
	}
	err = s.roomserver.queryRow(ctx, `SELECT COUNT(*) FROM roomserver_rooms`).Scan(&rooms)
	return users, rooms, err
}

func (s *Source) path(p string) string { return s.cfg.Path(p) }

// loadKey reads matrix_key.pem ("MATRIX PRIVATE KEY" block with a Key-ID
// header around the 32-byte ed25519 seed).
func (s *Source) loadKey() error {
	data, err := os.ReadFile(s.path(s.cfg.Global.PrivateKey))
	if err != nil {
		return fmt.Errorf("dendrite: signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "MATRIX PRIVATE KEY" || len(block.Bytes) != ed25519.SeedSize {
		return fmt.Errorf("dendrite: %s is not a MATRIX PRIVATE KEY file", s.cfg.Global.PrivateKey)
	}
	s.keyID = block.Headers["Key-ID"]
	if !strings.HasPrefix(s.keyID, "ed25519:") {
		return fmt.Errorf("dendrite: signing key has Key-ID %q, expected ed25519:...", s.keyID)
	}
	s.priv = ed25519.NewKeyFromSeed(block.Bytes)
	return nil
}

// open connects to a component's database (its own, or global.database).
func (s *Source) open(ctx context.Context, c dbConfig) (*component, error) {
	conn := c.ConnectionString
	if conn == "" {
		conn = s.cfg.Global.Database.ConnectionString
	}
	comp := &component{}
	var err error
	switch {
	case strings.HasPrefix(conn, "file:"):
		path := s.path(strings.TrimPrefix(strings.SplitN(conn, "?", 2)[0], "file:"))
		comp.db, err = sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	case strings.HasPrefix(conn, "postgres://"), strings.HasPrefix(conn, "postgresql://"):
		comp.postgres = true
		comp.db, err = sql.Open("pgx", conn)
	default:
		return nil, errors.New("dendrite: unsupported database connection string (use file:... or postgres://...)")
	}
	if err != nil {
		return nil, err
	}
	if comp.postgres {
		if comp.tx, err = comp.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}); err != nil {
			comp.db.Close()
			return nil, fmt.Errorf("dendrite: start a read-only transaction: %w", err)
		}
	} else if err := comp.db.PingContext(ctx); err != nil {
		comp.db.Close()
		if strings.Contains(err.Error(), "readonly database") {
			// A hot rollback journal: a writer died mid-transaction, and
			// reading needs the recovery that only a writer may do.
			return nil, fmt.Errorf("dendrite: open %s: the file has an unfinished transaction of a Dendrite (or import) that crashed, which Ferry, reading only, may not roll back: start Dendrite once and stop it, then retry (%w)", conn, err)
		}
		return nil, fmt.Errorf("dendrite: open %s: %w", conn, err)
	}
	return comp, nil
}

var _ = stdlib.GetDefaultDriver // registers "pgx" for database/sql

// q rewrites ? placeholders for PostgreSQL.
func (c *component) q(query string) string {
	if !c.postgres {
		return query
	}
	return sqlq.Dollar(query)
}

func (c *component) each(ctx context.Context, query string, args []any, fn func(*sql.Rows) error) error {
	rows, err := c.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (c *component) close() {
	if c == nil {
		return
	}
	if c.tx != nil {
		c.tx.Rollback()
	}
	c.db.Close()
}

func (s *Source) Info() source.Info { return s.info }

func (s *Source) Close() error {
	s.userapi.close()
	s.roomserver.close()
	s.syncapi.close()
	s.mediaapi.close()
	s.keyserver.close()
	return nil
}

// Dendrite account types (userapi: AccountType).
const (
	accountUser       = 1
	accountGuest      = 2
	accountAdmin      = 3
	accountAppservice = 4
)

// Caps are the Dendrite source's capabilities: rooms, users and
// referenced media as source.Filter says, no time range (Ferry does not
// read Dendrite's events by time yet).
func Caps() source.Capabilities {
	return source.Capabilities{Implementation: "dendrite", Rooms: true, Users: true, ReferencedMedia: true}
}

// Capabilities implements source.Source (Caps).
func (s *Source) Capabilities() source.Capabilities { return Caps() }

// Streams returns the export's streams in order.
func (s *Source) Streams(ctx context.Context, f source.Filter, o source.Options) ([]source.Stream, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if err := Caps().Check(f); err != nil {
		return nil, err
	}
	rooms, err := s.selectedRooms(ctx, f)
	if err != nil {
		return nil, err
	}
	sel := newRoomSet(rooms)
	var streams []source.Stream
	if len(f.Rooms) == 0 || len(f.Users) > 0 { // a rooms-only selection carries no accounts
		streams = append(streams, s.serverKeysStream(o), s.usersStream(f.Users, o), s.devicesStream(f.Users, o), s.e2eeStream(f.Users, o),
			s.backupsStream(f.Users, o), s.accountDataStream(f.Users, rooms))
	} else {
		streams = append(streams, s.serverKeysStream(o))
	}
	return append(streams, s.roomsStream(sel), s.membershipsStream(sel, f.Users), s.receiptsStream(sel, f.Users), s.snapshotsStream(sel),
		s.eventsStream(sel, o), s.redactionsStream(sel), s.mediaStream(f, sel)), nil
}

// selectedRooms returns the rooms a filter selects (nil: all): its rooms,
// which must exist, or without them those its users have a membership in.
func (s *Source) selectedRooms(ctx context.Context, f source.Filter) ([]string, error) {
	switch {
	case len(f.Rooms) > 0:
		known := map[string]bool{}
		err := s.roomserver.each(ctx, `SELECT room_id FROM roomserver_rooms`, nil, func(rows *sql.Rows) error {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			known[id] = true
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, r := range f.Rooms {
			if !known[r] {
				return nil, fmt.Errorf("room %s is not on this server (check the room ID, e.g. with the admin API)", r)
			}
		}
		return f.Rooms, nil
	case len(f.Users) > 0:
		rooms := []string{} // none: select nothing, not everything
		ph := strings.TrimSuffix(strings.Repeat("?,", len(f.Users)), ",")
		args := make([]any, len(f.Users))
		for i, u := range f.Users {
			args[i] = u
		}
		err := s.roomserver.each(ctx, `SELECT DISTINCT r.room_id FROM roomserver_membership m
			JOIN roomserver_rooms r ON r.room_nid = m.room_nid
			JOIN roomserver_event_state_keys k ON k.event_state_key_nid = m.target_nid
			WHERE k.event_state_key IN (`+ph+`) ORDER BY r.room_id`, args, func(rows *sql.Rows) error {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			rooms = append(rooms, id)
			return nil
		})
		return rooms, err
	}
	return nil, nil
}

func (s *Source) serverKeysStream(o source.Options) source.Stream {
	return source.Stream{Name: source.StreamServerKeys,
		Count: func(context.Context) (int64, error) { return 1 + int64(len(s.cfg.Global.OldPrivateKeys)), nil },
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			rec := &archive.ServerKey{ServerName: s.info.ServerName, KeyID: s.keyID, Kind: "own",
				PublicKey: base64.RawStdEncoding.EncodeToString(s.priv.Public().(ed25519.PublicKey))}
			if o.PrivateServerKey && o.Encrypted {
				rec.PrivateKey = s.priv.Seed()
			}
			if err := sink.Record(archive.SectionServerKeys, rec); err != nil {
				return err
			}
			for _, old := range s.cfg.Global.OldPrivateKeys {
				if old.KeyID == "" || old.PublicKey == "" {
					continue
				}
				if err := sink.Record(archive.SectionServerKeys, &archive.ServerKey{ServerName: s.info.ServerName, KeyID: old.KeyID,
					Kind: "own_old", PublicKey: old.PublicKey, ExpiredTS: old.ExpiredAt}); err != nil {
					return err
				}
			}
			return nil
		}}
}

// userFilter returns SQL and args selecting localparts (nil: all).
func (s *Source) userFilter(users []string) (string, []any) {
	if len(users) == 0 {
		return "1=1", nil
	}
	var ph []string
	var args []any
	for _, u := range users {
		if local, ok := strings.CutSuffix(strings.TrimPrefix(u, "@"), ":"+s.info.ServerName); ok {
			ph = append(ph, "?")
			args = append(args, local)
		}
	}
	if len(ph) == 0 {
		return "1=0", nil
	}
	return "a.localpart IN (" + strings.Join(ph, ",") + ")", args
}

func (s *Source) usersStream(users []string, o source.Options) source.Stream {
	cond, args := s.userFilter(users)
	query := `SELECT a.localpart, a.created_ts, COALESCE(a.password_hash, ''), COALESCE(a.appservice_id, ''), COALESCE(a.is_deactivated, false),
		a.account_type, COALESCE(p.display_name, ''), COALESCE(p.avatar_url, '')
		FROM userapi_accounts a LEFT JOIN userapi_profiles p ON p.localpart = a.localpart AND p.server_name = a.server_name
		WHERE a.server_name = ? AND ` + cond + ` ORDER BY a.localpart`
	return source.Stream{Name: source.StreamUsers,
		Count: func(ctx context.Context) (int64, error) {
			var n int64
			err := s.userapi.queryRow(ctx, `SELECT count(*) FROM userapi_accounts a WHERE a.server_name = ? AND `+cond,
				append([]any{s.info.ServerName}, args...)...).Scan(&n)
			return n, err
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			left := 0
			err := s.userapi.each(ctx, query, append([]any{s.info.ServerName}, args...), func(rows *sql.Rows) error {
				var u archive.User
				var local, hash string
				var typ int
				if err := rows.Scan(&local, &u.CreatedTS, &hash, &u.AppserviceID, &u.Deactivated, &typ, &u.DisplayName, &u.AvatarURL); err != nil {
					return err
				}
				if local == "_server" {
					return nil // Dendrite's own server-notices account, recreated by any Dendrite
				}
				u.UserID = "@" + local + ":" + s.info.ServerName
				u.Admin, u.Guest = typ == accountAdmin, typ == accountGuest
				if typ == accountAppservice {
					u.UserType = "bot"
				}
				if hash != "" {
					if o.Encrypted {
						u.PasswordHash = hash
					} else {
						left++
					}
				}
				return sink.Record(archive.SectionUsers, &u)
			})
			if err != nil {
				return err
			}
			if left > 0 {
				return sink.Omit(archive.Omission{Code: "excluded_by_default", Item: archive.SectionUsers + "#password_hash",
					Detail: fmt.Sprintf("%d password hashes left out: exported only into encrypted archives", left)})
			}
			return nil
		}}
}

func (s *Source) devicesStream(users []string, o source.Options) source.Stream {
	cond, args := s.userFilter(users)
	query := `SELECT a.localpart, a.device_id, COALESCE(a.display_name, ''), COALESCE(a.last_seen_ts, 0), COALESCE(a.ip, ''),
		COALESCE(a.user_agent, ''), a.access_token FROM userapi_devices a
		WHERE a.server_name = ? AND a.localpart <> '_server' AND ` + cond + ` ORDER BY a.localpart, a.device_id`
	return source.Stream{Name: source.StreamDevices,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			left := 0
			err := s.userapi.each(ctx, query, append([]any{s.info.ServerName}, args...), func(rows *sql.Rows) error {
				var d archive.Device
				var local, token string
				if err := rows.Scan(&local, &d.DeviceID, &d.DisplayName, &d.LastSeenTS, &d.LastSeenIP, &d.UserAgent, &token); err != nil {
					return err
				}
				d.UserID = "@" + local + ":" + s.info.ServerName
				if o.AccessTokens && o.Encrypted {
					d.AccessTokens = []archive.AccessToken{{Token: token}}
				} else {
					left++
				}
				return sink.Record(archive.SectionDevices, &d)
			})
			if err != nil {
				return err
			}
			if left > 0 {
				return sink.Omit(archive.Omission{Code: "excluded_by_default", Item: archive.SectionDevices + "#access_tokens",
					Detail: fmt.Sprintf("access tokens of %d devices left out: exported only with the access_tokens option into encrypted archives", left)})
			}
			return nil
		}}
}

// accountDataStream exports account data as Dendrite stores it: push
// rules (m.push_rules) and tags (m.tag) are account data already.
func (s *Source) accountDataStream(users, rooms []string) source.Stream {
	cond, args := s.userFilter(users)
	query := `SELECT a.localpart, COALESCE(a.room_id, ''), a.type, a.content FROM userapi_account_datas a
		WHERE a.server_name = ? AND a.localpart <> '_server' AND ` + cond + ` ORDER BY a.localpart, a.room_id, a.type`
	return source.Stream{Name: source.StreamAccountData,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			return s.userapi.each(ctx, query, append([]any{s.info.ServerName}, args...), func(rows *sql.Rows) error {
				var a archive.AccountData
				var local, content string
				if err := rows.Scan(&local, &a.RoomID, &a.Type, &content); err != nil {
					return err
				}
				if len(rooms) > 0 && a.RoomID != "" && !contains(rooms, a.RoomID) {
					return nil
				}
				a.UserID = "@" + local + ":" + s.info.ServerName
				a.Content = []byte(content)
				return sink.Record(archive.SectionAccountData, &a)
			})
		}}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
