package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// exported runs an export to completion and returns its record.
func (e *env) exported(t *testing.T, id string, verify bool) *store.Export {
	t.Helper()
	req := e.request(id)
	req.Verify = verify
	if _, err := e.svc.Submit(context.Background(), id, req, "@admin:fake.test", "api"); err != nil {
		t.Fatal(err)
	}
	ex := waitFor(t, e.svc.store, id, store.StatusCompleted, store.StatusFailed)
	if ex.Status != store.StatusCompleted {
		t.Fatalf("export %+v", ex)
	}
	return ex
}

func result(t *testing.T, ex *store.Export) string {
	t.Helper()
	var p Progress
	if err := json.Unmarshal([]byte(ex.Progress), &p); err != nil {
		t.Fatalf("progress %q: %v", ex.Progress, err)
	}
	return p.Result
}

// An export asked to verify queues a verify job when it is published.
// Without an identity the job checks the stored object and its key file
// and says that the contents were not checked; with one it opens the
// archive and validates every record.
func TestVerifyJobAfterExport(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.exported(t, "v-1", true)
		v := waitFor(t, e.svc.store, "v-1-verify", store.StatusCompleted, store.StatusFailed)
		if v.Status != store.StatusCompleted || v.Kind != store.KindVerify || !strings.Contains(result(t, v), "contents were not checked") {
			t.Fatalf("verification without identity: %+v", v)
		}

		e.svc.Identities = []age.Identity{e.identity}
		if _, err := e.svc.SubmitVerify(context.Background(), "v-2", "v-1", "@admin:fake.test", "api"); err != nil {
			t.Fatal(err)
		}
		v = waitFor(t, e.svc.store, "v-2", store.StatusCompleted, store.StatusFailed)
		if v.Status != store.StatusCompleted || !strings.Contains(result(t, v), "contents checked: 3000 records") {
			t.Fatalf("verification with identity: %+v %s", v, v.Progress)
		}
		if _, err := e.svc.SubmitVerify(context.Background(), "v-3", "nope", "@admin:fake.test", "api"); err == nil {
			t.Error("verification of an unknown export queued")
		}
	})
}

// A damaged archive (one byte flipped in storage) or a missing key file
// fails its verification at once, saying what is wrong, and is audited.
func TestVerifyJobFindsDamage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.exported(t, "d-1", false)
		path := filepath.Join(e.bucket, storage.ArchiveKey("d-1"))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SubmitVerify(ctx, "d-1-check", "d-1", "@admin:fake.test", "api"); err != nil {
			t.Fatal(err)
		}
		v := waitFor(t, e.svc.store, "d-1-check", store.StatusCompleted, store.StatusFailed)
		if v.Status != store.StatusFailed || v.Attempts != 1 || !strings.Contains(v.Error, "but was published with") {
			t.Fatalf("damaged archive: %+v", v)
		}

		e.exported(t, "d-2", false)
		if err := os.Remove(filepath.Join(e.bucket, storage.ArchiveKey("d-2")+storage.KeyExt)); err != nil {
			t.Fatal(err)
		}
		e.svc.SubmitVerify(ctx, "d-2-check", "d-2", "@admin:fake.test", "api")
		v = waitFor(t, e.svc.store, "d-2-check", store.StatusCompleted, store.StatusFailed)
		if v.Status != store.StatusFailed || !strings.Contains(v.Error, "key file") {
			t.Fatalf("missing key file: %+v", v)
		}
		log, _ := e.svc.store.AuditLog(ctx, 50)
		failed := 0
		for _, a := range log {
			if a.Action == "export.verify" && a.Outcome == "failed" {
				failed++
			}
		}
		if failed != 2 {
			t.Errorf("audit has %d failed verifications, want 2: %+v", failed, log)
		}
	})
}

// An import job opens the published archive (with the archive's key line
// when the service holds no identity), hands it to the configured
// importer, keeps its progress and report, and forgets the key at the end.
func TestImportJob(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ex := e.exported(t, "i-1", false)
		var seen atomic.Value
		e.svc.Import = func(ctx context.Context, r *archive.Reader, req ImportRequest, p importer.Progress) (string, error) {
			seen.Store(r.Manifest().ArchiveID)
			p.Phase("users", 3000)
			p.Add(3000)
			if req.Target != "new" || !req.DryRun {
				return "", errors.New("request lost on the way")
			}
			return "would import 3000 users", nil
		}
		// Without a key line and without an identity, the archive can't be opened.
		if _, err := e.svc.SubmitImport(ctx, "imp-nokey", ImportRequest{Export: "i-1", Target: "new", DryRun: true}, "", "token:ops", "api"); err != nil {
			t.Fatal(err)
		}
		j := waitFor(t, e.svc.store, "imp-nokey", store.StatusCompleted, store.StatusFailed)
		if j.Status != store.StatusFailed || j.Attempts != 1 || !strings.Contains(j.Error, "refused before any write") {
			t.Fatalf("import without key: %+v", j)
		}

		rc, _ := e.svc.storage.Range(ctx, storage.ArchiveKey("i-1")+storage.KeyExt, 0, -1)
		wrapped := make([]byte, 4096)
		n, _ := rc.Read(wrapped)
		rc.Close()
		key, err := keywrap.Unwrap(wrapped[:n], ex.ArchiveID, e.identity)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SubmitImport(ctx, "imp-1", ImportRequest{Export: "i-1", Target: "new", DryRun: true}, string(key.Encode(ex.ArchiveID)), "token:ops", "api"); err != nil {
			t.Fatal(err)
		}
		j = waitFor(t, e.svc.store, "imp-1", store.StatusCompleted, store.StatusFailed)
		if j.Status != store.StatusCompleted || result(t, j) != "would import 3000 users" || seen.Load() != ex.ArchiveID || j.ArchiveKey != "" {
			t.Fatalf("import: %+v", j)
		}
		if strings.Contains(j.Request, "ferry-key") || strings.Contains(j.Progress, string(key.Encode(ex.ArchiveID))) {
			t.Errorf("the key line leaked into the job's record: %+v", j)
		}

		// A failing importer is reported, not retried: the target needs a person.
		e.svc.Import = func(context.Context, *archive.Reader, ImportRequest, importer.Progress) (string, error) {
			return "", errors.New("target is not empty: 3 users")
		}
		e.svc.Identities = []age.Identity{e.identity}
		e.svc.SubmitImport(ctx, "imp-2", ImportRequest{Archive: "i-1", Target: "new"}, "", "token:ops", "api")
		j = waitFor(t, e.svc.store, "imp-2", store.StatusCompleted, store.StatusFailed)
		if j.Status != store.StatusFailed || j.Attempts != 1 || !strings.Contains(j.Error, "target is not empty") {
			t.Fatalf("failed import: %+v", j)
		}

		for _, bad := range []ImportRequest{{Target: "new"}, {Export: "i-1", Archive: "i-1", Target: "new"}, {Export: "i-1"}, {Archive: "missing", Target: "new"}, {Archive: "../x", Target: "new"}} {
			if _, err := e.svc.SubmitImport(ctx, "bad", bad, "", "token:ops", "api"); err == nil {
				t.Errorf("bad import request %+v queued", bad)
			}
		}
	})
}

// Cancelling a running import stops the importer promptly.
func TestCancelImport(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.exported(t, "c-1", false)
		e.svc.Identities = []age.Identity{e.identity}
		running, stopped := make(chan struct{}), make(chan struct{})
		e.svc.Import = func(ctx context.Context, _ *archive.Reader, _ ImportRequest, _ importer.Progress) (string, error) {
			close(running)
			<-ctx.Done()
			close(stopped)
			return "", ctx.Err()
		}
		e.svc.SubmitImport(ctx, "imp-c", ImportRequest{Export: "c-1", Target: "new"}, "", "token:ops", "api")
		<-running
		if err := e.svc.Cancel(ctx, "imp-c", "token:ops", "api"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatal("the importer was not stopped")
		}
		if j, _ := e.svc.store.GetExport(ctx, "imp-c"); j.Status != store.StatusCancelled {
			t.Fatalf("cancelled import: %+v", j)
		}
		// An export whose archive was deleted has ended: it can't be
		// "cancelled" (which once turned it into a cancelled export).
		e.svc.store.MarkDeleted(ctx, "c-1")
		if err := e.svc.Cancel(ctx, "c-1", "token:ops", "api"); err == nil {
			t.Error("a deleted export was cancelled")
		}
		if j, _ := e.svc.store.GetExport(ctx, "c-1"); j.Status != store.StatusDeleted {
			t.Errorf("deleted export after cancel: %s", j.Status)
		}
	})
}

// Each completed export that asked for it gets its verification, queued
// once the export is recorded completed (Finish moves the token on); none
// is lost or left queued without a River job.
func TestVerifyQueuedAfterCompletion(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.src.Users = 50
		for i := range 5 {
			id := fmt.Sprintf("l-%d", i)
			e.exported(t, id, true)
			v := waitFor(t, e.svc.store, id+"-verify", store.StatusCompleted, store.StatusFailed)
			if v.Status != store.StatusCompleted {
				t.Fatalf("verification of %s: %+v", id, v)
			}
		}
		log, _ := e.svc.store.AuditLog(context.Background(), 200)
		for _, a := range log {
			if strings.Contains(a.Detail, "could not queue") {
				t.Errorf("audit: %+v", a)
			}
		}
	})
}

// A crash between publishing an export and queueing its verification
// (the export is completed, its verify job missing) is repaired when the
// export's River job runs again (River retries it, or the restarted
// instance rescues it): the run finds the export completed and queues the
// verification, once.
func TestRerunQueuesMissingVerify(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ex := e.exported(t, "o-1", false)
		req := e.request("o-1")
		req.Verify = true
		body, _ := json.Marshal(req)
		// o-2: o-1's archive, as an export that asked for a verification
		// and crashed before queueing it.
		o2 := &store.Export{ID: "o-2", Kind: store.KindExport, RequestedBy: "@admin:fake.test", Via: "api", Request: string(body), Name: "o-1"}
		if err := e.svc.store.CreateExport(ctx, o2); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.store.End(ctx, "o-2", store.Result{Status: store.StatusCompleted, Size: ex.Size, SHA256: ex.SHA256}); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the River job run again, twice: one verification
			if _, err := e.svc.runner.insert(ctx, ExportArgs{ExportID: "o-2"}); err != nil {
				t.Fatal(err)
			}
		}
		v := waitFor(t, e.svc.store, "o-2-verify", store.StatusCompleted, store.StatusFailed)
		if v.Status != store.StatusCompleted {
			t.Fatalf("verification: %+v", v)
		}
		if _, err := e.svc.store.GetExport(ctx, "o-1-verify"); err == nil {
			t.Error("a verification queued for an export that did not ask for one")
		}
		time.Sleep(time.Second)
		if list, _ := e.svc.store.ListJobs(ctx, store.KindVerify, 100); len(list) != 1 {
			t.Errorf("verifications: %d, want 1", len(list))
		}
	})
}
