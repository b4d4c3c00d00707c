package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The 202 answers carry the stored row's creation time, not Go's zero time.
func TestAcceptedAnswersCarryCreatedAt(t *testing.T) {
	e := newEnv(t, 100, 100)
	before := time.Now().Add(-time.Second)
	check := func(what string, out map[string]any) {
		t.Helper()
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(out["created_at"]))
		if err != nil || at.Before(before) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: created_at %v, want about now", what, out["created_at"])
		}
	}
	code, out := e.do(t, "POST", "/api/v1/exports", adminToken, `{"type":"full","plaintext":true,"name":"created-at"}`)
	if code != 202 {
		t.Fatalf("create: %d %v", code, out)
	}
	check("POST /exports", out)
	id := out["export_id"].(string)
	e.waitJob(t, id)
	code, out = e.do(t, "POST", "/api/v1/exports/"+id+"/verify", adminToken, "")
	if code != 202 {
		t.Fatalf("verify: %d %v", code, out)
	}
	check("POST /exports/{id}/verify", out)
}

// A reader lists and follows exports; only an admin gets download links.
func TestReaderCannotMintLinks(t *testing.T) {
	e := newEnv(t, 100, 100)
	_, out := e.do(t, "POST", "/api/v1/exports", adminToken, `{"type":"full","plaintext":true,"name":"reader-links"}`)
	id := out["export_id"].(string)
	if done := e.waitJob(t, id); done["status"] != "completed" {
		t.Fatalf("export %v", done)
	}
	for _, path := range []string{"/api/v1/exports/" + id, "/api/v1/jobs/" + id} {
		if code, out := e.do(t, "GET", path, readerToken, ""); code != 200 || out["link"] != nil {
			t.Errorf("reader GET %s: %d, link %v", path, code, out["link"])
		}
	}
	_, list := e.do(t, "GET", "/api/v1/exports", readerToken, "")
	for _, x := range list["exports"].([]any) {
		if x.(map[string]any)["link"] != nil {
			t.Errorf("a reader's list carries a link: %v", x)
		}
	}
	if code, out := e.do(t, "POST", "/api/v1/exports/"+id+"/link", readerToken, ""); code != 403 || !strings.Contains(fmt.Sprint(out["error"]), "admin") {
		t.Errorf("reader POST /link: %d %v, want 403", code, out)
	}
	code, out := e.do(t, "POST", "/api/v1/exports/"+id+"/link", adminToken, "")
	if code != 200 || out["link"] == nil || out["link_expires"] == nil {
		t.Fatalf("admin POST /link: %d %v", code, out)
	}
	resp, err := http.Get(out["link"].(string))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the minted link: %d", resp.StatusCode)
	}
	if code, out := e.do(t, "GET", "/api/v1/exports/"+id, adminToken, ""); code != 200 || out["link"] == nil {
		t.Errorf("admin status lost its link: %d %v", code, out)
	}
}

// 2,000 bogus /download and /reveal requests from one address: most get
// 429 with Retry-After, and the audit log grows by a bounded number of
// rows (the requests let through, plus one row per address and window
// that counts the refused ones).
func TestLinkFloodIsLimitedAndAggregated(t *testing.T) {
	e := newEnv(t, 100, 100)
	ctx := context.Background()
	before, _ := e.st.AuditLog(ctx, 100000)
	const n = 2000
	limited := 0
	start := time.Now()
	for i := 0; i < n; i++ {
		method, path := "GET", "/download/bogus-token/x.ferry"
		if i%2 == 1 {
			method, path = "POST", "/reveal/bogus-token"
		}
		req, _ := http.NewRequest(method, e.srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	// Let through: each limit's burst and what it refills while the loop
	// runs; refused: one row per limit and window.
	bound := 2*linkBurst + 2*int(time.Since(start).Seconds()+1)*linkRate + 2
	e.server.refusals.Flush()
	after, _ := e.st.AuditLog(ctx, 100000)
	rows := after[:len(after)-len(before)]
	if limited < n*9/10 {
		t.Errorf("only %d of %d requests were limited", limited, n)
	}
	counted := 0
	for _, r := range rows {
		var k int
		if _, err := fmt.Sscanf(r.Detail, "%d requests refused", &k); err == nil {
			counted += k
		} else {
			counted++
		}
	}
	t.Logf("%d bogus requests: %d limited, %d audit rows counting %d requests", n, limited, len(rows), counted)
	if len(rows) > bound || counted != n {
		t.Errorf("%d requests left %d audit rows counting %d requests; want at most %d rows counting all %d", n, len(rows), counted, bound, n)
	}
}

// Behind a trusted proxy, the limit is per client (X-Forwarded-For), not
// per proxy; an IPv6 client is one client for its whole /64, so hopping
// addresses in it gets neither more requests nor more audit rows.
func TestLinkLimitPerClientBehindProxy(t *testing.T) {
	e := newEnv(t, 100, 100)
	ctx := context.Background()
	s := &Server{Svc: e.app, Links: e.server.Links, TrustedProxies: []string{"127.0.0.1"}}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(client string) int {
		req, _ := http.NewRequest("GET", srv.URL+"/download/bogus/x.ferry", nil)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	before, _ := e.st.AuditLog(ctx, 100000)
	limited := 0
	for i := 0; i < 200; i++ {
		if get(fmt.Sprintf("2001:db8:1:2::%x", i+1)) == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 150 {
		t.Errorf("200 requests hopping addresses in one /64: %d limited", limited)
	}
	if code := get("198.51.100.7"); code != http.StatusForbidden {
		t.Errorf("another client behind the same proxy: %d, want 403 (not limited)", code)
	}
	s.refusals.Flush()
	after, _ := e.st.AuditLog(ctx, 100000)
	refusalRows := 0
	for _, r := range after[:len(after)-len(before)] {
		if strings.HasPrefix(r.Outcome, "refused (429)") {
			refusalRows++
			if r.Via != "download 2001:db8:1:2::/64" {
				t.Errorf("refusals counted for %q", r.Via)
			}
		}
	}
	if refusalRows != 1 {
		t.Errorf("%d refusal rows, want 1", refusalRows)
	}
}
