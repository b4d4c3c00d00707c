package dashboard

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/app"
)

// syncBuffer is a log a server's goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An error on Ferry's side is logged with the request's logger and not
// shown: the page says what to do, never the error (it may name a
// server, a path or a query).
func TestErrorsLoggedNotShown(t *testing.T) {
	r := newRig(t)
	var log syncBuffer
	logger := zerolog.New(&log)
	srv := httptest.NewUnstartedServer(r.s.Handler())
	srv.Config.BaseContext = func(net.Listener) context.Context { return logger.WithContext(context.Background()) }
	srv.Start()
	t.Cleanup(srv.Close)
	r.srv = srv
	c, _ := r.signIn(admin, app.RoleAdmin)
	const detail = "dial tcp 10.1.2.3:5432: SECRET-DETAIL connection refused"
	r.f.mu.Lock()
	r.f.err = errors.New(detail)
	r.f.mu.Unlock()
	for _, path := range []string{"/ui/exports", "/ui/exports/run1", "/ui/progress"} {
		a := r.do(c, "GET", path, nil)
		if a.status != http.StatusInternalServerError || strings.Contains(a.body, "SECRET-DETAIL") || !strings.Contains(a.body, "s log") {
			t.Errorf("%s: %d\n%s", path, a.status, a.body)
		}
	}
	// Logged with the route, never a login link's path (its token).
	link := r.link(admin, app.RoleAdmin, time.Minute)
	if a := r.do(r.browser(), "GET", link, nil); a.status != http.StatusInternalServerError || strings.Contains(a.body, "SECRET-DETAIL") {
		t.Errorf("a login link: %d\n%s", a.status, a.body)
	}
	if l := log.String(); strings.Contains(l, strings.TrimPrefix(link, "/ui/login/")) || !strings.Contains(l, `"route":"GET /ui/login/{token}"`) ||
		!strings.Contains(l, `"route":"GET /ui/exports/{id}","job":"run1"`) {
		t.Errorf("the log:\n%s", l)
	}
	r.f.mu.Lock()
	r.f.err, r.f.sessionErr = nil, errors.New(detail)
	r.f.mu.Unlock()
	if a := r.do(c, "GET", "/ui/exports", nil); a.status != http.StatusInternalServerError || strings.Contains(a.body, "SECRET-DETAIL") ||
		!strings.Contains(a.body, "Could not read your session") {
		t.Errorf("session error: %d\n%s", a.status, a.body)
	}
	if n := strings.Count(log.String(), "SECRET-DETAIL"); n < 4 {
		t.Errorf("%d errors logged, want 4:\n%s", n, log.String())
	}
	// A conflict's message is for people: shown.
	r.f.mu.Lock()
	r.f.sessionErr = nil
	r.f.mu.Unlock()
	c2, csrf := r.signIn(admin, app.RoleAdmin)
	if a := r.do(c2, "POST", "/ui/exports/done1/cancel", url.Values{"csrf": {csrf}}); a.status != http.StatusConflict || !strings.Contains(a.body, "already ended") {
		t.Errorf("conflict: %d\n%s", a.status, a.body)
	}
}

// The event streams' shared read of the jobs is not the first caller's:
// a browser that went away does not fail the read for the others.
func TestSnapshotOutlivesCaller(t *testing.T) {
	r := newRig(t)
	r.s.Interval = 1 << 40 // one read for the whole test
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.s.recent(gone, time.Time{}); err != nil {
		t.Fatalf("read for a caller that went away: %v", err)
	}
	jobs, err := r.s.recent(context.Background(), time.Time{})
	if err != nil || len(jobs) != len(r.f.jobs) {
		t.Fatalf("the next caller got %d jobs, %v", len(jobs), err)
	}
}
