package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Dashboard logins and sessions, and the audit and job queries, on both
// engines: a login is used once; expired ones are gone; the audit query
// filters by actor, action prefix, time and targets, and pages.
func TestDashboardQueries(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		g := Grant{User: "@a:x", Role: "admin", Expires: time.Now().Add(time.Minute)}
		if err := s.PutLogin(ctx, "tok", g); err != nil {
			t.Fatal(err)
		}
		s.PutLogin(ctx, "old", Grant{User: "@a:x", Role: "admin", Expires: time.Now().Add(-time.Second)})
		if got, err := s.PeekLogin(ctx, "tok"); err != nil || got.User != "@a:x" {
			t.Fatalf("peek %+v %v", got, err)
		}
		if got, err := s.ConsumeLogin(ctx, "tok"); err != nil || got.Role != "admin" {
			t.Fatalf("consume %+v %v", got, err)
		}
		for _, tok := range []string{"tok", "old", "never"} {
			if _, err := s.ConsumeLogin(ctx, tok); !errors.Is(err, ErrGone) {
				t.Errorf("consume %s: %v", tok, err)
			}
		}
		s.PutSession(ctx, "sess", g)
		if got, err := s.Session(ctx, "sess"); err != nil || got.User != "@a:x" {
			t.Fatalf("session %+v %v", got, err)
		}
		s.EndSession(ctx, "sess")
		if _, err := s.Session(ctx, "sess"); !errors.Is(err, ErrGone) {
			t.Errorf("ended session: %v", err)
		}

		base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		for i, e := range []AuditEntry{{Actor: "@a:x", Action: "export.create", Target: "e1"}, {Actor: "@b:x", Action: "export.cancel", Target: "e1"},
			{Actor: "@a:x", Action: "link.create", Target: "e2"}, {Actor: "@a:x", Action: "exporter.odd", Target: "e3"}} {
			e.At, e.Via, e.Outcome = base.Add(time.Duration(i)*time.Hour), "dashboard", "ok"
			if err := s.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			q    AuditQuery
			want int
			more bool
		}{
			{AuditQuery{Actor: "@a:x"}, 3, false},
			{AuditQuery{Action: "export."}, 2, false},
			{AuditQuery{Action: "export"}, 3, false},
			{AuditQuery{Since: base.Add(time.Hour), Until: base.Add(3 * time.Hour)}, 2, false},
			{AuditQuery{Targets: []string{"e1", "e3"}}, 3, false},
			{AuditQuery{Limit: 3}, 3, true},
			{AuditQuery{Limit: 3, Offset: 3}, 1, false},
		} {
			got, more, err := s.QueryAudit(ctx, c.q)
			if err != nil || len(got) != c.want || more != c.more {
				t.Errorf("%+v: %d entries (more %v), %v", c.q, len(got), more, err)
			}
		}

		for _, e := range []*Export{{ID: "j1", Kind: KindExport, RequestedBy: "@u:x", Via: "mydata", Request: "{}", Name: "n1"},
			{ID: "j2", Kind: KindVerify, RequestedBy: "@a:x", Via: "dashboard", Request: "{}", Name: "n1"},
			{ID: "j3", Kind: KindExport, RequestedBy: "schedule:nightly", Via: "schedule", Request: "{}", Name: "n3"}} {
			if err := s.CreateExport(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			q    JobQuery
			want int
		}{{JobQuery{}, 3}, {JobQuery{Name: "n1"}, 2}, {JobQuery{Kind: KindExport, RequestedBy: "@u:x", Via: "mydata"}, 1},
			{JobQuery{RequestedBy: "schedule:nightly", Via: "schedule"}, 1}, {JobQuery{Limit: 1}, 1},
			{JobQuery{Limit: 2, Offset: 2}, 1}, {JobQuery{Offset: 3}, 0}, {JobQuery{Kind: KindExport, Limit: 1, Offset: 1}, 1}} {
			if got, err := s.QueryJobs(ctx, c.q); err != nil || len(got) != c.want {
				t.Errorf("%+v: %d jobs, %v", c.q, len(got), err)
			}
		}
	})
}

// Paging the jobs: pages of the newest first meet without a gap or a
// repeat, with the same creation time too (ties go by id).
func TestQueryJobsPages(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			if err := s.CreateExport(ctx, &Export{ID: id, Kind: KindExport, RequestedBy: "@a:x", Via: "api", Request: "{}"}); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]bool{}
		for off := 0; off < 6; off += 2 {
			page, err := s.QueryJobs(ctx, JobQuery{Offset: off, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if seen[e.ID] {
					t.Errorf("%s on two pages", e.ID)
				}
				seen[e.ID] = true
			}
		}
		if len(seen) != 5 {
			t.Errorf("pages held %d jobs, want 5", len(seen))
		}
	})
}

// Storing a login link or a session deletes the expired ones: rows of
// links nobody used and sessions nobody signed out of do not pile up.
func TestDashboardPurgesExpired(t *testing.T) {
	each(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		count := func(table string) int {
			var n int
			if err := s.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		past := Grant{User: "@a:x", Role: "user", Expires: time.Now().Add(-time.Second)}
		live := Grant{User: "@a:x", Role: "user", Expires: time.Now().Add(time.Hour)}
		for _, tok := range []string{"old1", "old2"} {
			s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_dashboard_logins (token_hash, user_id, role, expires_at) VALUES (?, ?, ?, ?)`),
				tokenHash(tok), past.User, past.Role, past.Expires.UnixMilli())
			s.DB.ExecContext(ctx, s.q(`INSERT INTO ferry_dashboard_sessions (token_hash, user_id, role, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
				tokenHash(tok), past.User, past.Role, past.Expires.UnixMilli(), past.Expires.UnixMilli())
		}
		if err := s.PutLogin(ctx, "new", live); err != nil {
			t.Fatal(err)
		}
		if err := s.PutSession(ctx, "new", live); err != nil {
			t.Fatal(err)
		}
		if n := count("ferry_dashboard_logins"); n != 1 {
			t.Errorf("%d login links after a new one, want 1", n)
		}
		if n := count("ferry_dashboard_sessions"); n != 1 {
			t.Errorf("%d sessions after a new one, want 1", n)
		}
	})
}
