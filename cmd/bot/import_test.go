package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	sdendrite "github.com/ferry-matrix/ferry/source/dendrite"
)

// emptyDendrite is an import target: a Dendrite that initialised its
// databases once and was stopped.
func emptyDendrite(t *testing.T, name string) *testenv.Dendrite {
	t.Helper()
	d := testenv.NewDendrite(t, name)
	d.Start(t)
	d.Stop()
	return d
}

// untouched fails the test if an import wrote anything into d: its key
// file, its users and rooms, its import marker.
func untouched(t *testing.T, d *testenv.Dendrite, key []byte, users int64) {
	t.Helper()
	now, _ := os.ReadFile(filepath.Join(d.Dir, "matrix_key.pem"))
	if string(now) != string(key) {
		t.Error("the signing key was replaced")
	}
	if _, err := os.Stat(filepath.Join(d.Dir, "ferry-import.json")); err == nil {
		t.Error("an import marker was written")
	}
	src, err := sdendrite.Open(context.Background(), d.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	u, r, err := src.Census(context.Background())
	if err != nil || u != users || r != 0 {
		t.Errorf("the target now has %d users and %d rooms (%v), want %d and 0", u, r, err, users)
	}
}

// bot export --source dendrite and bot import --target dendrite end to end,
// and every bad input refused before anything is written, with a message
// that says what to do.
func TestImportCommand(t *testing.T) {
	ctx := context.Background()
	const name = "cli.ferry.test"
	src := testenv.StartDendrite(t, name)
	if _, err := seed.Run(ctx, seed.Server{URL: src.URL, ServerName: name,
		Register: func(l, pw string, admin bool) (string, error) { return src.Register(t, l, pw, admin), nil }}); err != nil {
		t.Fatal(err)
	}
	src.Stop()
	dir := t.TempDir()
	t.Setenv("FERRY_TEST_PASS", "a long enough passphrase")
	enc, plain := filepath.Join(dir, "enc"), filepath.Join(dir, "plain")
	if err := run(ctx, []string{"export", "--quiet", "--source", "dendrite", "--config", src.Config(), "--migration",
		"--passphrase-env", "FERRY_TEST_PASS", "--to", enc}); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"export", "--quiet", "--source", "dendrite", "--config", src.Config(), "--plaintext", "--to", plain}); err != nil {
		t.Fatal(err)
	}
	newer, corrupt := filepath.Join(dir, "newer"), filepath.Join(dir, "corrupt")
	for _, d := range []string{newer, corrupt} {
		if err := os.CopyFS(d, os.DirFS(plain)); err != nil {
			t.Fatal(err)
		}
	}
	archivetest.EditManifest(t, newer, func(m map[string]any) { m["version"] = 2 })
	parts, _ := filepath.Glob(filepath.Join(corrupt, "part-*"))
	data, _ := os.ReadFile(parts[0])
	data[len(data)/2] ^= 0x40
	os.WriteFile(parts[0], data, 0o600)

	target := emptyDendrite(t, name)
	targetKey, _ := os.ReadFile(filepath.Join(target.Dir, "matrix_key.pem"))
	other := emptyDendrite(t, "other.ferry.test")
	otherKey, _ := os.ReadFile(filepath.Join(other.Dir, "matrix_key.pem"))
	busy := testenv.NewDendrite(t, name)
	busy.Start(t)
	busy.Register(t, "someone", "someone-password-1", false)
	busy.Stop()
	busyKey, _ := os.ReadFile(filepath.Join(busy.Dir, "matrix_key.pem"))

	imp := func(d *testenv.Dendrite, extra ...string) error {
		return run(ctx, append([]string{"import", "--quiet", "--target", "dendrite", "--config", d.Config()}, extra...))
	}
	for _, tc := range []struct {
		name   string
		target *testenv.Dendrite
		key    []byte
		users  int64
		args   []string
		want   string
	}{
		{"another server name", other, otherKey, 0, []string{"--passphrase-env", "FERRY_TEST_PASS", enc}, "only be imported into a server of the same name"},
		{"non-empty target", busy, busyKey, 1, []string{"--passphrase-env", "FERRY_TEST_PASS", enc}, "not empty"},
		{"newer major version", target, targetKey, 0, []string{newer}, "upgrade Ferry"},
		{"corrupted archive", target, targetKey, 0, []string{corrupt}, "refused"},
		{"wrong key", target, targetKey, 0, []string{"--passphrase-env", "WRONG_PASS", enc}, "refused before any write"},
		{"migration from a plaintext archive", target, targetKey, 0, []string{"--migration", plain}, "needs an encrypted archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WRONG_PASS", "not the passphrase at all")
			err := imp(tc.target, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one saying %q", err, tc.want)
			}
			t.Logf("refused: %v", err)
			untouched(t, tc.target, tc.key, tc.users)
		})
	}

	if err := imp(target, "--dry-run", "--passphrase-env", "FERRY_TEST_PASS", enc); err != nil {
		t.Fatal(err)
	}
	untouched(t, target, targetKey, 0)

	// The real import, then the same again: a rerun changes nothing.
	if err := imp(target, "--migration", "--passphrase-env", "FERRY_TEST_PASS", enc); err != nil {
		t.Fatal(err)
	}
	again, err := sdendrite.Open(ctx, target.Config())
	if err != nil {
		t.Fatal(err)
	}
	users, rooms, _ := again.Census(ctx)
	again.Close()
	if users != 3 || rooms != 2 {
		t.Fatalf("after the import: %d users, %d rooms", users, rooms)
	}
	if err := imp(target, "--migration", "--passphrase-env", "FERRY_TEST_PASS", enc); err != nil {
		t.Fatalf("rerun: %v", err)
	}
}

// bot generate-registration writes the registration from the config, 0600,
// and refuses the example's placeholder tokens.
func TestGenerateRegistration(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(strings.NewReplacer("CHANGE_ME_as_token", "as-secret-1", "CHANGE_ME_hs_token", "hs-secret-2").Replace(string(config.Example))), 0o600)
	out := filepath.Join(dir, "registration.yaml")
	if err := run(context.Background(), []string{"generate-registration", "-c", cfg, "-o", out}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	data, _ := os.ReadFile(out)
	if err != nil || st.Mode().Perm() != 0o600 || !strings.Contains(string(data), "hs_token: hs-secret-2") || !strings.Contains(string(data), `^@ferry:example\.org$`) {
		t.Fatalf("registration (%v, %v):\n%s", err, st.Mode(), data)
	}
	os.WriteFile(cfg, config.Example, 0o600)
	if err := run(context.Background(), []string{"-g", "-c", cfg, "-o", out}); err == nil || !strings.Contains(err.Error(), "random values") {
		t.Fatalf("placeholder tokens: %v", err)
	}
}
