package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// The schedule-sync ticker's error (here: the state database closed under
// it) is logged through the context's logger, not lost.
func TestScheduleSyncErrorIsLogged(t *testing.T) {
	logs := &logBuffer{}
	ctx := zerolog.New(logs).WithContext(context.Background())
	st, err := store.Open(ctx, "sqlite://"+t.TempDir()+"/ferry.db")
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := storage.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	svc := &Service{store: st, storage: bucket, Instance: "test"}
	stop, err := svc.Start(ctx, Config{ScheduleSync: 50 * time.Millisecond, FetchPollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stop(sctx) // River's own errors with the store closed are not this test's
	})
	st.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if out := logs.String(); strings.Contains(out, "schedules stored by other instances could not be loaded") {
			if !strings.Contains(out, `"level":"error"`) || !strings.Contains(out, `"error":`) {
				t.Fatalf("logged without its level or error:\n%s", out)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the ticker's error was not logged:\n%s", logs.String())
}

// An import job's progress is the importer's counts, not lines of text:
// the phase, its items against their total, the share done.
func TestImportCounter(t *testing.T) {
	var saved []Progress
	c := &importCounter{save: func(p Progress) { saved = append(saved, p) }}
	c.Phase("events", 200)
	c.Add(50) // within 2 s of the phase's start: not saved
	c.Phase("media", 0)
	if len(saved) != 2 || saved[0].Stream != "events" || saved[0].Total != 200 || saved[0].Records != 0 ||
		saved[1].Stream != "media" || saved[1].Total != 0 || saved[1].Percent != 0 {
		t.Fatalf("saved %+v", saved)
	}
	c.Phase("rooms", 4)
	c.last = time.Time{} // as if 2 s had passed
	c.Add(1)
	if p := saved[len(saved)-1]; p.Stream != "rooms" || p.Records != 1 || p.Total != 4 || p.Percent != 25 {
		t.Fatalf("saved %+v", p)
	}
}

// An export whose audit entry cannot be written (the audit table gone)
// is still published and completed, but the failure is not lost: it is
// tried again, logged at error level and returned to River.
func TestWorkerAuditFailureIsLogged(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		submitted := make(chan struct{}) // Submit has written its own audit entry
		e.src.OnUser = func(i int) error {
			if i == 10 {
				<-submitted // on a busy machine the run can reach here first
				if _, err := e.svc.store.DB.ExecContext(ctx, `DROP TABLE IF EXISTS ferry_audit`); err != nil {
					return err
				}
			}
			return nil
		}
		_, err := e.svc.Submit(ctx, "audit-1", e.request("audit-1"), "@admin:fake.test", "api")
		close(submitted)
		if err != nil {
			t.Fatal(err)
		}
		ex := waitFor(t, e.svc.store, "audit-1", store.StatusCompleted, store.StatusFailed)
		if ex.Status != store.StatusCompleted {
			t.Fatalf("record %+v", ex)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(e.logs.String(), "export published, but its audit entry could not be written") {
			if time.Now().After(deadline) {
				t.Fatalf("the failed audit write is not logged:\n%s", e.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if logs := e.logs.String(); !strings.Contains(logs, `"level":"error"`) || !strings.Contains(logs, `"job":"audit-1"`) {
			t.Errorf("logged without its level or job:\n%s", logs)
		}
	})
}
