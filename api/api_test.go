package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sources"
	"github.com/ferry-matrix/ferry/source/sourcetest"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

const (
	adminToken  = "admin-token-0123456789abcdefghijklmnop"
	readerToken = "reader-token-0123456789abcdefghijklmno"
)

type apiEnv struct {
	srv       *httptest.Server
	fake      *sourcetest.Fake
	svc       *jobs.Service
	st        *store.Store
	bucket    *storage.Store
	app       *app.Service
	server    *Server
	recipient string
}

func newEnv(t testing.TB, rate float64, burst int) *apiEnv {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+t.TempDir()+"/ferry.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bucket, err := storage.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	fake := &sourcetest.Fake{Users: 2000}
	svc := jobs.New(st, bucket)
	svc.Instance, svc.PartSize = "api-test", 16<<10
	svc.Open = func(context.Context, string) (source.Source, error) { return fake, nil }
	stop, err := svc.Start(ctx, jobs.Config{FetchPollInterval: 50 * time.Millisecond, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(context.Background()) })
	signer, _ := links.NewSigner(bytes.Repeat([]byte{9}, 32), nil)
	lh := &links.Handler{Store: bucket, Signer: signer}
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	a := app.New(st, bucket, svc, lh, app.Config{Source: "fake", BaseURL: srv.URL})
	s := &Server{Svc: a, Rate: rate, Burst: burst,
		Tokens: []Token{{Name: "ops", Role: RoleAdmin, Secret: adminToken}, {Name: "dash", Role: RoleReader, Secret: readerToken}},
		Links:  lh, Reveal: a.RevealHandler()}
	handler = s.Handler()
	id, _ := age.GenerateX25519Identity()
	return &apiEnv{srv: srv, fake: fake, svc: svc, st: st, bucket: bucket, app: a, server: s, recipient: id.Recipient().String()}
}

func (e *apiEnv) do(t testing.TB, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	return call(t, e.srv.URL, method, path, token, body)
}

// call makes one API request and decodes its JSON answer.
func call(t testing.TB, base, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestAuth(t *testing.T) {
	e := newEnv(t, 100, 100)
	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/v1/exports", "", 401},
		{"GET", "/api/v1/exports", "wrong", 401},
		{"GET", "/api/v1/exports", readerToken, 200},
		{"POST", "/api/v1/exports", readerToken, 403},
		{"DELETE", "/api/v1/exports/x", readerToken, 403},
		{"GET", "/api/v1/nothing", adminToken, 404},
	} {
		code, body := e.do(t, c.method, c.path, c.token, `{}`)
		if code != c.want || (code >= 400 && body["error"] == "") {
			t.Errorf("%s %s with %q: %d %v, want %d with a message", c.method, c.path, c.token, code, body, c.want)
		}
	}
	log, _ := e.st.AuditLog(context.Background(), 10)
	refused := 0
	for _, l := range log {
		if l.Outcome == "refused" {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d refusals in the audit log, want 3: %+v", refused, log)
	}
}

func TestBadRequestsAreExplained(t *testing.T) {
	e := newEnv(t, 100, 100)
	for body, want := range map[string]string{
		`not json`: "request body",
		`{"type":"full","plaintext":true,"frobnicate":1}`:               "unknown field",
		`{"type":"weekly","plaintext":true}`:                            `use "full" or "partial"`,
		`{"type":"partial","plaintext":true}`:                           "needs rooms, users or a time range",
		`{"type":"full","options":{"rooms":["!a:x"]},"plaintext":true}`: `use type "partial"`,
		`{"type":"full"}`: "recipients",
		`{"type":"full","recipients":["age1nope"]}`:                                          "age1",
		`{"type":"full","plaintext":true,"options":{"media":"some"}}`:                        "media",
		`{"type":"partial","plaintext":true,"options":{"date_range":{"start":"yesterday"}}}`: "RFC 3339",
		`{"type":"full","plaintext":true,"name":"../../etc"}`:                                "one path segment",
		`{"type":"full","plaintext":true,"options":{"access_tokens":true}}`:                  "encrypted",
	} {
		code, out := e.do(t, "POST", "/api/v1/exports", adminToken, body)
		if code != 400 || !strings.Contains(fmt.Sprint(out["error"]), want) {
			t.Errorf("%s: %d %v, want 400 mentioning %q", body, code, out, want)
		}
	}
	if code, out := e.do(t, "GET", "/api/v1/exports?limit=0", adminToken, ""); code != 400 {
		t.Errorf("limit=0: %d %v", code, out)
	}
	if code, _ := e.do(t, "GET", "/api/v1/exports/nope", adminToken, ""); code != 404 {
		t.Errorf("unknown export: %d", code)
	}
}

func TestExportLifecycle(t *testing.T) {
	e := newEnv(t, 100, 100)
	code, out := e.do(t, "POST", "/api/v1/exports", adminToken,
		`{"type":"full","recipients":["`+e.recipient+`"],"name":"api-full","options":{"include_media":true}}`)
	if code != 202 || out["status"] != "queued" {
		t.Fatalf("create: %d %v", code, out)
	}
	id := out["export_id"].(string)
	var status map[string]any
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, status = e.do(t, "GET", "/api/v1/exports/"+id, adminToken, "")
		if status["status"] == "completed" || status["status"] == "failed" {
			break
		}
	}
	if status["status"] != "completed" || status["progress"].(float64) != 100 || len(status["checksum"].(string)) != 64 || status["link"] == nil {
		t.Fatalf("status %v", status)
	}
	// The link downloads the archive.
	resp, err := http.Get(status["link"].(string))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || int64(len(data)) != int64(status["size"].(float64)) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(data))
	}
	// The handler writes the audit entry once the response is sent: poll briefly.
	var audit []store.AuditEntry
	downloaded := false
	for deadline := time.Now().Add(5 * time.Second); !downloaded && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		audit, _ = e.st.AuditLog(context.Background(), 20)
		for _, a := range audit {
			downloaded = downloaded || a.Action == "download" && a.Target == storage.ArchiveKey("api-full") && strings.HasPrefix(a.Outcome, "ok (200)")
		}
	}
	if !downloaded {
		t.Errorf("download not audited: %+v", audit)
	}
	code, list := e.do(t, "GET", "/api/v1/exports", readerToken, "")
	if code != 200 || len(list["exports"].([]any)) != 1 {
		t.Fatalf("list: %d %v", code, list)
	}
	// Delete the finished export's archive.
	if code, _ := e.do(t, "DELETE", "/api/v1/exports/"+id, adminToken, ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if _, err := e.bucket.Stat(context.Background(), storage.ArchiveKey("api-full")); err == nil {
		t.Fatal("archive still there")
	}
	if code, _ := e.do(t, "DELETE", "/api/v1/exports/"+id, adminToken, ""); code != 409 {
		t.Fatalf("delete twice: %d", code)
	}

	// Cancel a running export.
	e.fake.OnUser = func(int) error { time.Sleep(2 * time.Millisecond); return nil }
	_, out = e.do(t, "POST", "/api/v1/exports", adminToken, `{"type":"full","plaintext":true,"name":"api-slow"}`)
	slow := out["export_id"].(string)
	time.Sleep(300 * time.Millisecond)
	if code, out := e.do(t, "DELETE", "/api/v1/exports/"+slow, adminToken, ""); code != 200 || out["status"] != "cancelled" {
		t.Fatalf("cancel: %d %v", code, out)
	}

	// Metrics and health.
	resp, _ = http.Get(e.srv.URL + "/metrics")
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ferry_exports{status="deleted"} 1`, `ferry_exports{status="cancelled"} 1`, "ferry_queue_depth 0"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if resp, _ := http.Get(e.srv.URL + "/healthz"); resp.StatusCode != 200 {
		t.Errorf("healthz %d", resp.StatusCode)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, 1, 5)
	limited := 0
	for i := 0; i < 20; i++ {
		code, out := e.do(t, "GET", "/api/v1/exports", readerToken, "")
		if code == 429 {
			limited++
			if !strings.Contains(fmt.Sprint(out["error"]), "too many") {
				t.Errorf("429 without a message: %v", out)
			}
		}
	}
	if limited < 10 {
		t.Errorf("only %d of 20 rapid requests were limited", limited)
	}
	// Another client is not affected.
	if code, _ := e.do(t, "GET", "/api/v1/exports", adminToken, ""); code != 200 {
		t.Errorf("other token limited too: %d", code)
	}
}

func (e *apiEnv) waitJob(t *testing.T, id string) map[string]any {
	t.Helper()
	var out map[string]any
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, out = e.do(t, "GET", "/api/v1/jobs/"+id, readerToken, "")
		if s := out["status"]; s == "completed" || s == "failed" || s == "cancelled" {
			return out
		}
	}
	t.Fatalf("job %s did not end: %v", id, out)
	return nil
}

// Verify and import jobs: created over the API, listed and followed under
// /api/v1/jobs, kept out of /api/v1/exports, and counted in /metrics.
func TestVerifyAndImportJobs(t *testing.T) {
	e := newEnv(t, 100, 100)
	var imported atomic.Int64
	e.svc.Import = func(_ context.Context, r *archive.Reader, req jobs.ImportRequest, _ importer.Progress) (string, error) {
		if req.Target != "staging" {
			return "", fmt.Errorf("no import target %q", req.Target)
		}
		imported.Add(1)
		return "imported " + r.Manifest().ArchiveID, nil
	}
	_, out := e.do(t, "POST", "/api/v1/exports", adminToken, `{"type":"full","plaintext":true,"name":"api-v","verify":true}`)
	id := out["export_id"].(string)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && out["status"] != "completed"; time.Sleep(50 * time.Millisecond) {
		_, out = e.do(t, "GET", "/api/v1/exports/"+id, readerToken, "")
	}
	// "verify": true queued a verification; a plaintext archive is checked inside too.
	v := e.waitJob(t, id+"-verify")
	if v["status"] != "completed" || v["kind"] != "verify" || !strings.Contains(v["result"].(string), "contents checked: 2000 records") {
		t.Fatalf("verification %v", v)
	}
	code, out := e.do(t, "POST", "/api/v1/exports/"+id+"/verify", adminToken, "")
	if code != 202 || out["kind"] != "verify" {
		t.Fatalf("verify: %d %v", code, out)
	}
	e.waitJob(t, out["export_id"].(string))
	if code, out := e.do(t, "POST", "/api/v1/exports/nope/verify", adminToken, ""); code != 404 {
		t.Errorf("verify of an unknown export: %d %v", code, out)
	}
	if code, _ := e.do(t, "POST", "/api/v1/exports/"+id+"/verify", readerToken, ""); code != 403 {
		t.Errorf("a reader verified: %d", code)
	}

	code, out = e.do(t, "POST", "/api/v1/imports", adminToken, `{"export":"`+id+`","target":"staging","dry_run":true}`)
	if code != 202 || out["kind"] != "import" {
		t.Fatalf("import: %d %v", code, out)
	}
	imp := e.waitJob(t, out["export_id"].(string))
	if imp["status"] != "completed" || !strings.HasPrefix(imp["result"].(string), "imported ") || imported.Load() != 1 {
		t.Fatalf("import job %v", imp)
	}
	_, out = e.do(t, "POST", "/api/v1/imports", adminToken, `{"archive":"api-v","target":"elsewhere"}`)
	if failed := e.waitJob(t, out["export_id"].(string)); failed["status"] != "failed" || !strings.Contains(failed["error"].(string), `no import target "elsewhere"`) {
		t.Fatalf("failed import %v", failed)
	}
	for _, bad := range []string{`{"target":"staging"}`, `{"archive":"nope","target":"staging"}`, `{"export":"` + id + `"}`, `{"export":1}`, `{"exprot":"x"}`} {
		if code, out := e.do(t, "POST", "/api/v1/imports", adminToken, bad); code != 400 || out["error"] == "" {
			t.Errorf("bad import %s: %d %v", bad, code, out)
		}
	}
	// An import job is not an export: /exports doesn't show or delete it.
	if code, _ := e.do(t, "DELETE", "/api/v1/exports/"+imp["export_id"].(string), adminToken, ""); code != 404 {
		t.Errorf("DELETE /exports/<import>: %d", code)
	}
	_, list := e.do(t, "GET", "/api/v1/jobs?kind=import", readerToken, "")
	if n := len(list["jobs"].([]any)); n != 2 {
		t.Errorf("%d import jobs listed, want 2", n)
	}
	_, list = e.do(t, "GET", "/api/v1/exports", readerToken, "")
	if n := len(list["exports"].([]any)); n != 1 {
		t.Errorf("%d exports listed, want 1", n)
	}
	if code, _ := e.do(t, "GET", "/api/v1/jobs?kind=backup", readerToken, ""); code != 400 {
		t.Errorf("bad kind: %d", code)
	}

	resp, _ := http.Get(e.srv.URL + "/metrics")
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ferry_imports{status="completed"} 1`, `ferry_imports{status="failed"} 1`, `ferry_import_seconds_total{status="completed"}`,
		`ferry_verifications{status="completed"} 2`, `ferry_exports{status="completed"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// A time range on a Dendrite source is refused when the export is
// requested, with the message chat and the CLI give (the selection's
// check against the source's capabilities), and nothing is queued.
func TestUnsupportedSelectionIsRefusedAtSubmit(t *testing.T) {
	e := newEnv(t, 100, 100)
	caps, err := sources.Capabilities(sources.Dendrite)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Capabilities = func(string) (source.Capabilities, error) { return caps, nil }
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	want := exporter.Selection{Type: exporter.TypePartial, Since: since}.Check(caps)
	code, out := e.do(t, "POST", "/api/v1/exports", adminToken,
		`{"type":"partial","plaintext":true,"options":{"date_range":{"start":"2026-01-01T00:00:00Z"}}}`)
	if code != 400 || out["error"] != want.Error() {
		t.Fatalf("%d %v, want 400 with %q", code, out, want)
	}
	if list, _ := e.st.ListJobs(context.Background(), "", 10); len(list) != 0 {
		t.Errorf("%d jobs queued", len(list))
	}
}
