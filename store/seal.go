package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Secrets at rest. The state database keeps two kinds of secret for a
// while: the key line of an unfinished encrypted export or of an import
// (ferry_jobs.archive_key, cleared when the job ends) and the identity
// of a personal export until its one-time link is used
// (ferry_secrets.secret). Both are sealed with AES-256-GCM under a key
// kept outside the database (Open's KeyFile, mode 0600), bound to their
// row, so that a copy of the database (a backup, a dump, a file left
// readable) gives none of them away.

// Option configures Open.
type Option func(*options)

type options struct {
	keyFile   string
	upgradeTo int
	existing  bool
}

// Existing makes Open open a database the bot made, as a tool beside the
// bot does (bot export --record): it creates nothing (no database file,
// no key file), upgrades nothing and seals nothing, and refuses a
// database whose schema is not this Ferry's, since a newer tool upgrading
// it would pull the tables from under a bot of the previous release.
func Existing() Option { return func(o *options) { o.existing = true } }

// UpgradeTo makes Open apply Ferry's upgrades up to version only, for
// tests that build the database a previous release left (then opened
// again without it, to upgrade). Such a Store holds a past schema: only
// its DB is for use, and it seals nothing.
func UpgradeTo(version int) Option { return func(o *options) { o.upgradeTo = version } }

// KeyFile is the file of the key that seals secrets in the database,
// created (0600) if missing. Every instance sharing a database needs the
// same file. Without it: state.key beside a SQLite database, and a key
// that lives as long as the Store for PostgreSQL and :memory: (what it
// sealed can't be read by another process).
func KeyFile(path string) Option { return func(o *options) { o.keyFile = path } }

// KeySize is the size of the keys LoadOrCreateKey makes.
const KeySize = 32

// LoadOrCreateKey reads the key file at path, creating one of KeySize
// random bytes (mode 0600) if it doesn't exist, and tightens a looser
// mode to 0600.
func LoadOrCreateKey(path string) ([]byte, error) {
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			if len(data) < KeySize {
				return nil, fmt.Errorf("key file %s is %d bytes; it needs %d: restore the file it was, or delete it to have a new one made (what it sealed or signed is then lost)", path, len(data), KeySize)
			}
			if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
				if err := os.Chmod(path, 0o600); err != nil {
					return nil, fmt.Errorf("key file %s is readable by others (%v) and can't be made 0600: %w", path, st.Mode().Perm(), err)
				}
			}
			return data, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		key := make([]byte, KeySize)
		rand.Read(key)
		// The key appears whole or not at all: written to a temporary file,
		// then linked to its name, which fails if another instance made it
		// first. (Creating the name and then writing let a concurrent start
		// read an empty key file.)
		tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
		if err != nil {
			return nil, fmt.Errorf("create key file: %w", err)
		}
		_, werr := tmp.Write(key)
		if werr == nil {
			werr = tmp.Sync()
		}
		if cerr := tmp.Close(); werr == nil {
			werr = cerr
		}
		if werr == nil {
			werr = os.Link(tmp.Name(), path)
		}
		os.Remove(tmp.Name())
		if errors.Is(werr, os.ErrExist) {
			continue // another instance made it just now: read theirs
		}
		if werr != nil {
			return nil, fmt.Errorf("write key file %s: %w", path, werr)
		}
		return key, nil
	}
}

// sealedPrefix marks a sealed value: "sealed1:" base64(nonce | ciphertext).
const sealedPrefix = "sealed1:"

type sealer struct {
	aead cipher.AEAD
	from string // where the key is, for messages
}

func newSealer(key []byte, from string) (*sealer, error) {
	block, err := aes.NewCipher(key[:KeySize])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, from: from}, nil
}

// openSealer loads the key Open was given (or its default) for dbPath
// ("" when the database is not a file).
func openSealer(o options, dbPath string) (*sealer, error) {
	path := o.keyFile
	if path == "" && dbPath != "" {
		path = filepath.Join(filepath.Dir(dbPath), "state.key")
	}
	if path == "" {
		key := make([]byte, KeySize)
		rand.Read(key)
		return newSealer(key, "a key of this process only (no key file given)")
	}
	if o.existing {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("state key: %w: give the key file the bot uses (state.key_file)", err)
		}
	}
	key, err := LoadOrCreateKey(path)
	if err != nil {
		return nil, fmt.Errorf("state key: %w", err)
	}
	return newSealer(key, path)
}

// seal seals plain for the row named by aad.
func (s *sealer) seal(plain, aad string) string {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(plain), []byte(aad)))
}

// ErrSealed: a sealed secret does not open with this Ferry's state key.
var ErrSealed = errors.New("a secret in the state database does not open with the state key")

func (s *sealer) open(stored, aad string) (string, error) {
	b64, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return "", fmt.Errorf("%w: it is not sealed", ErrSealed)
	}
	raw, err := base64.RawStdEncoding.DecodeString(b64)
	n := s.aead.NonceSize()
	if err != nil || len(raw) < n {
		return "", fmt.Errorf("%w: it is damaged", ErrSealed)
	}
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(aad))
	if err != nil {
		return "", fmt.Errorf("%w (%s): every Ferry instance sharing this database needs the same state.key_file", ErrSealed, s.from)
	}
	return string(plain), nil
}

// Row bindings of sealed values: a value moved to another row won't open.
// exportKeyAAD keeps the table's old name: key lines sealed before the
// ledger was renamed (007) still open.
func exportKeyAAD(id string) string     { return "ferry_exports.archive_key " + id }
func secretAAD(tokenHash string) string { return "ferry_secrets.secret " + tokenHash }

// sealAtRest seals the secrets an older Ferry stored in the clear, and
// checks that the sealed ones open with this key, so that a wrong key file
// is reported at start, not when a job resumes.
func (s *Store) sealAtRest(ctx context.Context) error {
	type row struct{ table, id, value string }
	var rows []row
	for _, q := range []struct{ table, query string }{
		{"ferry_jobs", `SELECT id, archive_key FROM ferry_jobs WHERE archive_key IS NOT NULL AND archive_key <> ''`},
		{"ferry_secrets", `SELECT token_hash, secret FROM ferry_secrets`},
	} {
		rs, err := s.DB.QueryContext(ctx, q.query)
		if err != nil {
			return fmt.Errorf("state database: %w", err)
		}
		for rs.Next() {
			r := row{table: q.table}
			if err := rs.Scan(&r.id, &r.value); err != nil {
				rs.Close()
				return err
			}
			rows = append(rows, r)
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
	}
	aad := func(r row) string {
		if r.table == "ferry_secrets" {
			return secretAAD(r.id)
		}
		return exportKeyAAD(r.id)
	}
	bad := 0
	for _, r := range rows {
		if strings.HasPrefix(r.value, sealedPrefix) {
			if _, err := s.seal.open(r.value, aad(r)); err != nil {
				bad++
			}
		}
	}
	if bad > 0 { // before sealing anything with what may be the wrong key
		return fmt.Errorf("%w (%s): %d stored secrets were sealed with another key. Use the key file they were sealed with (state.key_file; every instance sharing the database needs the same one)",
			ErrSealed, s.seal.from, bad)
	}
	for _, r := range rows {
		if strings.HasPrefix(r.value, sealedPrefix) {
			continue
		}
		update := `UPDATE ferry_jobs SET archive_key = ? WHERE id = ? AND archive_key = ?`
		if r.table == "ferry_secrets" {
			update = `UPDATE ferry_secrets SET secret = ? WHERE token_hash = ? AND secret = ?`
		}
		if _, err := s.DB.ExecContext(ctx, s.q(update), s.seal.seal(r.value, aad(r)), r.id, r.value); err != nil {
			return fmt.Errorf("state database: seal a stored secret: %w", err)
		}
	}
	return nil
}
