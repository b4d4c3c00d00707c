package api

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sources"
)

// fakeService is an in-memory Service: the handlers' unit tests run
// against it in milliseconds, with no database, storage or job runner.
type fakeService struct {
	mu      sync.Mutex
	jobs    map[string]*app.View
	caps    source.Capabilities
	calls   []string // verb and ID, in order
	audit   []app.AuditEntry
	submits []app.ExportRequest
}

func newFake() *fakeService {
	caps, _ := sources.Capabilities(sources.Dendrite)
	return &fakeService{jobs: map[string]*app.View{}, caps: caps}
}

func (f *fakeService) call(verb, id string) { f.calls = append(f.calls, verb+" "+id) }

func (f *fakeService) add(v *app.View) { f.jobs[v.ID] = v }

func (f *fakeService) Submit(_ context.Context, r app.ExportRequest) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := r.Selection.Validate(); err != nil {
		return nil, err
	}
	if err := r.Selection.Check(f.caps); err != nil {
		return nil, err
	}
	f.submits = append(f.submits, r)
	v := &app.View{ID: fmt.Sprintf("job%d", len(f.submits)), Kind: app.KindExport, Status: app.StatusQueued, Name: r.Name,
		Type: exporter.ArchiveType(r.Selection, ""), RequestedBy: r.By.Name, Via: r.By.Via, CreatedAt: time.Now()}
	f.add(v)
	f.call("submit", v.ID)
	return v, nil
}

func (f *fakeService) SubmitImport(context.Context, string, app.ImportRequest, string, app.Actor) (*app.View, error) {
	return nil, errors.New("imports are not configured on this Ferry")
}

func (f *fakeService) Verify(_ context.Context, _, export string, _ app.Actor) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("verify", export)
	if e := f.jobs[export]; e.Status != app.StatusCompleted {
		return nil, fmt.Errorf("export %s is %s: only a completed export has an archive to verify: %w", export, e.Status, app.ErrConflict)
	}
	v := &app.View{ID: "ver-" + export, Kind: app.KindVerify, Status: app.StatusQueued}
	f.add(v)
	return v, nil
}

func (f *fakeService) Cancel(_ context.Context, id string, _ app.Actor) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("cancel", id)
	f.jobs[id].Status = app.StatusCancelled
	return f.jobs[id], nil
}

func (f *fakeService) Delete(_ context.Context, id string, _ app.Actor) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("delete", id)
	f.jobs[id].Status = app.StatusDeleted
	return f.jobs[id], nil
}

func (f *fakeService) Get(_ context.Context, id string) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.jobs[id]; ok {
		return v, nil
	}
	return nil, app.ErrNotFound
}

func (f *fakeService) List(_ context.Context, kind app.Kind, limit int) ([]*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*app.View
	for _, v := range f.jobs {
		if kind == "" || v.Kind == kind {
			out = append(out, v)
		}
	}
	return out[:min(limit, len(out))], nil
}

func (f *fakeService) DownloadLinks(_ context.Context, v *app.View) (*app.Links, error) {
	return &app.Links{Archive: "https://ferry.test/download/" + v.Name, Expires: time.Unix(2e9, 0)}, nil
}

func (f *fakeService) IssueLink(ctx context.Context, id string, by app.Actor) (*app.Links, error) {
	f.mu.Lock()
	f.call("link", id)
	f.mu.Unlock()
	v, err := f.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return f.DownloadLinks(ctx, v)
}

func (f *fakeService) Audit(_ context.Context, e app.AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeService) Stats(context.Context) (*app.Stats, error) {
	return &app.Stats{Counts: []app.StatusCount{{Kind: app.KindExport, Status: app.StatusCompleted, Count: 2, Bytes: 10}}}, nil
}

func (f *fakeService) Ping(context.Context) error { return nil }

func fakeServer(t *testing.T, f *fakeService) func(method, path, token, body string) (int, map[string]any) {
	s := &Server{Svc: f, Rate: 1000, Burst: 1000, Links: nil,
		Tokens: []Token{{Name: "ops", Role: RoleAdmin, Secret: adminToken}, {Name: "dash", Role: RoleReader, Secret: readerToken}}}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return func(method, path, token, body string) (int, map[string]any) {
		t.Helper()
		return call(t, srv.URL, method, path, token, body)
	}
}

// POST /api/v1/exports hands the verb the request's selection as the
// exporter's Selection: date_range is since/until, include_media false is
// media none, true leaves the default to the selection.
func TestCreateMapsTheSelection(t *testing.T) {
	f := newFake()
	do := fakeServer(t, f)
	code, out := do("POST", "/api/v1/exports", adminToken,
		`{"type":"partial","plaintext":true,"options":{"rooms":["!a:x"],"include_media":false,"date_range":null}}`)
	if code != 202 || out["export_id"] != "job1" || out["status"] != "queued" {
		t.Fatalf("%d %v", code, out)
	}
	code, _ = do("POST", "/api/v1/exports", adminToken, `{"type":"partial","plaintext":true,"options":{"users":["@u:x"],"include_media":true}}`)
	if code != 202 {
		t.Fatal(code)
	}
	if len(f.submits) != 2 {
		t.Fatalf("%d submits", len(f.submits))
	}
	got, want := f.submits[0], exporter.Selection{Type: "partial", Rooms: []string{"!a:x"}, Media: source.MediaNone}
	if fmt.Sprint(got.Selection) != fmt.Sprint(want) || got.By != (app.Actor{Name: "token:ops", Via: "api"}) || !got.Plaintext {
		t.Errorf("submitted %+v, want selection %+v by token:ops via api", got, want)
	}
	if m := f.submits[1].Selection.Media; m != "" {
		t.Errorf("include_media true: media %q, want the default", m)
	}
}

// A time range on a Dendrite source: 400 with the verb's message (the
// selection's check against the capabilities), nothing submitted.
func TestCreateRefusesUnsupportedSelection(t *testing.T) {
	f := newFake()
	do := fakeServer(t, f)
	want := exporter.Selection{Type: "partial", Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}.Check(f.caps)
	code, out := do("POST", "/api/v1/exports", adminToken, `{"type":"partial","plaintext":true,"options":{"date_range":{"start":"2026-01-01T00:00:00Z"}}}`)
	if code != 400 || out["error"] != want.Error() || out["errcode"] != "M_INVALID_PARAM" {
		t.Fatalf("%d %v, want 400 %q", code, out, want)
	}
	if len(f.submits) != 0 {
		t.Error("submitted")
	}
}

// DELETE /api/v1/exports/{id}: cancels a running export, deletes a
// completed one's archive, and refuses anything else; an import's ID is
// not an export's.
func TestRemove(t *testing.T) {
	f := newFake()
	f.add(&app.View{ID: "run", Kind: app.KindExport, Status: app.StatusProcessing})
	f.add(&app.View{ID: "done", Kind: app.KindExport, Status: app.StatusCompleted, Name: "done"})
	f.add(&app.View{ID: "failed", Kind: app.KindExport, Status: app.StatusFailed})
	f.add(&app.View{ID: "imp", Kind: app.KindImport, Status: app.StatusCompleted})
	do := fakeServer(t, f)
	for _, c := range []struct {
		id   string
		code int
	}{{"run", 200}, {"done", 204}, {"failed", 409}, {"imp", 404}, {"nope", 404}} {
		if code, out := do("DELETE", "/api/v1/exports/"+c.id, adminToken, ""); code != c.code {
			t.Errorf("DELETE %s: %d %v, want %d", c.id, code, out, c.code)
		}
	}
	if got := strings.Join(f.calls, ","); got != "cancel run,delete done" {
		t.Errorf("verbs called: %s", got)
	}
	if code, _ := do("DELETE", "/api/v1/exports/done", readerToken, ""); code != 403 {
		t.Errorf("a reader deletes: %d", code)
	}
}

// Links only for admins, a fresh one through the audited verb; a verify of
// an unfinished export is the verb's conflict.
func TestLinksAndVerify(t *testing.T) {
	f := newFake()
	f.add(&app.View{ID: "done", Kind: app.KindExport, Status: app.StatusCompleted, Name: "done"})
	f.add(&app.View{ID: "run", Kind: app.KindExport, Status: app.StatusProcessing})
	do := fakeServer(t, f)
	if code, out := do("POST", "/api/v1/exports/done/verify", adminToken, ""); code != 202 || out["kind"] != "verify" {
		t.Errorf("verify: %d %v", code, out)
	}
	if code, out := do("POST", "/api/v1/exports/run/verify", adminToken, ""); code != 409 || !strings.Contains(fmt.Sprint(out["error"]), "only a completed export") {
		t.Errorf("verify of a running export: %d %v", code, out)
	}
	if code, out := do("GET", "/api/v1/exports/nope", readerToken, ""); code != 404 || !strings.Contains(fmt.Sprint(out["error"]), "/api/v1/jobs") {
		t.Errorf("unknown export: %d %v", code, out)
	}
	if code, out := do("POST", "/api/v1/exports/done/link", adminToken, ""); code != 501 {
		t.Errorf("link without a link handler: %d %v", code, out)
	}
}
