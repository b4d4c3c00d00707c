package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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

// Leases: one live owner at a time; tokens grow; a stale lease is taken
// over, and the old owner's fenced writes then fail.
func TestLeases(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		clock := time.Unix(1_800_000_000, 0)
		s.now = func() time.Time { return clock }
		if err := s.CreateExport(ctx, &Export{ID: "e1", Kind: "export", RequestedBy: "@admin:x", Via: "api", Request: `{}`}); err != nil {
			t.Fatal(err)
		}
		a, err := s.AcquireLease(ctx, "e1", "worker-a", time.Minute)
		if err != nil || a != 1 {
			t.Fatalf("first lease: %d %v", a, err)
		}
		if _, err := s.AcquireLease(ctx, "e1", "worker-b", time.Minute); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("second owner while the lease is live: %v", err)
		}
		if err := s.SaveCheckpoint(ctx, "e1", a, []byte("cp1")); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(2 * time.Minute) // worker-a stopped heart-beating
		b, err := s.AcquireLease(ctx, "e1", "worker-b", time.Minute)
		if err != nil || b != 2 {
			t.Fatalf("takeover: %d %v", b, err)
		}
		if err := s.CheckLease(ctx, "e1", a); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("old owner's fencing check: %v", err)
		}
		if err := s.SaveCheckpoint(ctx, "e1", a, []byte("stale")); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("old owner's checkpoint: %v", err)
		}
		if err := s.Heartbeat(ctx, "e1", a, time.Minute); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("old owner's heartbeat: %v", err)
		}
		e, _ := s.GetExport(ctx, "e1")
		if string(e.Checkpoint) != "cp1" || e.Status != StatusProcessing || e.Attempts != 2 || e.LeaseOwner != "worker-b" {
			t.Fatalf("record %+v", e)
		}
		if err := s.Finish(ctx, "e1", StatusCompleted, 123, "abc", ""); err != nil {
			t.Fatal(err)
		}
		e, _ = s.GetExport(ctx, "e1")
		if e.Status != StatusCompleted || e.Checkpoint != nil || e.ArchiveKey != "" || e.Size != 123 {
			t.Fatalf("finished record %+v", e)
		}
		if _, err := s.GetExport(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing export: %v", err)
		}
		s.Audit(ctx, AuditEntry{Actor: "@admin:x", Via: "api", Action: "export.create", Target: "e1", Outcome: "ok"})
		if log, err := s.AuditLog(ctx, 10); err != nil || len(log) != 1 || log[0].Action != "export.create" {
			t.Fatalf("audit %v %v", log, err)
		}
	})
}

func TestLastScheduledSuccess(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for i, st := range []string{StatusCompleted, StatusFailed} {
			id := fmt.Sprintf("sched-%d", i)
			s.CreateExport(ctx, &Export{ID: id, Kind: "export", RequestedBy: "schedule:nightly", Via: "schedule", Request: "{}"})
			s.Finish(ctx, id, st, 1, "", "")
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
