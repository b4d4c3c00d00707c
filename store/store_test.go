package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// each runs a test on SQLite and on PostgreSQL.
func each(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		s, err := Open(context.Background(), "sqlite://"+t.TempDir()+"/ferry.db")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.StartPostgres(t)
		url := pg.CreateDatabase(t, "store_"+time.Now().Format("150405.000000"))
		s, err := Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fn(t, s)
	})
}

// eachURL runs a test on a SQLite file and on a PostgreSQL database of its
// own, given a temporary directory (for key files) and the database's URL.
func eachURL(t *testing.T, fn func(t *testing.T, dir, url string)) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			dir := t.TempDir()
			url := "sqlite://" + filepath.Join(dir, "ferry.db")
			if driver == "postgres" {
				url = testenv.StartPostgres(t).CreateDatabase(t, fmt.Sprintf("store_%d", time.Now().UnixNano()))
			}
			fn(t, dir, url)
		})
	}
}

func TestUpgradesApplyOnce(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 2; i++ {
		s, err := Open(context.Background(), "sqlite://"+dir+"/ferry.db")
		if err != nil {
			t.Fatal(err)
		}
		var n int
		s.DB.QueryRow(`SELECT count(*) FROM ferry_schema`).Scan(&n)
		s.Close()
		files, _ := fs.Glob(migrations, "migrations/*.sql")
		if n != len(files) || n < 2 {
			t.Fatalf("open %d: %d upgrades recorded, %d files", i, n, len(files))
		}
	}
	if _, err := Open(context.Background(), "mysql://x"); err == nil {
		t.Fatal("unknown database accepted")
	}
}

// Fencing: every claim moves the token on, and the previous run's writes
// then fail; an outcome ends every run's writes, and only the first
// outcome counts.
func TestFencing(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if err := s.CreateExport(ctx, &Export{ID: "e1", Kind: KindExport, RequestedBy: "@admin:x", Via: "api", Request: `{}`}); err != nil {
			t.Fatal(err)
		}
		if e, _ := s.GetExport(ctx, "e1"); e.Status != StatusQueued || !e.Running() {
			t.Fatalf("new job %+v", e)
		}
		a, err := s.Claim(ctx, "e1", 7)
		if err != nil || a != 1 {
			t.Fatalf("first claim: %d %v", a, err)
		}
		if err := s.SaveCheckpoint(ctx, "e1", a, []byte("cp1")); err != nil {
			t.Fatal(err)
		}
		b, err := s.Claim(ctx, "e1", 7) // another run of the same River job (a rescue)
		if err != nil || b != 2 {
			t.Fatalf("second claim: %d %v", b, err)
		}
		if err := s.CheckFence(ctx, "e1", a); !errors.Is(err, ErrFenced) {
			t.Fatalf("old run's fencing check: %v", err)
		}
		if err := s.SaveCheckpoint(ctx, "e1", a, []byte("stale")); !errors.Is(err, ErrFenced) {
			t.Fatalf("old run's checkpoint: %v", err)
		}
		if err := s.Finish(ctx, "e1", a, Result{Status: StatusCompleted}); !errors.Is(err, ErrFenced) {
			t.Fatalf("old run's outcome: %v", err)
		}
		e, _ := s.GetExport(ctx, "e1")
		// River job 7 is not in river_job: a job whose River job is gone
		// and that has no outcome has failed.
		if string(e.Checkpoint) != "cp1" || e.Attempts != 2 || e.Fence != 2 || e.RiverJobID != 7 || e.Status != StatusFailed || e.Error == "" {
			t.Fatalf("record %+v", e)
		}
		if err := s.Finish(ctx, "e1", b, Result{Status: StatusCompleted, Size: 123, SHA256: "abc"}); err != nil {
			t.Fatal(err)
		}
		e, _ = s.GetExport(ctx, "e1")
		if e.Status != StatusCompleted || e.Checkpoint != nil || e.ArchiveKey != "" || e.Size != 123 || e.FinishedAt.IsZero() {
			t.Fatalf("finished record %+v", e)
		}
		if err := s.CheckFence(ctx, "e1", b); !errors.Is(err, ErrFenced) {
			t.Fatalf("fencing check after the outcome: %v", err)
		}
		if _, err := s.Claim(ctx, "e1", 8); !errors.Is(err, ErrEnded) {
			t.Fatalf("claim of an ended job: %v", err)
		}
		if err := s.End(ctx, "e1", Result{Status: StatusCancelled}); !errors.Is(err, ErrEnded) {
			t.Fatalf("a second outcome: %v", err)
		}
		if _, err := s.GetExport(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing export: %v", err)
		}
		if _, err := s.Claim(ctx, "nope", 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("claim of a missing export: %v", err)
		}
		s.Audit(ctx, AuditEntry{Actor: "@admin:x", Via: "api", Action: "export.create", Target: "e1", Outcome: "ok"})
		if log, err := s.AuditLog(ctx, 10); err != nil || len(log) != 1 || log[0].Action != "export.create" {
			t.Fatalf("audit %v %v", log, err)
		}
	})
}

// The bot's follow state lives in its own table; an empty state forgets it.
func TestFollows(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for _, st := range []string{`{"room":"!a"}`, `{"room":"!b"}`} {
			if err := s.SaveFollow(ctx, "e1", st); err != nil {
				t.Fatal(err)
			}
		}
		s.SaveFollow(ctx, "e2", `{"room":"!c"}`)
		if f, err := s.Follows(ctx); err != nil || len(f) != 2 || f["e1"] != `{"room":"!b"}` {
			t.Fatalf("follows %v %v", f, err)
		}
		s.SaveFollow(ctx, "e2", "")
		if f, _ := s.Follows(ctx); len(f) != 1 {
			t.Fatalf("forgotten follow still there: %v", f)
		}
	})
}

// A CLI export is recorded once finished, and is never taken for an
// archive in Ferry's storage.
func TestRecordExport(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if err := s.RecordExport(ctx, &Export{ID: "cli-1", RequestedBy: "cli", Via: "cli", Name: "full-x"}); err == nil {
			t.Error("a CLI export without its location recorded")
		}
		if err := s.RecordExport(ctx, &Export{ID: "cli-1", RequestedBy: "cli", Via: "cli", Name: "full-x", Location: "/tmp/full-x.ferry",
			Size: 10, SHA256: "abc"}); err != nil {
			t.Fatal(err)
		}
		e, err := s.GetExport(ctx, "cli-1")
		if err != nil || e.Status != StatusCompleted || e.Kind != KindExport || e.Location != "/tmp/full-x.ferry" || e.Size != 10 {
			t.Fatalf("%+v %v", e, err)
		}
		if _, err := s.ExportByName(ctx, "full-x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a CLI export's archive taken for one in storage: %v", err)
		}
	})
}

func TestLastScheduledSuccess(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for i, st := range []Status{StatusCompleted, StatusFailed} {
			id := fmt.Sprintf("sched-%d", i)
			s.CreateExport(ctx, &Export{ID: id, Kind: KindExport, RequestedBy: "schedule:nightly", Via: "schedule", Request: "{}"})
			s.End(ctx, id, Result{Status: st, Size: 1})
		}
		last, err := s.LastScheduledSuccess(ctx)
		if err != nil || len(last) != 1 || last["nightly"].IsZero() {
			t.Fatalf("%v %v", last, err)
		}
	})
}

// Instances starting together on one fresh database upgrade it once.
func TestConcurrentStartsUpgradeOnce(t *testing.T) {
	pg := testenv.StartPostgres(t)
	urls := map[string]string{
		"sqlite":   "sqlite://" + t.TempDir() + "/ferry.db",
		"postgres": pg.CreateDatabase(t, fmt.Sprintf("race_%d", time.Now().UnixNano())),
	}
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			errs := make(chan error, 8)
			for i := 0; i < 8; i++ {
				go func() {
					s, err := Open(context.Background(), url)
					if err == nil {
						s.Close()
					}
					errs <- err
				}()
			}
			for i := 0; i < 8; i++ {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// A one-time secret is revealed once, never after it expires, and only
// its token's hash is stored.
func TestSecretsRevealOnce(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		clock := time.Now()
		s.now = func() time.Time { return clock }
		if err := s.PutSecret(ctx, "token-a", "AGE-SECRET-KEY-1EXAMPLE", "mydata @bob:x", clock.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.PutSecret(ctx, "token-b", "other", "mydata @carol:x", clock.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		var stored int
		s.DB.QueryRowContext(ctx, `SELECT count(*) FROM ferry_secrets WHERE token_hash IN ('token-a', 'token-b')`).Scan(&stored)
		if stored != 0 {
			t.Error("tokens stored in the clear")
		}
		if _, _, err := s.RevealSecret(ctx, "token-x"); !errors.Is(err, ErrGone) {
			t.Errorf("unknown token: %v", err)
		}
		secret, purpose, err := s.RevealSecret(ctx, "token-a")
		if err != nil || secret != "AGE-SECRET-KEY-1EXAMPLE" || purpose != "mydata @bob:x" {
			t.Fatalf("reveal: %q %q %v", secret, purpose, err)
		}
		if _, _, err := s.RevealSecret(ctx, "token-a"); !errors.Is(err, ErrGone) {
			t.Errorf("second reveal: %v", err)
		}
		clock = clock.Add(2 * time.Minute)
		if _, _, err := s.RevealSecret(ctx, "token-b"); !errors.Is(err, ErrGone) {
			t.Errorf("expired secret revealed: %v", err)
		}
	})
}

// A job whose River job completed without the ledger recording an
// outcome (its run returned without finishing the row) is failed: there
// may be no archive.
func TestCompletedWithoutOutcomeIsFailed(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if err := s.CreateExport(ctx, &Export{ID: "e1", Kind: KindExport, RequestedBy: "@admin:x", Via: "api", Request: `{}`}); err != nil {
			t.Fatal(err)
		}
		var riverID int64
		if err := s.DB.QueryRowContext(ctx, `INSERT INTO river_job (state, attempt, max_attempts, kind, args, queue, priority, finalized_at)
			VALUES ('completed', 1, 10, 'ferry.export', '{}', 'default', 1, CURRENT_TIMESTAMP) RETURNING id`).Scan(&riverID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Claim(ctx, "e1", riverID); err != nil {
			t.Fatal(err)
		}
		if e, _ := s.GetExport(ctx, "e1"); e.Status != StatusFailed {
			t.Fatalf("status %q, want failed", e.Status)
		}
	})
}
