package jobs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// crashEnv names what the child process of TestCrashAndResume uses.
const (
	crashDB      = "FERRY_CRASH_DB"
	crashStorage = "FERRY_CRASH_STORAGE"
	crashRecip   = "FERRY_CRASH_RECIPIENT"
)

// TestCrashChild is not a test of its own: TestCrashAndResume runs the
// test binary again with it, as the process that gets killed.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashDB) == "" {
		t.Skip("helper process for TestCrashAndResume")
	}
	ctx := context.Background()
	svc := crashService(t, os.Getenv(crashDB), os.Getenv(crashStorage), "child", time.Millisecond)
	if _, err := svc.Start(ctx, Config{FetchPollInterval: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Submit(ctx, "crash-1", Request{Source: "fake", Name: "crash-1", Recipients: []string{os.Getenv(crashRecip)}}, "@admin:fake.test", "api"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute) // killed long before this
}

func crashService(t *testing.T, dbURL, storageURL, owner string, delay time.Duration) *Service {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dbURL, crashKey(storageURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bucket, err := storage.Open(ctx, storageURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	src := &sourcetest.Fake{Users: 4000, OnUser: func(int) error { time.Sleep(delay); return nil }}
	return &Service{Store: st, Storage: bucket, Owner: owner, LeaseTTL: time.Second, PartSize: 16 << 10,
		Open: func(context.Context, string) (source.Source, error) { return src, nil }}
}

// crashKey is the state key file every process of the test shares (the
// resumed export's key line is sealed with it).
func crashKey(storageURL string) store.Option {
	return store.KeyFile(filepath.Join(filepath.Dir(strings.TrimPrefix(storageURL, "file://")), "state.key"))
}

// kill -9 of the process running a long export; a new process resumes it
// from its last complete part, completes it, and the archive verifies
// with nothing left in staging.
func TestCrashAndResume(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			dbURL := "sqlite://" + filepath.Join(dir, "ferry.db")
			if driver == "postgres" {
				dbURL = testenv.StartPostgres(t).CreateDatabase(t, fmt.Sprintf("crash_%d", time.Now().UnixNano()))
			}
			storageURL := "file://" + filepath.Join(dir, "archives")
			id, _ := age.GenerateX25519Identity()
			exe, _ := os.Executable()
			child := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.count=1")
			child.Env = append(os.Environ(), crashDB+"="+dbURL, crashStorage+"="+storageURL, crashRecip+"="+id.Recipient().String())
			child.Stdout, child.Stderr = os.Stderr, os.Stderr
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { child.Process.Kill(); child.Wait() })

			// Wait until the child has committed a few parts, then kill it.
			st, err := store.Open(ctx, dbURL, crashKey(storageURL))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			deadline := time.Now().Add(60 * time.Second)
			for {
				ex, err := st.GetExport(ctx, "crash-1")
				if err == nil && len(ex.Checkpoint) > 0 && ex.Progress != "" && time.Since(ex.CreatedAt) > 1500*time.Millisecond {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the child never checkpointed: %+v %v", ex, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			child.Process.Signal(syscall.SIGKILL)
			child.Wait()
			before, _ := st.GetExport(ctx, "crash-1")
			if before.Status != store.StatusProcessing {
				t.Fatalf("after the kill: %+v", before)
			}

			// A new process (here: this one) takes over once the lease expires.
			svc := crashService(t, dbURL, storageURL, "survivor", 0)
			stop, err := svc.Start(ctx, Config{FetchPollInterval: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer stop(context.Background())
			time.Sleep(time.Until(before.LeaseUntil) + 100*time.Millisecond)
			if n, err := svc.ResumeOrphans(ctx); err != nil || n != 1 {
				t.Fatalf("resume orphans: %d %v", n, err)
			}
			e := &env{svc: svc, identity: id}
			ex := waitFor(t, svc.Store, "crash-1", store.StatusCompleted, store.StatusFailed)
			if ex.Status != store.StatusCompleted || ex.Attempts != 2 {
				t.Fatalf("record %+v", ex)
			}
			src, _ := svc.Open(ctx, "fake")
			if starts := src.(*sourcetest.Fake).Starts(); len(starts) != 1 || starts[0] == 0 {
				t.Fatalf("the survivor started at %v: it must resume from the last part, not from the start", starts)
			}
			e.verify(t, "crash-1", 4000)
			if left, _ := filepath.Glob(filepath.Join(dir, "archives", "staging", "*", "*")); len(left) != 0 {
				t.Errorf("temporary objects left: %v", left)
			}
		})
	}
}
