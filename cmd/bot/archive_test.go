package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// writeKey stores an archive's plain key line for --key-file.
func writeKey(t *testing.T, dir string, key keywrap.Key, id string) string {
	p := filepath.Join(dir, "key.txt")
	if err := os.WriteFile(p, key.Encode(id), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The archive subcommands on an encrypted sample archive: decrypt to a
// packed plaintext file, verify, inspect, extract, and diff it against the
// original and against a copy with one changed field.
func TestArchiveCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := keywrap.New()
	src := filepath.Join(dir, "enc")
	keyFile := writeKey(t, dir, key, archivetest.WriteSample(t, src, key, 20))

	if err := run(ctx, []string{"archive", "verify", src}); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("verify without a key: %v", err)
	}
	plain := filepath.Join(dir, "plain.ferry")
	if err := run(ctx, []string{"archive", "decrypt", "--key-file", keyFile, src, plain}); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"archive", "decrypt", "--key-file", keyFile, src, plain}); err == nil {
		t.Fatal("decrypt overwrote an existing file")
	}
	out := filepath.Join(dir, "out")
	for _, args := range [][]string{
		{"archive", "verify", plain},
		{"archive", "verify", "--json", "--key-file", keyFile, src},
		{"archive", "inspect", "--json", plain},
		{"archive", "diff", "--key-file", keyFile, src, plain},
		{"archive", "extract", "--jsonl", plain, out},
	} {
		if err := run(ctx, args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	users, err := os.ReadFile(filepath.Join(out, "m.users", "users.1.jsonl"))
	if err != nil || !strings.Contains(string(users), `"user_id":"@bob:sample.ferry.test"`) {
		t.Fatalf("extracted users: %s %v", users, err)
	}
	for _, p := range []string{archive.MediaBlobPath("sample.ferry.test", "avatarbob", ""), archive.ManifestFile, archive.CoreFile} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Error(err)
		}
	}
	if err := run(ctx, []string{"archive", "extract", plain, out}); err == nil {
		t.Fatal("extract into a non-empty directory succeeded")
	}

	changed := filepath.Join(dir, "changed")
	archivetest.RewriteAt(t, changed, archivetest.Open(t, plain, archive.OpenOptions{}), func(_ string, rec any) (bool, error) {
		if u, ok := rec.(*archive.User); ok && u.Admin {
			u.Admin = false
		}
		return true, nil
	}, nil)
	if err := run(ctx, []string{"archive", "diff", plain, changed}); !errors.Is(err, errDiffer) || !strings.Contains(err.Error(), "1 differences") {
		t.Fatalf("diff of a changed archive: %v", err)
	}
}

func TestDecryptRefusesSecretsWithoutFlag(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := keywrap.New()
	src := filepath.Join(dir, "enc")
	id := archivetest.WriteSampleWith(t, src, key, 1, func(w *archive.Writer) {
		if err := w.Add(archive.SectionUsers, &archive.User{UserID: "@carol:sample.ferry.test", PasswordHash: "$2b$12$abcdefghijklmnopqrstuv"}); err != nil {
			t.Fatal(err)
		}
	})
	keyFile := writeKey(t, dir, key, id)
	err := run(ctx, []string{"archive", "decrypt", "--key-file", keyFile, src, filepath.Join(dir, "plain")})
	if err == nil || !strings.Contains(err.Error(), "--allow-secrets") || !strings.Contains(err.Error(), "password_hash") {
		t.Fatalf("decrypt of secrets without the flag: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "plain")); err == nil {
		t.Fatal("a refused decrypt left output behind")
	}
	if err := run(ctx, []string{"archive", "decrypt", "--allow-secrets", "--key-file", keyFile, src, filepath.Join(dir, "plain")}); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"archive", "verify", filepath.Join(dir, "plain")}); err != nil {
		t.Fatal(err)
	}
}

func TestBadCommandsAreExplained(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{{}, {"archive"}, {"archive", "bogus"}, {"archive", "verify"}, {"frobnicate"}, {"export", "--bogus"}} {
		err := run(ctx, args)
		if err == nil || !strings.Contains(err.Error(), "--help") {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// A key given to verify a plaintext archive is a mismatch: the report says
// the archive is not encrypted and verify fails; without the key it passes.
func TestVerifyWithKeyOfPlaintextArchive(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "plain")
	keyFile := writeKey(t, dir, keywrap.New(), archivetest.WriteSample(t, src, keywrap.Key{}, 1))
	for _, args := range [][]string{
		{"archive", "verify", "--key-file", keyFile, src},
		{"archive", "verify", "--json", "--key-file", keyFile, src},
	} {
		err := run(ctx, args)
		if err == nil || !strings.Contains(err.Error(), "the archive is not encrypted") || !strings.Contains(err.Error(), "--key-file") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if err := run(ctx, []string{"archive", "verify", src}); err != nil {
		t.Fatal(err)
	}
}

// A failed extract removes what it wrote, and the directory it created:
// here a blob the manifest does not allow, after a part it did extract.
func TestFailedExtractLeavesNothing(t *testing.T) {
	ctx := context.Background()
	hostile := filepath.Join("..", "..", "archive", "testdata", "hostile", "blob-beyond-count.ferry")
	out := filepath.Join(t.TempDir(), "out")
	err := run(ctx, []string{"archive", "extract", hostile, out})
	if err == nil || !strings.Contains(err.Error(), "one more than the 0 blobs") {
		t.Fatalf("extract of a hostile archive: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed extract left %s behind (%v)", out, err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.Mkdir(empty, 0o700)
	if err := run(ctx, []string{"archive", "extract", hostile, empty}); err == nil {
		t.Fatal("extract of a hostile archive succeeded")
	}
	if left, err := os.ReadDir(empty); err != nil || len(left) > 0 {
		t.Errorf("the failed extract left %d entries in the directory it was given (%v)", len(left), err)
	}
}

// keygen makes an identity an admin encrypts backups to: the recipient it
// prints wraps an archive's key, and the identity file opens the archive.
// It never overwrites a file.
func TestKeygenIdentityOpensArchives(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idFile := filepath.Join(dir, "identity.txt")
	var out bytes.Buffer
	if err := execute(ctx, []string{"archive", "keygen", "-o", idFile}, &out, os.Stderr); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(idFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the identity file: %v %v, want mode 0600", st, err)
	}
	recipients, err := keywrap.ParseRecipients([]string{strings.TrimSpace(out.String())})
	if err != nil {
		t.Fatalf("keygen printed %q: %v", out.String(), err)
	}
	key := keywrap.New()
	src := filepath.Join(dir, "archive")
	id := archivetest.WriteSample(t, src, key, 5)
	wrapped, err := keywrap.Wrap(key, id, recipients...)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "key.age"), wrapped, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"archive", "verify", "--identity", idFile, src}); err != nil {
		t.Errorf("verify with the new identity: %v", err)
	}
	before, _ := os.ReadFile(idFile)
	if err := execute(ctx, []string{"archive", "keygen", "-o", idFile}, &out, os.Stderr); err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Errorf("keygen over an existing file: %v", err)
	}
	if after, _ := os.ReadFile(idFile); !bytes.Equal(before, after) {
		t.Error("keygen changed an existing identity file")
	}
}

// A report of an archive nothing of which could be read says so, rather
// than counts of zero that read as an empty archive.
func TestValidationOfUnreadableArchive(t *testing.T) {
	m := &archive.Manifest{ArchiveID: "a1"}
	var out bytes.Buffer
	printValidation(&out, m, &archive.ValidationReport{Problems: []archive.Problem{{Severity: archive.SeverityError, Where: "part-00000000", Message: "part does not decrypt"}}})
	if got := out.String(); !strings.Contains(got, "no file could be read") || strings.Contains(got, "0 records") || !strings.Contains(got, "part does not decrypt") {
		t.Errorf("the report of an unreadable archive:\n%s", got)
	}
	out.Reset()
	printValidation(&out, m, &archive.ValidationReport{})
	if !strings.Contains(out.String(), "0 files, 0 records") {
		t.Errorf("the report of an empty, valid archive:\n%s", out.String())
	}
}
