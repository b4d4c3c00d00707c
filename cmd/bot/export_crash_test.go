package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// exportCrashOut names the output of TestExportCrashChild's export.
const exportCrashOut = "FERRY_EXPORT_CRASH_OUT"

// TestExportCrashChild is not a test of its own: TestExportResumesAfterKill
// runs the test binary again with it, as the bot export that is killed.
// Past user 1500 it says so in OUT.ready and waits to be killed.
func TestExportCrashChild(t *testing.T) {
	out := os.Getenv(exportCrashOut)
	if out == "" {
		t.Skip("helper process for TestExportResumesAfterKill")
	}
	wrap, err := (&keyChoice{passphraseEnv: "FERRY_TEST_PASS"}).resolve()
	if err != nil {
		t.Fatal(err)
	}
	src := &sourcetest.Fake{Users: 3000, OnUser: func(i int) error {
		if i == 1500 {
			if err := os.WriteFile(out+".ready", nil, 0o600); err != nil {
				return err
			}
			time.Sleep(time.Minute) // killed long before this
		}
		return nil
	}}
	err = (&exportFlags{impl: "fake", quiet: true, partSize: 16 << 10}).export(context.Background(), src, out, wrap, true)
	t.Fatalf("the export was not killed: %v", err)
}

// kill -9 of a bot export midway (no deferred clean-up runs); the same
// export run again resumes from its last complete part and writes an
// archive that verifies and equals an uninterrupted one.
func TestExportResumesAfterKill(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("FERRY_TEST_PASS", "a long enough passphrase")
	wrap, err := (&keyChoice{passphraseEnv: "FERRY_TEST_PASS"}).resolve()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "killed.ferry")
	child := exec.Command(os.Args[0], "-test.run=^TestExportCrashChild$")
	child.Env = append(os.Environ(), exportCrashOut+"="+out)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(out + ".ready"); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the child export ended before it was killed: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatal("the child export never reached user 1500")
		}
	}
	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-done
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a killed export left the archive file")
	}

	resumed := &sourcetest.Fake{Users: 3000}
	if err := (&exportFlags{impl: "fake", quiet: true, partSize: 16 << 10}).export(ctx, resumed, out, wrap, true); err != nil {
		t.Fatal(err)
	}
	if starts := resumed.Starts(); len(starts) != 1 || starts[0] == 0 || starts[0] > 1500 {
		t.Fatalf("the rerun did not resume from a checkpoint: it started at %v", starts)
	}
	whole := filepath.Join(dir, "whole.ferry")
	if err := (&exportFlags{impl: "fake", quiet: true}).export(ctx, &sourcetest.Fake{Users: 3000}, whole, wrap, true); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"archive", "verify", "--passphrase-env", "FERRY_TEST_PASS", out}); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"archive", "diff", "--passphrase-env", "FERRY_TEST_PASS", whole, out}); err != nil {
		t.Fatalf("the resumed archive differs from an uninterrupted one: %v", err)
	}
}
