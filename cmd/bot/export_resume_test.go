package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// An interrupted bot export resumes when the same command runs again: a
// packed, passphrase-encrypted export cancelled midway (after some parts
// were committed) leaves its staging directory and checkpoint beside the
// output and no archive; the rerun continues from the last complete part
// and writes an archive that verifies and holds what an uninterrupted
// export holds (bot archive diff). A rerun with another selection is
// refused instead of mixed in.
func TestExportResumesAfterInterruption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("FERRY_TEST_PASS", "a long enough passphrase")
	kc := &keyChoice{passphraseEnv: "FERRY_TEST_PASS"}
	wrap, err := kc.resolve()
	if err != nil {
		t.Fatal(err)
	}
	const users = 3000
	flags := func() *exportFlags { return &exportFlags{impl: "fake", quiet: true, partSize: 16 << 10} }

	whole := filepath.Join(dir, "whole.ferry")
	if err := flags().export(ctx, &sourcetest.Fake{Users: users}, whole, wrap, true); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "resumed.ferry")
	cancelled, cancel := context.WithCancel(ctx)
	defer cancel()
	errStop := errors.New("interrupted by the test")
	first := &sourcetest.Fake{Users: users, OnUser: func(i int) error {
		if i == 1700 {
			cancel() // as Ctrl-C does
			return errStop
		}
		return nil
	}}
	err = flags().export(cancelled, first, out, wrap, true)
	if err == nil || !strings.Contains(err.Error(), "run the same command again to resume") {
		t.Fatalf("interrupted export: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("an interrupted export left the archive file")
	}
	// It holds the archive key until the export is done: for the user only.
	if st, err := os.Stat(filepath.Join(out+".partial", checkpointFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("no private checkpoint beside the interrupted export: %v %v", st, err)
	}

	// Another selection is not mixed into the interrupted archive.
	other := flags()
	other.sel.Media = "none"
	if err := other.export(ctx, &sourcetest.Fake{Users: users}, out, wrap, true); err == nil || !strings.Contains(err.Error(), "something else") {
		t.Fatalf("a rerun with another selection: %v", err)
	}

	second := &sourcetest.Fake{Users: users}
	f := flags()
	if err := f.export(ctx, second, out, wrap, true); err != nil {
		t.Fatal(err)
	}
	if starts := second.Starts(); len(starts) != 1 || starts[0] == 0 || starts[0] > 1700 {
		t.Fatalf("the rerun did not resume from a checkpoint: it started at %v", starts)
	}
	if f.result == nil || f.result.KeyFile != out+".key.age" {
		t.Fatalf("result: %+v", f.result)
	}
	if _, err := os.Stat(out + ".partial"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the staging directory is left after the resumed export: %v", err)
	}
	if err := run(ctx, []string{"archive", "verify", "--passphrase-env", "FERRY_TEST_PASS", out}); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"archive", "diff", "--passphrase-env", "FERRY_TEST_PASS", whole, out}); err != nil {
		t.Fatalf("the resumed archive differs from an uninterrupted one: %v", err)
	}
}

// A directory output resumes the same way, its checkpoint inside it; a
// directory that holds another archive (no checkpoint) is still refused.
func TestExportResumesIntoDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "stored")
	cancelled, first := interruptedAt(t, 2000, 900)
	f := &exportFlags{impl: "fake", quiet: true, partSize: 16 << 10}
	if err := f.export(cancelled, first, out, nil, true); err == nil {
		t.Fatal("the interrupted export succeeded")
	}
	if err := run(ctx, []string{"archive", "verify", out}); err == nil {
		t.Fatal("an interrupted export looks complete")
	}
	second := &sourcetest.Fake{Users: 2000}
	if err := f.export(ctx, second, out, nil, true); err != nil {
		t.Fatal(err)
	}
	if starts := second.Starts(); len(starts) != 1 || starts[0] == 0 {
		t.Fatalf("the rerun did not resume: it started at %v", starts)
	}
	if _, err := os.Stat(filepath.Join(out, checkpointFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the checkpoint is left after the export: %v", err)
	}
	if err := run(ctx, []string{"archive", "verify", out}); err != nil {
		t.Fatal(err)
	}
	if err := f.export(ctx, &sourcetest.Fake{Users: 10}, out, nil, true); err == nil || !strings.Contains(err.Error(), "already holds an archive") {
		t.Fatalf("an export over a finished archive: %v", err)
	}
}

// A bucket URL resumes too, its checkpoint (which holds the key) in the
// user's cache directory rather than in the bucket beside the parts.
func TestExportResumesIntoBucket(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("HOME", cache)
	t.Setenv("FERRY_TEST_PASS", "a long enough passphrase")
	wrap, err := (&keyChoice{passphraseEnv: "FERRY_TEST_PASS"}).resolve()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := "file://" + dir
	cancelled, first := interruptedAt(t, 2000, 1100)
	f := &exportFlags{impl: "fake", quiet: true, partSize: 16 << 10}
	err = f.export(cancelled, first, out, wrap, true)
	if err == nil || !strings.Contains(err.Error(), "and the parts under "+out) {
		t.Fatalf("interrupted export: %v", err)
	}
	checkpoints, _ := filepath.Glob(filepath.Join(cache, "ferry", "exports", "*.json"))
	if len(checkpoints) != 1 {
		t.Fatalf("checkpoints in the cache: %v", checkpoints)
	}
	if leaked, _ := filepath.Glob(filepath.Join(dir, "*checkpoint*")); len(leaked) != 0 {
		t.Fatalf("the checkpoint (and its key) is in the bucket: %v", leaked)
	}
	second := &sourcetest.Fake{Users: 2000}
	if err := f.export(ctx, second, out, wrap, true); err != nil {
		t.Fatal(err)
	}
	if starts := second.Starts(); len(starts) != 1 || starts[0] == 0 {
		t.Fatalf("the rerun did not resume: it started at %v", starts)
	}
	if _, err := os.Stat(checkpoints[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the checkpoint is left after the export: %v", err)
	}
	if err := run(ctx, []string{"archive", "verify", "--passphrase-env", "FERRY_TEST_PASS", out}); err != nil {
		t.Fatal(err)
	}
}

// interruptedAt is a fake source of users that cancels its export's
// context (as Ctrl-C does) when it reaches user at.
func interruptedAt(t *testing.T, users, at int) (context.Context, *sourcetest.Fake) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, &sourcetest.Fake{Users: users, OnUser: func(i int) error {
		if i == at {
			cancel()
			return context.Canceled
		}
		return nil
	}}
}

// An interrupted export whose parts were removed since starts afresh
// (its checkpoint names parts that are gone) instead of writing an
// archive with a hole.
func TestExportStartsAfreshWithoutParts(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "stored")
	cancelled, first := interruptedAt(t, 2000, 900)
	f := &exportFlags{impl: "fake", quiet: true, partSize: 16 << 10}
	if err := f.export(cancelled, first, out, nil, true); err == nil {
		t.Fatal("the interrupted export succeeded")
	}
	parts, _ := filepath.Glob(filepath.Join(out, "part-*"))
	if len(parts) == 0 {
		t.Fatal("no part was committed before the interruption")
	}
	for _, p := range parts {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	again := &sourcetest.Fake{Users: 2000}
	if err := f.export(ctx, again, out, nil, true); err != nil {
		t.Fatal(err)
	}
	if starts := again.Starts(); len(starts) != 1 || starts[0] != 0 {
		t.Fatalf("the rerun started at %v, not afresh", starts)
	}
	if err := run(ctx, []string{"archive", "verify", out}); err != nil {
		t.Fatal(err)
	}
}
