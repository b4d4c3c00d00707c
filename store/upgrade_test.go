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

// Upgrade 007 turns the previous release's ferry_exports into the ledger:
// ended jobs keep their status as their outcome, running ones get none
// (River's job says where they are), the lease token becomes the fence,
// the checkpoint and the sealed key line carry over, and the bot's
// follow state moves to its own table.
func TestUpgradeToLedger(t *testing.T) {
	eachURL(t, func(t *testing.T, dir, url string) {
		ctx := context.Background()
		key := KeyFile(filepath.Join(dir, "state.key"))
		old, err := Open(ctx, url, key, UpgradeTo(6))
		if err != nil {
			t.Fatal(err)
		}
		const keyLine = "ferry-archive-key v1 arch-1 KEYBYTES"
		sealed := old.seal.seal(keyLine, exportKeyAAD("run-1")) // as the previous release sealed it
		now := time.Now().UnixMilli()
		for _, r := range []struct {
			id, status, notify string
			token, jobID       int64
			key, checkpoint    any
		}{
			{id: "done-1", status: "completed", token: 4},
			{id: "gone-1", status: "deleted", token: 2},
			{id: "fail-1", status: "failed", token: 3},
			{id: "queued-1", status: "queued", notify: `{"room":"!r:x"}`},
			{id: "run-1", status: "processing", token: 3, jobID: 0, key: sealed, checkpoint: encodeB64([]byte("cp")), notify: `{"room":"!r:x","message":"$m"}`},
		} {
			if _, err := old.DB.ExecContext(ctx, old.q(`INSERT INTO ferry_exports (id, kind, status, requested_by, via, request, archive_id, name,
				archive_key, checkpoint, size, error, attempts, lease_owner, lease_token, lease_until, created_at, updated_at, river_job_id, notify)
				VALUES (?, 'export', ?, '@admin:x', 'api', '{}', 'arch-1', ?, ?, ?, 7, '', 2, 'host/1', ?, ?, ?, ?, ?, ?)`),
				r.id, r.status, r.id, r.key, r.checkpoint, r.token, now+60_000, now, now, r.jobID, r.notify); err != nil {
				t.Fatal(err)
			}
		}
		old.Close()

		s, err := Open(ctx, url, key)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		want := map[string]Status{"done-1": StatusCompleted, "gone-1": StatusDeleted, "fail-1": StatusFailed, "queued-1": StatusQueued, "run-1": StatusQueued}
		for id, st := range want {
			e, err := s.GetExport(ctx, id)
			if err != nil || e.Status != st || e.Kind != KindExport || e.Name != id || e.Attempts != 2 {
				t.Errorf("%s: %+v %v, want %s", id, e, err, st)
			}
		}
		run, _ := s.GetExport(ctx, "run-1")
		if run.ArchiveKey != keyLine || string(run.Checkpoint) != "cp" || run.Fence != 3 || run.ArchiveID != "arch-1" {
			t.Errorf("the running export's resume state: %+v", run)
		}
		if token, err := s.Claim(ctx, "run-1", 1); err != nil || token != 4 {
			t.Errorf("claim after the upgrade: %d %v", token, err)
		}
		if f, err := s.Follows(ctx); err != nil || len(f) != 2 || f["run-1"] != `{"room":"!r:x","message":"$m"}` {
			t.Errorf("follows %v %v", f, err)
		}
		if _, err := s.DB.ExecContext(ctx, `SELECT count(*) FROM ferry_exports`); err == nil {
			t.Error("ferry_exports is still there")
		}
		if _, err := s.GetExport(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Error(err)
		}
	})
}

// A tool beside the bot (bot export --record) opens the bot's database as
// it is: a missing database or key file is not created, and a database of
// another schema version is refused, not upgraded.
func TestOpenExisting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, key := filepath.Join(dir, "ferry.db"), filepath.Join(dir, "state.key")
	if _, err := Open(ctx, "sqlite://"+db, KeyFile(key), Existing()); err == nil {
		t.Fatal("a missing database opened")
	}
	if _, err := os.Stat(db); err == nil {
		t.Fatal("Existing created the database")
	}
	old, err := Open(ctx, "sqlite://"+db, KeyFile(key), UpgradeTo(6))
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	if _, err := Open(ctx, "sqlite://"+db, KeyFile(key), Existing()); err == nil || !strings.Contains(err.Error(), "schema 6") {
		t.Fatalf("a database of the previous release: %v", err)
	}
	cur, err := Open(ctx, "sqlite://"+db, KeyFile(key))
	if err != nil {
		t.Fatal(err)
	}
	cur.Close()
	if _, err := Open(ctx, "sqlite://"+db, KeyFile(filepath.Join(dir, "other.key")), Existing()); err == nil {
		t.Fatal("a missing key file was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "other.key")); err == nil {
		t.Fatal("Existing created a key file")
	}
	st, err := Open(ctx, "sqlite://"+db, KeyFile(key), Existing())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
}
