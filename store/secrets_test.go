package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ferry.db, its -wal and -shm files and the state key are mode 0600, on a
// new install and on one an older Ferry made 0644.
func TestDatabaseFilesArePrivate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "ferry.db")
	files := []string{db, db + "-wal", db + "-shm", filepath.Join(dir, "state.key")}
	check := func(when string) {
		t.Helper()
		for _, f := range files {
			st, err := os.Stat(f)
			if err != nil {
				t.Errorf("%s: %v", when, err)
			} else if st.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s is mode %v, want 0600", when, filepath.Base(f), st.Mode().Perm())
			}
		}
	}
	open := func() *Store {
		t.Helper()
		s, err := Open(ctx, "sqlite://"+db)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PutSecret(ctx, "t-"+time.Now().String(), "AGE-SECRET-KEY-1X", "mydata @a:x", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	check("new install")
	// An older Ferry's install: everything 0644 (the database open, as
	// when Ferry is upgraded in place and restarted).
	for _, f := range files {
		os.Chmod(f, 0o644)
	}
	s.Close()
	os.Chmod(db, 0o644)
	s = open()
	defer s.Close()
	check("an install made 0644")
}

// Key lines and unrevealed identities are sealed in the database with the
// key file's key; rows an older Ferry wrote in the clear are sealed when
// the database is opened; another key file is refused at open.
func TestSecretsSealedAtRest(t *testing.T) {
	eachURL(t, func(t *testing.T, dir, url string) {
		ctx := context.Background()
		keyFile := filepath.Join(dir, "state.key")
		open := func(key string) (*Store, error) { return Open(ctx, url, KeyFile(key)) }
		s, err := open(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		const identity, keyLine, importKey = "AGE-SECRET-KEY-1SEALEDTEST", "ferry-archive-key v1 abc KEYBYTES", "ferry-archive-key v1 def IMPORTKEY"
		if err := s.PutSecret(ctx, "tok-1", identity, "mydata @bob:x", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateExport(ctx, &Export{ID: "imp-1", Kind: KindImport, RequestedBy: "cli", Via: "api", Request: "{}", ArchiveKey: importKey}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateExport(ctx, &Export{ID: "exp-1", Kind: KindExport, RequestedBy: "cli", Via: "api", Request: "{}"}); err != nil {
			t.Fatal(err)
		}
		token, err := s.Claim(ctx, "exp-1", 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.StartArchive(ctx, "exp-1", token, "abc", keyLine); err != nil {
			t.Fatal(err)
		}
		// What a copy of the database shows: no secret.
		raw := dump(t, s)
		for _, secret := range []string{identity, keyLine, importKey, "KEYBYTES", "IMPORTKEY", "SEALEDTEST"} {
			if strings.Contains(raw, secret) {
				t.Errorf("%q is stored in the clear", secret)
			}
		}
		for id, want := range map[string]string{"imp-1": importKey, "exp-1": keyLine} {
			if e, err := s.GetExport(ctx, id); err != nil || e.ArchiveKey != want {
				t.Errorf("%s: key %q %v, want %q", id, e.ArchiveKey, err, want)
			}
		}
		// A sealed value moved to another row does not open.
		s.DB.ExecContext(ctx, s.q(`UPDATE ferry_jobs SET archive_key = (SELECT archive_key FROM ferry_jobs WHERE id = 'exp-1') WHERE id = 'imp-1'`))
		if _, err := s.GetExport(ctx, "imp-1"); !errors.Is(err, ErrSealed) {
			t.Errorf("a key line moved to another job: %v", err)
		}
		s.End(ctx, "imp-1", Result{Status: StatusFailed})
		// An older Ferry's rows, in the clear.
		if _, err := s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_secrets (token_hash, secret, purpose, expires_at) VALUES (?, ?, ?, ?)`),
			tokenHash("tok-old"), "AGE-SECRET-KEY-1OLDCLEAR", "mydata @carol:x", time.Now().Add(time.Hour).UnixMilli()); err != nil {
			t.Fatal(err)
		}
		s.DB.ExecContext(ctx, s.q(`UPDATE ferry_jobs SET archive_key = ? WHERE id = 'exp-1'`), "ferry-archive-key v1 abc OLDCLEARKEY")
		s.Close()

		// Another key file: refused at open, saying what to do.
		if _, err := open(filepath.Join(dir, "other.key")); !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "state.key_file") {
			t.Errorf("another key file: %v", err)
		}
		s, err = open(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if raw := dump(t, s); strings.Contains(raw, "OLDCLEAR") {
			t.Error("an older Ferry's secrets are still in the clear after open")
		}
		if e, err := s.GetExport(ctx, "exp-1"); err != nil || e.ArchiveKey != "ferry-archive-key v1 abc OLDCLEARKEY" {
			t.Errorf("the resealed key line: %q %v", e.ArchiveKey, err)
		}
		for tok, want := range map[string]string{"tok-1": identity, "tok-old": "AGE-SECRET-KEY-1OLDCLEAR"} {
			if got, _, err := s.RevealSecret(ctx, tok); err != nil || got != want {
				t.Errorf("reveal %s: %q %v, want %q", tok, got, err, want)
			}
		}
		if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("key file: %v %v", st, err)
		}
	})
}

// dump is every secret-holding column of the database, as a copy shows it.
func dump(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{`SELECT COALESCE(archive_key, '') FROM ferry_jobs`, `SELECT secret FROM ferry_secrets`} {
		rows, err := s.DB.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var v string
			rows.Scan(&v)
			b.WriteString(v + "\n")
		}
		rows.Close()
	}
	return b.String()
}
