package app

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/exporter"
)

// Login links: only the token's hash is stored; a peek uses nothing up;
// the first login uses the link (also when two race) and opens a session
// stored by hash too; a used link and an ended session are ErrGone; every
// step is audited without the token.
func TestDashboardLogin(t *testing.T) {
	r := setup(t, Config{})
	ctx := context.Background()
	if _, err := r.svc.IssueLogin(ctx, "@x:fake.test", "root", admin); err == nil {
		t.Fatal("an unknown role was accepted")
	}
	link, err := r.svc.IssueLogin(ctx, admin.Name, RoleAdmin, Actor{Name: admin.Name, Via: "room !admins:fake.test"})
	if err != nil || !strings.HasPrefix(link, "https://ferry.test"+LoginPath) {
		t.Fatalf("%q %v", link, err)
	}
	token := strings.TrimPrefix(link, "https://ferry.test"+LoginPath)
	for range 2 {
		if g, err := r.svc.PeekLogin(ctx, token); err != nil || g.User != admin.Name || g.Role != RoleAdmin || time.Until(g.Expires) > LoginWindow {
			t.Fatalf("peek: %+v %v", g, err)
		}
	}
	var wg sync.WaitGroup
	results := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, s, err := r.svc.Login(ctx, token, "127.0.0.1"); err == nil {
				results <- s
			} else if !errors.Is(err, ErrGone) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(results)
	var sessions []string
	for s := range results {
		sessions = append(sessions, s)
	}
	if len(sessions) != 1 {
		t.Fatalf("%d logins with one link", len(sessions))
	}
	session := sessions[0]
	if g, err := r.svc.Session(ctx, session); err != nil || g.User != admin.Name || time.Until(g.Expires) < SessionLifetime-time.Minute {
		t.Fatalf("session: %+v %v", g, err)
	}
	if _, err := r.svc.PeekLogin(ctx, token); !errors.Is(err, ErrGone) {
		t.Errorf("peek of a used link: %v", err)
	}
	for _, table := range []string{"ferry_dashboard_logins", "ferry_dashboard_sessions"} {
		rows, err := r.st.DB.Query(`SELECT token_hash FROM ` + table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var h string
			rows.Scan(&h)
			if h == token || h == session || len(h) != 64 {
				t.Errorf("%s stores %q", table, h)
			}
		}
		rows.Close()
	}
	if err := r.svc.Logout(ctx, session, Actor{Name: admin.Name, Via: ViaDashboard}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Session(ctx, session); !errors.Is(err, ErrGone) {
		t.Errorf("session after logout: %v", err)
	}
	var actions []string
	for _, e := range r.auditLog(t) {
		actions = append(actions, e.Action+" "+e.Outcome)
		if strings.Contains(e.Detail+e.Target+e.Via, token) || strings.Contains(e.Detail+e.Target+e.Via, session) {
			t.Errorf("a token in the audit log: %+v", e)
		}
	}
	slices.Sort(actions)
	if got := strings.Join(actions, ", "); got != "dashboard.link ok, dashboard.login ok, dashboard.login refused, dashboard.login refused, dashboard.login refused, dashboard.logout ok" {
		t.Errorf("audit: %s", got)
	}
}

// Jobs in words, one job with its verification and audit trail, the
// audit log filtered and paged, a user's own exports, a schedule's runs.
func TestDashboardViews(t *testing.T) {
	r := setup(t, Config{MydataPerDay: 5})
	r.start(t)
	ctx := context.Background()
	v := r.exported(t, admin)
	ver, err := r.svc.Verify(ctx, "", v.ID, Actor{Name: "@second:fake.test", Via: ViaDashboard})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Submit(ctx, ExportRequest{ID: "partial1", Plaintext: true, By: Actor{Name: "token:ops", Via: "api"},
		Selection: exporter.Selection{Type: exporter.TypeFull, Media: "none"}}); err != nil {
		t.Fatal(err)
	}
	list, err := r.svc.Jobs(ctx, JobQuery{})
	if err != nil || len(list) != 3 {
		t.Fatalf("%d jobs, %v", len(list), err)
	}
	words := map[string]string{}
	for _, j := range list {
		words[j.ID] = j.Selection
	}
	if words["partial1"] != "partial, media none, plaintext" || words[ver.ID] != "export "+v.ID || words[v.ID] != "full" {
		t.Errorf("selections: %v", words)
	}
	d, err := r.svc.Job(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Verification == nil || d.Verification.ID != ver.ID || len(d.Related) != 1 {
		t.Errorf("detail: verification %+v, related %d", d.Verification, len(d.Related))
	}
	var trail []string
	for _, e := range d.Audit {
		trail = append(trail, e.Action)
	}
	if got := strings.Join(trail, " "); !strings.Contains(got, "export.create") || !strings.Contains(got, "export.finish") || !strings.Contains(got, "export.verify") {
		t.Errorf("trail: %s", got)
	}
	if _, err := r.svc.Job(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}

	for i := range 7 {
		r.svc.Audit(ctx, AuditEntry{At: time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC), Actor: "@second:fake.test", Via: ViaDashboard, Action: "link.create", Target: v.ID})
	}
	page, more, err := r.svc.AuditLog(ctx, AuditQuery{Actor: "@second:fake.test", Action: "link", Limit: 3})
	if err != nil || len(page) != 3 || !more || page[0].At.Day() != 7 {
		t.Fatalf("page 1: %d %v %v", len(page), more, err)
	}
	page, more, _ = r.svc.AuditLog(ctx, AuditQuery{Actor: "@second:fake.test", Action: "link", Limit: 3, Offset: 6})
	if len(page) != 1 || more || page[0].At.Day() != 1 {
		t.Errorf("last page: %d %v", len(page), more)
	}
	page, _, _ = r.svc.AuditLog(ctx, AuditQuery{Since: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)})
	if len(page) != 2 {
		t.Errorf("time range: %d entries", len(page))
	}

	p, err := r.svc.PersonalExport(ctx, "mine1", "@bob:fake.test")
	if err != nil {
		t.Fatal(err)
	}
	own, err := r.svc.PersonalExports(ctx, "@bob:fake.test")
	if err != nil || len(own) != 1 || own[0].ID != p.ID || !strings.HasPrefix(own[0].Selection, "personal data of @bob") {
		t.Errorf("bob's exports: %v %v", own, err)
	}
	if other, _ := r.svc.PersonalExports(ctx, admin.Name); len(other) != 0 {
		t.Errorf("the admin's personal exports: %d", len(other))
	}
	if runs, err := r.svc.ScheduleRuns(ctx, "nightly", 10); err != nil || len(runs) != 0 {
		t.Errorf("runs: %v %v", runs, err)
	}
	if next := NextRun(Schedule{Cron: "0 3 * * *"}, time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)); next.Day() != 2 || next.Hour() != 3 {
		t.Errorf("next run %v", next)
	}
}
