package dashboard

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/app"
)

var (
	nextRe = regexp.MustCompile(`href="([^"]+)" rel="next"`)
	prevRe = regexp.MustCompile(`href="([^"]+)" rel="prev"`)
)

// The exports list pages: 100 jobs a page, newest first, with links to
// the older and newer pages keeping the kind; past the newest 200 too.
func TestExportsPaging(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	var many []*app.JobView
	for i := range 250 {
		many = append(many, &app.JobView{View: &app.View{ID: fmt.Sprintf("job%03d", i), Kind: app.KindVerify, Status: app.StatusCompleted,
			RequestedBy: admin, Via: "api", CreatedAt: now.Add(-time.Duration(i) * time.Minute)}})
	}
	r.f.jobs = append(many, r.f.jobs...)
	c, _ := r.signIn(admin, app.RoleAdmin)
	path := "/ui/exports?kind=verify"
	var pages []string
	for range 5 {
		a := r.do(c, "GET", path, nil)
		if a.status != 200 {
			t.Fatalf("%s: %d", path, a.status)
		}
		pages = append(pages, a.body)
		m := nextRe.FindStringSubmatch(a.body)
		if m == nil {
			break
		}
		path = strings.ReplaceAll(m[1], "&amp;", "&")
		if !strings.Contains(path, "kind=verify") {
			t.Fatalf("next link %q lost the kind", path)
		}
	}
	if len(pages) != 3 {
		t.Fatalf("%d pages, want 3", len(pages))
	}
	for i, want := range []struct{ first, last string }{{"job000", "job099"}, {"job100", "job199"}, {"job200", "job249"}} {
		body := pages[i]
		if !strings.Contains(body, want.first) || !strings.Contains(body, want.last) {
			t.Errorf("page %d lacks %s or %s", i+1, want.first, want.last)
		}
		if n := strings.Count(body, `<a href="/ui/exports/job`); n != 100 && i < 2 {
			t.Errorf("page %d: %d jobs", i+1, n)
		}
		if (prevRe.FindStringSubmatch(body) != nil) != (i > 0) {
			t.Errorf("page %d: prev link wrong", i+1)
		}
		if !strings.Contains(body, fmt.Sprintf("page %d", i+1)) {
			t.Errorf("page %d does not say its number", i+1)
		}
	}
	if q := r.f.lastJobs; q.Offset != 200 || q.Kind != app.KindVerify {
		t.Errorf("last query: %+v", q)
	}
	for _, bad := range []string{"page=0", "page=x", "page=1000001", "page=99999999999999999999"} {
		if a := r.do(c, "GET", "/ui/exports?"+bad, nil); a.status != http.StatusBadRequest {
			t.Errorf("%s: %d", bad, a.status)
		}
	}
}

// The history's page numbers start at 1 and are capped, so that the
// offset can't overflow; "until" a minute or a date includes all of it.
func TestHistoryPagesAndUntil(t *testing.T) {
	r := newRig(t)
	c, _ := r.signIn(admin, app.RoleAdmin)
	a := r.do(c, "GET", "/ui/history", nil)
	if a.status != 200 || !strings.Contains(a.body, "page 1") || r.f.lastQ.Offset != 0 {
		t.Fatalf("first page: %d, offset %d", a.status, r.f.lastQ.Offset)
	}
	if a := r.do(c, "GET", "/ui/history?page=1000000", nil); a.status != 200 || r.f.lastQ.Offset != 999_999*historyPageSize {
		t.Errorf("page 1000000: %d, offset %d", a.status, r.f.lastQ.Offset)
	}
	for _, bad := range []string{"page=0", "page=1000001", "page=" + fmt.Sprint(int64(1)<<62)} {
		if a := r.do(c, "GET", "/ui/history?"+bad, nil); a.status != http.StatusBadRequest {
			t.Errorf("%s: %d", bad, a.status)
		}
	}
	for until, want := range map[string]time.Time{
		"2026-12-01T10:00":     time.Date(2026, 12, 1, 10, 1, 0, 0, time.UTC),
		"2026-12-01T10:00:30":  time.Date(2026, 12, 1, 10, 0, 31, 0, time.UTC),
		"2026-12-01":           time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC),
		"2026-12-01T10:00:00Z": time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
	} {
		if a := r.do(c, "GET", "/ui/history?until="+until, nil); a.status != 200 || !r.f.lastQ.Until.Equal(want) {
			t.Errorf("until=%s: %d, bound %v, want %v", until, a.status, r.f.lastQ.Until, want)
		}
	}
	if a := r.do(c, "GET", "/ui/history?since=2026-12-01T10:00", nil); !r.f.lastQ.Since.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("since: %d %v", a.status, r.f.lastQ.Since)
	}
}
