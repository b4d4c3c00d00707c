package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// An export that was running under the previous release (its own lease
// and heartbeat, the job state in ferry_exports; its process stopped for
// the upgrade) resumes after the upgrade from its checkpoint and completes
// with a valid archive. The state database is the previous release's:
// migrations 001-006, a ferry_exports row as that release wrote it
// (processing, leased, with the archive's ID, sealed key line, checkpoint
// and the bot's follow state) and its River job, running under the old
// process's random client ID. The archive's staged parts and resume state
// are real: an export run to its middle and stopped there.
func TestUpgradeResumesRunningExport(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			urls := [2]string{"sqlite://" + filepath.Join(dir, "partial.db"), "sqlite://" + filepath.Join(dir, "ferry.db")}
			if driver == "postgres" {
				pg := testenv.StartPostgres(t)
				for i := range urls {
					urls[i] = pg.CreateDatabase(t, fmt.Sprintf("upgrade_%d_%d", i, time.Now().UnixNano()))
				}
			}
			key := store.KeyFile(filepath.Join(dir, "state.key"))
			bucket, err := storage.Open(ctx, "file://"+filepath.Join(dir, "archives"))
			if err != nil {
				t.Fatal(err)
			}
			defer bucket.Close()
			id, _ := age.GenerateX25519Identity()
			req := Request{Source: "fake", Name: "up-1", Recipients: []string{id.Recipient().String()}}
			body, _ := json.Marshal(req)

			// 1. Half an export: staged parts, and its archive ID, sealed
			// key line and checkpoint as a row holds them.
			partial, err := store.Open(ctx, urls[0], key)
			if err != nil {
				t.Fatal(err)
			}
			defer partial.Close()
			stopAt, stop := context.WithCancel(ctx)
			half := New(partial, bucket)
			half.PartSize = 16 << 10
			half.Open = func(context.Context, string) (source.Source, error) {
				return &sourcetest.Fake{Users: 3000, OnUser: func(i int) error {
					if i == 1500 {
						stop()
					}
					return nil
				}}, nil
			}
			if err := partial.CreateExport(ctx, &store.Export{ID: "up-1", Kind: store.KindExport, RequestedBy: "@admin:fake.test", Via: "api",
				Request: string(body), Name: "up-1"}); err != nil {
				t.Fatal(err)
			}
			token, err := partial.Claim(ctx, "up-1", 1)
			if err != nil {
				t.Fatal(err)
			}
			e, _ := partial.GetExport(ctx, "up-1")
			if err := half.run(stopAt, e, token); err == nil {
				t.Fatal("the half export completed")
			}
			var archiveID, progress string
			var sealedKey, checkpoint any
			if err := partial.DB.QueryRowContext(ctx, `SELECT archive_id, archive_key, checkpoint, progress FROM ferry_jobs WHERE id = 'up-1'`).
				Scan(&archiveID, &sealedKey, &checkpoint, &progress); err != nil || checkpoint == nil || sealedKey == nil {
				t.Fatalf("no resume state: %v %v", checkpoint, err)
			}

			// 2. The previous release's database.
			old, err := store.Open(ctx, urls[1], key, store.UpgradeTo(6))
			if err != nil {
				t.Fatal(err)
			}
			riverJob := oldRunningJob(t, old, "01JOLDRELEASECLIENT")
			now := time.Now()
			q := `INSERT INTO ferry_exports (id, kind, status, requested_by, via, request, archive_id, name, archive_key, checkpoint, progress,
				attempts, lease_owner, lease_token, lease_until, created_at, updated_at, river_job_id, notify)
				VALUES ('up-1', 'export', 'processing', '@admin:fake.test', 'api', ?, ?, 'up-1', ?, ?, ?, 1, 'oldhost/42', 1, ?, ?, ?, ?, ?)`
			if driver == "postgres" {
				q = `INSERT INTO ferry_exports (id, kind, status, requested_by, via, request, archive_id, name, archive_key, checkpoint, progress,
				attempts, lease_owner, lease_token, lease_until, created_at, updated_at, river_job_id, notify)
				VALUES ('up-1', 'export', 'processing', '@admin:fake.test', 'api', $1, $2, 'up-1', $3, $4, $5, 1, 'oldhost/42', 1, $6, $7, $8, $9, $10)`
			}
			if _, err := old.DB.ExecContext(ctx, q, string(body), archiveID, sealedKey, checkpoint, progress, now.Add(time.Minute).UnixMilli(),
				now.Add(-time.Hour).UnixMilli(), now.UnixMilli(), riverJob, `{"room":"!admins:fake.test","message":"$progress"}`); err != nil {
				t.Fatal(err)
			}
			old.Close()

			// 3. This release: the upgrade, then the job service starts.
			st, err := store.Open(ctx, urls[1], key)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if ex, err := st.GetExport(ctx, "up-1"); err != nil || ex.Status != store.StatusProcessing || len(ex.Checkpoint) == 0 {
				t.Fatalf("the running export after the upgrade: %+v %v", ex, err)
			}
			src := &sourcetest.Fake{Users: 3000}
			svc := New(st, bucket)
			svc.Instance, svc.PartSize = "new-host", 16<<10
			svc.Open = func(context.Context, string) (source.Source, error) { return src, nil }
			stopSvc, err := svc.Start(ctx, Config{FetchPollInterval: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer stopSvc(context.Background())
			ex := waitForIn(t, st, "up-1", 2*time.Minute, store.StatusCompleted, store.StatusFailed)
			if ex.Status != store.StatusCompleted || ex.Size == 0 || ex.ArchiveKey != "" || ex.Checkpoint != nil {
				t.Fatalf("record %+v", ex)
			}
			if starts := src.Starts(); len(starts) != 1 || starts[0] == 0 {
				t.Fatalf("the upgraded release started the export at %v: it must resume from the checkpoint", starts)
			}
			(&env{svc: svc, identity: id}).verify(t, "up-1", 3000)
			if f, err := st.Follows(ctx); err != nil || f["up-1"] == "" {
				t.Errorf("the bot's follow state did not move: %v %v", f, err)
			}
		})
	}
}

// oldRunningJob inserts the River job of an export as the previous
// release left it: running, attempted by its process's client ID.
func oldRunningJob(t *testing.T, st *store.Store, clientID string) int64 {
	t.Helper()
	if st.Dialect == store.Postgres {
		return runningJob(t, riverpgxv5.New(st.Pool), clientID)
	}
	return runningJob(t, riversqlite.New(st.DB), clientID)
}

func runningJob[TTx any](t *testing.T, driver riverdriver.Driver[TTx], clientID string) int64 {
	t.Helper()
	ctx := context.Background()
	c, err := river.NewClient(driver, &river.Config{}) // insert only
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Insert(ctx, ExportArgs{ExportID: "up-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Minute)
	if _, err := driver.GetExecutor().JobUpdateFull(ctx, &riverdriver.JobUpdateFullParams{ID: res.Job.ID,
		StateDoUpdate: true, State: rivertype.JobStateRunning, AttemptDoUpdate: true, Attempt: 1,
		AttemptedAtDoUpdate: true, AttemptedAt: &at, AttemptedByDoUpdate: true, AttemptedBy: []string{clientID}}); err != nil {
		t.Fatal(err)
	}
	return res.Job.ID
}
