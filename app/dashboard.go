package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// The web dashboard's verbs (package dashboard): one-time login links and
// sessions, the audit log with filters and paging, jobs with their
// selection, one job with everything about it, and the runs of a
// schedule. Login links and sessions are stored by the SHA-256 of their
// token only; sessions survive a restart and end at their expiry.

// Roles of dashboard sessions.
const (
	// RoleAdmin sees and acts on every job, the schedules and history.
	RoleAdmin = "admin"
	// RoleUser sees only their own personal (!mydata) exports.
	RoleUser = "user"
)

// Lifetimes of dashboard logins.
const (
	// LoginWindow is how long a one-time login link is valid.
	LoginWindow = 5 * time.Minute
	// SessionLifetime is how long a dashboard session lasts.
	SessionLifetime = 12 * time.Hour
)

// LoginPath is where the dashboard's one-time login links point
// (followed by the token).
const LoginPath = "/ui/login/"

// ViaDashboard is the surface recorded for what is done in the dashboard.
const ViaDashboard = "dashboard"

type (
	// Grant is who a login link or session acts as, with which role,
	// until when.
	Grant = store.Grant
	// AuditQuery selects audit entries (actor, action prefix, time range,
	// targets, paging).
	AuditQuery = store.AuditQuery
	// JobQuery selects jobs (kind, who asked, how, archive name).
	JobQuery = store.JobQuery
)

// ErrGone: a login link already used, expired or unknown; or a session
// that ended.
var ErrGone = store.ErrGone

// newToken is a fresh random token for a link or a cookie (192 bits).
func newToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// IssueLogin mints a one-time dashboard login link for user (valid
// LoginWindow): role RoleAdmin for an admin who asked in an admin room,
// RoleUser for anybody's own page. Audited; the link itself never is.
func (s *Service) IssueLogin(ctx context.Context, user, role string, by Actor) (string, error) {
	if role != RoleAdmin && role != RoleUser {
		return "", fmt.Errorf("dashboard role %q: use %s or %s", role, RoleAdmin, RoleUser)
	}
	token := newToken()
	exp := time.Now().Add(LoginWindow)
	if err := s.store.PutLogin(ctx, token, Grant{User: user, Role: role, Expires: exp}); err != nil {
		return "", fmt.Errorf("dashboard login link: %w", err)
	}
	if err := s.audit(ctx, AuditEntry{Actor: by.Name, Via: by.Via, Action: "dashboard.link", Target: user, Outcome: "ok",
		Detail: "role " + role + ", expires " + exp.UTC().Format(time.RFC3339)}); err != nil {
		return "", err
	}
	return strings.TrimSuffix(s.cfg.BaseURL, "/") + LoginPath + token, nil
}

// PeekLogin reads a login link's grant without using it (ErrGone: used,
// expired or unknown).
func (s *Service) PeekLogin(ctx context.Context, token string) (*Grant, error) {
	return s.store.PeekLogin(ctx, token)
}

// Login uses a login link up and opens a session (SessionLifetime): it
// returns the session's grant and token (for the cookie). ErrGone: the
// link was used, expired or unknown (the failure is audited).
func (s *Service) Login(ctx context.Context, token, from string) (*Grant, string, error) {
	g, err := s.store.ConsumeLogin(ctx, token)
	if errors.Is(err, ErrGone) {
		s.audit(ctx, AuditEntry{Actor: "unknown", Via: ViaDashboard + " " + from, Action: "dashboard.login", Outcome: "refused",
			Detail: "login link used, expired or unknown"})
		return nil, "", err
	}
	if err != nil {
		return nil, "", err
	}
	return s.StartSession(ctx, g.User, g.Role, "login link", from)
}

// StartSession opens a dashboard session for user with role (Login, or
// the dashboard after it checked an admin API token), audited.
func (s *Service) StartSession(ctx context.Context, user, role, how, from string) (*Grant, string, error) {
	g := &Grant{User: user, Role: role, Expires: time.Now().Add(SessionLifetime)}
	token := newToken()
	if err := s.store.PutSession(ctx, token, *g); err != nil {
		return nil, "", fmt.Errorf("dashboard session: %w", err)
	}
	if err := s.audit(ctx, AuditEntry{Actor: user, Via: ViaDashboard + " " + from, Action: "dashboard.login", Outcome: "ok",
		Detail: "role " + role + " by " + how}); err != nil {
		return nil, "", err
	}
	return g, token, nil
}

// Session reads a live session (ErrGone: expired, ended or unknown).
func (s *Service) Session(ctx context.Context, token string) (*Grant, error) {
	return s.store.Session(ctx, token)
}

// Logout ends a session, audited.
func (s *Service) Logout(ctx context.Context, token string, by Actor) error {
	if err := s.store.EndSession(ctx, token); err != nil {
		return err
	}
	return s.audit(ctx, AuditEntry{Actor: by.Name, Via: by.Via, Action: "dashboard.logout", Outcome: "ok"})
}

// AuditLog reads the audit log, newest first, and whether more entries
// follow the page.
func (s *Service) AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, bool, error) {
	return s.store.QueryAudit(ctx, q)
}

// JobView is a job with what it was asked to do, in words.
type JobView struct {
	*View
	// Selection: an export's type, rooms, users, time range and media; an
	// import's archive and target; a verification's export.
	Selection string
	// Subject is the export a verification or import is about ("" for
	// exports, and imports of an archive by name).
	Subject string
}

// Duration is how long the job ran (so far, while it runs).
func (j *JobView) Duration() time.Duration {
	end := j.FinishedAt
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(j.CreatedAt).Round(time.Second)
}

func jobView(e *store.Export) *JobView {
	j := &JobView{View: view(e)}
	switch e.Kind {
	case KindExport:
		var req jobs.Request
		if json.Unmarshal([]byte(e.Request), &req) == nil {
			j.Selection = describeSelection(&req)
		}
	case KindImport:
		var req jobs.ImportRequest
		if json.Unmarshal([]byte(e.Request), &req) == nil {
			what := "archive " + req.Archive
			if req.Export != "" {
				what, j.Subject = "export "+req.Export, req.Export
			}
			j.Selection = what + " into " + req.Target
			if req.DryRun {
				j.Selection += " (dry run)"
			}
			if len(req.Rooms) > 0 {
				j.Selection += ", rooms " + strings.Join(req.Rooms, " ")
			}
		}
	case KindVerify:
		var req jobs.VerifyRequest
		if json.Unmarshal([]byte(e.Request), &req) == nil {
			j.Selection, j.Subject = "export "+req.Export, req.Export
		}
	}
	return j
}

// describeSelection says what an export request selects. Recipients are
// public keys, but still left out: the page is about what, not to whom.
func describeSelection(r *jobs.Request) string {
	if r.Personal != "" {
		return "personal data of " + r.Personal
	}
	sel := r.Selection
	parts := []string{r.ArchiveType()}
	if len(sel.Rooms) > 0 {
		parts = append(parts, "rooms "+strings.Join(sel.Rooms, " "))
	}
	if len(sel.Users) > 0 {
		parts = append(parts, "users "+strings.Join(sel.Users, " "))
	}
	if !sel.Since.IsZero() {
		parts = append(parts, "since "+sel.Since.UTC().Format(time.DateOnly))
	}
	if !sel.Until.IsZero() {
		parts = append(parts, "until "+sel.Until.UTC().Format(time.DateOnly))
	}
	if sel.Media != "" {
		parts = append(parts, "media "+sel.Media)
	}
	if r.Plaintext {
		parts = append(parts, "plaintext")
	}
	return strings.Join(parts, ", ")
}

// Jobs lists the jobs q selects, newest first, with their selections.
func (s *Service) Jobs(ctx context.Context, q JobQuery) ([]*JobView, error) {
	list, err := s.store.QueryJobs(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]*JobView, 0, len(list))
	for _, e := range list {
		out = append(out, jobView(e))
	}
	return out, nil
}

// JobDetail is one job with what relates to it.
type JobDetail struct {
	*JobView
	// Related are the other jobs of the same archive: an export's
	// verifications and imports, or a verification's export.
	Related []*JobView
	// Verification is the newest verification's outcome of an export's
	// archive (nil: never verified).
	Verification *JobView
	// Fidelity are the reports of imports of the archive (and dry runs):
	// what the target kept, changed or dropped.
	Fidelity []*JobView
	// Audit is the job's audit trail, newest first.
	Audit []AuditEntry
}

// Job reads one job with its related jobs, verification, fidelity
// reports and audit trail.
func (s *Service) Job(ctx context.Context, id string) (*JobDetail, error) {
	e, err := s.store.GetExport(ctx, id)
	if err != nil {
		return nil, err
	}
	d := &JobDetail{JobView: jobView(e)}
	targets := []string{e.ID}
	if e.Name != "" {
		related, err := s.store.QueryJobs(ctx, JobQuery{Name: e.Name, Limit: 50})
		if err != nil {
			return nil, err
		}
		for _, r := range related {
			if r.ID == e.ID {
				continue
			}
			j := jobView(r)
			d.Related = append(d.Related, j)
			switch {
			case r.Kind == KindVerify && d.Verification == nil && e.Kind == KindExport:
				d.Verification = j
			case r.Kind == KindImport:
				d.Fidelity = append(d.Fidelity, j)
			}
			targets = append(targets, r.ID)
		}
		if e.Kind == KindExport {
			key := storage.ArchiveKey(e.Name)
			targets = append(targets, key, key+storage.KeyExt)
		}
	}
	if d.Audit, _, err = s.store.QueryAudit(ctx, AuditQuery{Targets: targets, Limit: 200}); err != nil {
		return nil, err
	}
	return d, nil
}

// ScheduleRun is one run of a schedule, for the charts.
type ScheduleRun = JobView

// ScheduleRuns lists a schedule's exports, newest first (at most limit).
func (s *Service) ScheduleRuns(ctx context.Context, name string, limit int) ([]*ScheduleRun, error) {
	return s.Jobs(ctx, JobQuery{Kind: KindExport, RequestedBy: "schedule:" + name, Via: "schedule", Limit: limit})
}

// NextRun is when a schedule runs next after now (zero: its cron does
// not parse, which the schedule's validation rules out).
func NextRun(sch Schedule, now time.Time) time.Time {
	c, err := cron.ParseStandard(sch.Cron)
	if err != nil {
		return time.Time{}
	}
	return c.Next(now)
}

// PersonalExports lists user's own personal (!mydata) exports, newest
// first: all a user's dashboard page shows.
func (s *Service) PersonalExports(ctx context.Context, user string) ([]*JobView, error) {
	return s.Jobs(ctx, JobQuery{Kind: KindExport, RequestedBy: user, Via: viaMydata, Limit: 50})
}
