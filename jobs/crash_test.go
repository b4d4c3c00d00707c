package jobs

import (
	"context"
	"errors"
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
	svc := crashService(t, os.Getenv(crashDB), os.Getenv(crashStorage), "crash-host", time.Millisecond)
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
	return &Service{store: st, storage: bucket, Instance: owner, PartSize: 16 << 10,
		Open: func(context.Context, string) (source.Source, error) { return src, nil }}
}

// crashKey is the state key file every process of the test shares (the
// resumed export's key line is sealed with it).
func crashKey(storageURL string) store.Option {
	return store.KeyFile(filepath.Join(filepath.Dir(strings.TrimPrefix(storageURL, "file://")), "state.key"))
}

// kill -9 of the process running a long export; a new process resumes it
// from its last complete part, completes it, and the archive verifies
// with nothing left in staging. The new process is the same instance
// started again (it resumes its own interrupted jobs as it starts), on
// SQLite one under another name (a recreated container's host name: the
// database serves one instance, which resumes every interrupted job at
// start), or, on PostgreSQL, another instance, whose River rescuer takes
// the job once it has run for longer than the run timeout (here a few
// seconds).
func TestCrashAndResume(t *testing.T) {
	for _, c := range []struct{ driver, survivor string }{{"sqlite", "crash-host"}, {"sqlite", "new-container"}, {"postgres", "crash-host"}, {"postgres", "other-host"}} {
		driver := c.driver
		t.Run(driver+"/"+c.survivor, func(t *testing.T) {
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

			// A new process (here: this one) takes over.
			svc := crashService(t, dbURL, storageURL, c.survivor, 0)
			cfg := Config{FetchPollInterval: 50 * time.Millisecond}
			if c.survivor != "crash-host" && driver == "postgres" {
				cfg.RunTimeout = 3 * time.Second
			}
			stop, err := svc.Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer stop(context.Background())
			e := &env{svc: svc, identity: id}
			ex := waitForIn(t, svc.store, "crash-1", 3*time.Minute, store.StatusCompleted, store.StatusFailed)
			if ex.Status != store.StatusCompleted || ex.Attempts < 2 {
				t.Fatalf("record %+v", ex)
			}
			src, _ := svc.Open(ctx, "fake")
			if starts := src.(*sourcetest.Fake).Starts(); len(starts) == 0 || starts[0] == 0 {
				t.Fatalf("the survivor started at %v: it must resume from the last part, not from the start", starts)
			}
			e.verify(t, "crash-1", 4000)
			if left, _ := filepath.Glob(filepath.Join(dir, "archives", "staging", "*", "*")); len(left) != 0 {
				t.Errorf("temporary objects left: %v", left)
			}
		})
	}
}

// A second process of a running instance (the same config started twice)
// must not start: starting resumes what its instance was running, which
// is the live process's. Its Start fails with store.ErrInstanceRunning
// before it touches a job, and the running export completes in its first
// run; once the first stops, the instance starts again.
func TestSecondProcessOfAnInstanceRefused(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		before := runningExport(t, e, "live-1")
		second := &Service{store: e.svc.store, storage: e.svc.storage, Instance: e.svc.Instance, Open: e.svc.Open}
		stop, err := second.Start(ctx, Config{FetchPollInterval: 50 * time.Millisecond})
		if err == nil {
			stop(ctx)
			t.Fatal("a second process of a running instance started")
		}
		if !errors.Is(err, store.ErrInstanceRunning) || !strings.Contains(err.Error(), "stop it") {
			t.Errorf("refusal: %v", err)
		}
		var state string
		e.svc.store.DB.QueryRowContext(ctx, `SELECT CAST(state AS TEXT) FROM river_job WHERE id = `+fmt.Sprint(before.RiverJobID)).Scan(&state)
		if state != "running" {
			t.Errorf("the live run's River job is %q after the refused start", state)
		}
		ex := waitFor(t, e.svc.store, "live-1", store.StatusCompleted, store.StatusFailed)
		if ex.Status != store.StatusCompleted || ex.Attempts != 1 || ex.Fence != before.Fence+1 {
			t.Fatalf("record %+v (claimed at fence %d)", ex, before.Fence)
		}
	})
}
