package app

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/importer/dendrite"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// rig is an application service over a SQLite state database, a file://
// bucket and an in-memory source; the job runner is started by start.
type rig struct {
	svc     *Service
	jobs    *jobs.Service
	st      *store.Store
	dir     string // the bucket's directory
	admin   *age.X25519Identity
	stopped bool
}

func setup(t *testing.T, cfg Config) *rig {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+t.TempDir()+"/ferry.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dir := t.TempDir()
	bucket, err := storage.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	fake := &sourcetest.Fake{Users: 50}
	js := jobs.New(st, bucket)
	js.Instance, js.PartSize = "app-test", 16<<10
	js.Open = func(context.Context, string) (source.Source, error) { return fake, nil }
	js.Capabilities = func(string) (source.Capabilities, error) { return fake.Capabilities(), nil }
	signer, _ := links.NewSigner(bytes.Repeat([]byte{7}, 32), nil)
	if cfg.StorageURL == "" {
		cfg.StorageURL = "file://" + dir
	}
	cfg.Source, cfg.BaseURL = "fake", "https://ferry.test"
	if cfg.PreviewTarget == nil {
		cfg.PreviewTarget = func() importer.Target { return dendrite.NewTarget(dendrite.Config{}) }
	}
	admin, _ := age.GenerateX25519Identity()
	return &rig{svc: New(st, bucket, js, &links.Handler{Store: bucket, Signer: signer}, cfg), jobs: js, st: st, dir: dir, admin: admin}
}

// start runs the job workers until the test ends.
func (r *rig) start(t *testing.T) {
	t.Helper()
	stop, err := r.jobs.Start(context.Background(), jobs.Config{FetchPollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(context.Background()) })
}

// exported submits a full export and waits for it to complete.
func (r *rig) exported(t *testing.T, by Actor) *View {
	t.Helper()
	ctx := context.Background()
	v, err := r.svc.Submit(ctx, ExportRequest{Recipients: []string{r.admin.Recipient().String()}, By: by})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); v.Running() && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if v, err = r.svc.Get(ctx, v.ID); err != nil {
			t.Fatal(err)
		}
	}
	if v.Status != StatusCompleted || v.Type != exporter.TypeFull {
		t.Fatalf("export %+v", v)
	}
	return v
}

func (r *rig) auditLog(t *testing.T) []AuditEntry {
	log, err := r.st.AuditLog(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

var admin = Actor{Name: "@admin:fake.test", Via: "room !admins:fake.test"}

// A submitted export gets an ID, a name of its type, and a second submit
// of the same ID returns the job the first one started; one the source
// cannot export is refused before it is recorded.
func TestSubmit(t *testing.T) {
	r := setup(t, Config{})
	r.start(t)
	ctx := context.Background()
	req := ExportRequest{ID: "abcdef123456", Plaintext: true, By: admin}
	v, err := r.svc.Submit(ctx, req)
	if err != nil || v.ID != req.ID || !strings.HasPrefix(v.Name, "full-") || !strings.HasSuffix(v.Name, "-abcdef") || v.Via != admin.Via {
		t.Fatalf("%+v %v", v, err)
	}
	if again, err := r.svc.Submit(ctx, req); err != nil || again.ID != v.ID || again.CreatedAt != v.CreatedAt {
		t.Errorf("a second submit: %+v %v", again, err)
	}
	req.ID, req.Selection = "since", exporter.Selection{Since: time.Now()}
	if _, err := r.svc.Submit(ctx, req); !errors.Is(err, source.ErrUnsupported) {
		t.Errorf("a time range on a source without: %v", err)
	}
	if _, err := r.svc.Get(ctx, "since"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused export was recorded: %v", err)
	}
}

// Delete removes the archive and its key file, marks the export deleted
// and audits it; a second delete, or one of a running export, conflicts.
func TestDelete(t *testing.T) {
	r := setup(t, Config{})
	r.start(t)
	ctx := context.Background()
	v := r.exported(t, admin)
	if _, err := r.svc.CheckStored(ctx, v.ID, admin); err != nil {
		t.Fatal(err)
	}
	l, err := r.svc.DownloadLinks(ctx, v)
	if err != nil || !strings.HasPrefix(l.Archive, "https://ferry.test/download/") || !strings.HasSuffix(l.Key, ".key.age") {
		t.Fatalf("links %+v %v", l, err)
	}
	d, err := r.svc.Delete(ctx, v.ID, admin)
	if err != nil || d.Status != StatusDeleted {
		t.Fatalf("%+v %v", d, err)
	}
	if objs, _ := r.svc.storage.List(ctx, storage.ArchivePrefix); len(objs) != 0 {
		t.Errorf("left in storage: %v", objs)
	}
	if _, err := r.svc.Delete(ctx, v.ID, admin); !errors.Is(err, ErrConflict) {
		t.Errorf("deleting twice: %v", err)
	}
	if _, err := r.svc.CheckStored(ctx, v.ID, admin); !errors.Is(err, ErrConflict) {
		t.Errorf("checking a deleted archive: %v", err)
	}
	found := false
	for _, e := range r.auditLog(t) {
		found = found || e.Action == "export.delete" && e.Target == v.ID && e.Actor == admin.Name
	}
	if !found {
		t.Errorf("no export.delete in %+v", r.auditLog(t))
	}
}

// A verb whose audit entry cannot be written fails.
func TestAuditFailureIsAnError(t *testing.T) {
	r := setup(t, Config{})
	r.start(t)
	ctx := context.Background()
	v := r.exported(t, admin)
	if _, err := r.st.DB.ExecContext(ctx, `DROP TABLE ferry_audit`); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.CheckStored(ctx, v.ID, admin); err == nil || !strings.Contains(err.Error(), "audit log") {
		t.Errorf("check with no audit log: %v", err)
	}
	if _, err := r.svc.Delete(ctx, v.ID, admin); err == nil || !strings.Contains(err.Error(), "audit log") {
		t.Errorf("delete with no audit log: %v", err)
	}
	if err := r.svc.Audit(ctx, AuditEntry{Action: "x"}); err == nil {
		t.Error("Audit with no audit log succeeded")
	}
}

// A personal export: within the daily quota, once per request ID, with a
// reveal link under Ferry's base URL.
func TestPersonalExport(t *testing.T) {
	r := setup(t, Config{MydataPerDay: 2})
	r.start(t)
	ctx := context.Background()
	p, err := r.svc.PersonalExport(ctx, "p1", "@u00001:fake.test")
	if err != nil || p.Type != exporter.TypeUser || !strings.HasPrefix(p.RevealURL, "https://ferry.test"+links.RevealPath) ||
		!strings.HasPrefix(p.Name, "mydata-u00001-") {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := r.svc.PersonalExport(ctx, "p1", "@u00001:fake.test"); !errors.Is(err, ErrDuplicate) {
		t.Errorf("the same request twice: %v", err)
	}
	if _, err := r.svc.PersonalExport(ctx, "p2", "@u00001:fake.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.PersonalExport(ctx, "p3", "@u00001:fake.test"); err == nil || !strings.Contains(err.Error(), "limit is 2") {
		t.Errorf("over the quota: %v", err)
	}
}

// A CLI export recorded in the ledger (store.RecordExport) is listed, but
// its archive is not in Ferry's storage: no verb links to, verifies or
// deletes it.
func TestCLIExportIsNotInStorage(t *testing.T) {
	r := setup(t, Config{})
	ctx := context.Background()
	if err := r.st.RecordExport(ctx, &store.Export{ID: "cli-1", RequestedBy: "cli", Via: "cli", Name: "full-x", Location: "/srv/full-x.ferry",
		Size: 10, SHA256: "abc"}); err != nil {
		t.Fatal(err)
	}
	v, err := r.svc.Get(ctx, "cli-1")
	if err != nil || v.Status != StatusCompleted || v.Location != "/srv/full-x.ferry" {
		t.Fatalf("%+v %v", v, err)
	}
	if _, err := r.svc.IssueLink(ctx, "cli-1", admin); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "/srv/full-x.ferry") {
		t.Errorf("link: %v", err)
	}
	if _, err := r.svc.Delete(ctx, "cli-1", admin); !errors.Is(err, ErrConflict) {
		t.Errorf("delete: %v", err)
	}
	if _, err := r.svc.DownloadLinks(ctx, v); !errors.Is(err, ErrConflict) {
		t.Errorf("links: %v", err)
	}
	if _, err := r.svc.SubmitImport(ctx, "", ImportRequest{Export: "cli-1", Target: "t"}, "", admin); !errors.Is(err, ErrConflict) {
		t.Errorf("import: %v", err)
	}
}
