package dashboard

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ferry-matrix/ferry/app"
)

// fakeService is the application layer in memory: jobs, the audit log,
// login links and sessions, with the verbs' calls recorded.
type fakeService struct {
	mu       sync.Mutex
	jobs     []*app.JobView // newest first
	audit    []app.AuditEntry
	logins   map[string]app.Grant
	sessions map[string]app.Grant
	calls    []string
	lastQ    app.AuditQuery
	lastJobs app.JobQuery
	// err fails Jobs, Job and PeekLogin, sessionErr Session (as a state database
	// that can't be reached would).
	err, sessionErr error
	sched           []app.ScheduleView
	runs            []*app.JobView
}

func newFake() *fakeService {
	return &fakeService{logins: map[string]app.Grant{}, sessions: map[string]app.Grant{}}
}

func (f *fakeService) call(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeService) called() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, "\n")
}

func (f *fakeService) find(id string) (*app.JobView, error) {
	for _, j := range f.jobs {
		if j.ID == id {
			return j, nil
		}
	}
	return nil, app.ErrNotFound
}

func (f *fakeService) Jobs(ctx context.Context, q app.JobQuery) ([]*app.JobView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.err != nil {
		return nil, f.err
	}
	var out []*app.JobView
	for _, j := range f.jobs {
		if q.Kind == "" || j.Kind == q.Kind {
			c := *j
			v := *j.View
			c.View = &v
			out = append(out, &c)
		}
	}
	out = out[min(q.Offset, len(out)):]
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	f.lastJobs = q
	return out, nil
}

func (f *fakeService) Job(_ context.Context, id string) (*app.JobDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	j, err := f.find(id)
	if err != nil {
		return nil, err
	}
	d := &app.JobDetail{JobView: j}
	for _, e := range f.audit {
		if e.Target == id {
			d.Audit = append(d.Audit, e)
		}
	}
	return d, nil
}

func (f *fakeService) PersonalExports(_ context.Context, user string) ([]*app.JobView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*app.JobView
	for _, j := range f.jobs {
		if j.RequestedBy == user && j.Via == "mydata" {
			out = append(out, j)
		}
	}
	return out, nil
}

func (f *fakeService) Cancel(_ context.Context, id string, by app.Actor) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, err := f.find(id)
	if err != nil {
		return nil, err
	}
	if !j.Running() {
		return nil, fmt.Errorf("%w: %s has already ended", app.ErrConflict, id)
	}
	j.Status = app.StatusCancelled
	f.call("cancel %s by %s via %s", id, by.Name, by.Via)
	return j.View, nil
}

func (f *fakeService) Delete(_ context.Context, id string, by app.Actor) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, err := f.find(id)
	if err != nil {
		return nil, err
	}
	j.Status = app.StatusDeleted
	f.call("delete %s by %s via %s", id, by.Name, by.Via)
	return j.View, nil
}

func (f *fakeService) Verify(_ context.Context, id, export string, by app.Actor) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("verify %s by %s via %s", export, by.Name, by.Via)
	v := &app.JobView{View: &app.View{ID: "ver-1", Kind: app.KindVerify, Status: app.StatusQueued, RequestedBy: by.Name, Via: by.Via}}
	f.jobs = append([]*app.JobView{v}, f.jobs...)
	return v.View, nil
}

func (f *fakeService) IssueLink(_ context.Context, id string, by app.Actor) (*app.Links, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("link %s by %s via %s", id, by.Name, by.Via)
	return &app.Links{Archive: "http://ferry.test/download/a?sig=1", Key: "http://ferry.test/download/k?sig=2", Expires: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}, nil
}

func (f *fakeService) Schedules(context.Context) ([]app.ScheduleView, error) { return f.sched, nil }

func (f *fakeService) ScheduleRuns(_ context.Context, name string, limit int) ([]*app.ScheduleRun, error) {
	return f.runs, nil
}

func (f *fakeService) AuditLog(_ context.Context, q app.AuditQuery) ([]app.AuditEntry, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastQ = q
	var out []app.AuditEntry
	for _, e := range f.audit {
		if (q.Actor == "" || e.Actor == q.Actor) && strings.HasPrefix(e.Action, q.Action) {
			out = append(out, e)
		}
	}
	from := min(q.Offset, len(out))
	to := min(from+q.Limit, len(out))
	return out[from:to], to < len(out), nil
}

func (f *fakeService) Audit(_ context.Context, e app.AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeService) PeekLogin(_ context.Context, token string) (*app.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	g, ok := f.logins[token]
	if !ok || time.Now().After(g.Expires) {
		return nil, app.ErrGone
	}
	return &g, nil
}

func (f *fakeService) Login(ctx context.Context, token, from string) (*app.Grant, string, error) {
	f.mu.Lock()
	g, ok := f.logins[token]
	delete(f.logins, token)
	f.mu.Unlock()
	if !ok || time.Now().After(g.Expires) {
		return nil, "", app.ErrGone
	}
	return f.StartSession(ctx, g.User, g.Role, "login link", from)
}

func (f *fakeService) StartSession(_ context.Context, user, role, how, from string) (*app.Grant, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	token := "session-" + newRandom()
	g := app.Grant{User: user, Role: role, Expires: time.Now().Add(time.Hour)}
	f.sessions[token] = g
	f.call("session %s %s by %s", user, role, how)
	return &g, token, nil
}

func (f *fakeService) Session(_ context.Context, token string) (*app.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessionErr != nil {
		return nil, f.sessionErr
	}
	g, ok := f.sessions[token]
	if !ok || time.Now().After(g.Expires) {
		return nil, app.ErrGone
	}
	return &g, nil
}

func (f *fakeService) Logout(_ context.Context, token string, by app.Actor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sessions, token)
	f.call("logout %s", by.Name)
	return nil
}

// expireSessions ends every session at its expiry time, now.
func (f *fakeService) expireSessions() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, g := range f.sessions {
		g.Expires = time.Now().Add(-time.Second)
		f.sessions[k] = g
	}
}

// setProgress changes a job's progress (the stream shows it).
func (f *fakeService) setProgress(id string, percent float64, records int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, _ := f.find(id)
	j.Progress.Percent, j.Progress.Records = percent, records
}
