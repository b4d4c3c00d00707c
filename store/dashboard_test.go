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
			{JobQuery{RequestedBy: "schedule:nightly", Via: "schedule"}, 1}, {JobQuery{Limit: 1}, 1}} {
			if got, err := s.QueryJobs(ctx, c.q); err != nil || len(got) != c.want {
				t.Errorf("%+v: %d jobs, %v", c.q, len(got), err)
			}
		}
	})
}
