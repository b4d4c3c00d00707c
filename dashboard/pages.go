package dashboard

import (
	"bytes"
	"cmp"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/internal/human"
)

// page is what every template gets.
type page struct {
	Title string
	Nav   string // the navigation entry to mark
	User  *principal
	CSRF  string
	Data  any
}

// pageNames are the templates besides layout.html, one per page.
var pageNames = []string{"signin", "link", "error", "exports", "job", "delete", "schedules", "history", "me"}

var funcs = template.FuncMap{
	"bytes": human.Bytes,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"progressOf": progressOf,
	"surface":    surface,
}

func parsePages() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		out[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}

// render writes a page with status.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	if p.User != nil {
		p.CSRF = p.User.csrf()
	}
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		zerolog.Ctx(r.Context()).Error().Err(err).Str("page", name).Msg("dashboard: a page could not be drawn")
		http.Error(w, "This page could not be drawn; the reason is in Ferry's log. Reload it, or tell Ferry's admins if it keeps happening.",
			http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail shows an error page saying what is wrong and what to do.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, p *principal, status int, msg string) {
	s.render(w, r, status, "error", page{Title: http.StatusText(status), User: p, Data: msg})
}

// failErr shows a verb's error with the status its kind asks for. A
// conflict's message is written for people (the job has ended, ...);
// anything else is logged, not shown: it may name servers, paths or
// queries.
func (s *Server) failErr(w http.ResponseWriter, r *http.Request, p *principal, err error) {
	switch {
	case errors.Is(err, app.ErrNotFound):
		s.fail(w, r, p, http.StatusNotFound, "There is no such job; the exports page lists them.")
	case errors.Is(err, app.ErrConflict):
		s.fail(w, r, p, http.StatusConflict, err.Error())
	default:
		s.failInternal(w, r, p, err, "")
	}
}

// internalMsg is what a page says of an error on Ferry's side.
const internalMsg = "Something went wrong on Ferry's side; the details are in Ferry's log. Try again in a moment, and tell Ferry's admins if it keeps happening."

// failInternal logs err with the request's route (zerolog from its context) and
// shows a 500 page that says only what to do; what, when set, says
// what failed.
func (s *Server) failInternal(w http.ResponseWriter, r *http.Request, p *principal, err error, what string) {
	// The route's pattern, not the path: a login link's path is its token.
	zerolog.Ctx(r.Context()).Error().Err(err).Str("route", r.Pattern).Str("job", r.PathValue("id")).
		Msg("dashboard: " + cmp.Or(what, "a request failed"))
	msg := internalMsg
	if what != "" {
		msg = what + ". " + msg
	}
	s.fail(w, r, p, http.StatusInternalServerError, msg)
}

// home sends each role to its start page.
func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	switch {
	case err != nil:
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
	case p.admin():
		http.Redirect(w, r, "/ui/exports", http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/ui/me", http.StatusSeeOther)
	}
}

// signin is the data of the sign-in pages.
type signin struct {
	Value   string // the sign-in cookie's value, echoed by the form
	Expired bool
	Error   string
	Grant   *app.Grant // a login link's
	Action  string
}

// newSignin sets a fresh sign-in cookie: the sign-in forms echo its
// value, so that another site can't sign a browser in (login CSRF).
func (s *Server) newSignin(w http.ResponseWriter, r *http.Request) string {
	v := newRandom()
	http.SetCookie(w, s.cookie(r, signinCookie, v, int((10*time.Minute).Seconds())))
	return v
}

// signinOK checks a sign-in form: posted from this site, echoing the
// sign-in cookie.
func (s *Server) signinOK(r *http.Request) bool {
	c, err := r.Cookie(signinCookie)
	return err == nil && c.Value != "" && s.sameOrigin(r) &&
		subtle.ConstantTimeCompare([]byte(r.PostFormValue("signin")), []byte(c.Value)) == 1
}

// signinForm: how to sign in (!dashboard, or an admin API token).
func (s *Server) signinForm(w http.ResponseWriter, r *http.Request) {
	if p, err := s.principal(r); err == nil && p.session != "" {
		s.home(w, r)
		return
	}
	s.render(w, r, http.StatusOK, "signin", page{Title: "Sign in", Data: signin{Value: s.newSignin(w, r), Expired: r.URL.Query().Has("expired")}})
}

// tokenSignin: an admin API token pasted into the sign-in form.
func (s *Server) tokenSignin(w http.ResponseWriter, r *http.Request) {
	if !s.signinOK(r) {
		s.fail(w, r, nil, http.StatusForbidden, "Sign in from Ferry's own sign-in page: this form did not come from it.")
		return
	}
	name, ok := s.adminToken(strings.TrimSpace(r.PostFormValue("token")))
	if !ok {
		s.Svc.Audit(r.Context(), app.AuditEntry{Actor: "unknown", Via: app.ViaDashboard + " " + s.clientAddr(r), Action: "dashboard.login",
			Outcome: "refused", Detail: "not an admin API token"})
		s.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Sign in", Data: signin{Value: s.newSignin(w, r),
			Error: "That is not an admin API token of this Ferry (api.tokens with role admin)."}})
		return
	}
	g, token, err := s.Svc.StartSession(r.Context(), "token:"+name, app.RoleAdmin, "API token", s.clientAddr(r))
	if err != nil {
		s.failInternal(w, r, nil, err, "Could not open your session")
		return
	}
	s.signedIn(w, r, g, token)
}

// linkForm: a one-time login link's GET shows only a sign-in button, so
// that a URL previewer fetching it uses nothing up; 410 once used.
func (s *Server) linkForm(w http.ResponseWriter, r *http.Request) {
	g, err := s.Svc.PeekLogin(r.Context(), r.PathValue("token"))
	if err != nil {
		s.loginFailed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "link", page{Title: "Sign in", Data: signin{Value: s.newSignin(w, r), Grant: g, Action: r.URL.Path}})
}

// linkSignin: the sign-in button's same-origin POST uses the link up and
// opens the session. A used link is 410 before anything else.
func (s *Server) linkSignin(w http.ResponseWriter, r *http.Request) {
	if _, err := s.Svc.PeekLogin(r.Context(), r.PathValue("token")); err != nil {
		s.loginFailed(w, r, err)
		return
	}
	if !s.signinOK(r) {
		s.fail(w, r, nil, http.StatusForbidden, "Sign in with the button on the link's own page: this form did not come from it.")
		return
	}
	g, token, err := s.Svc.Login(r.Context(), r.PathValue("token"), s.clientAddr(r))
	if err != nil {
		s.loginFailed(w, r, err)
		return
	}
	s.signedIn(w, r, g, token)
}

// loginFailed answers a login link that can't be used: 410 when it was
// used or has expired.
func (s *Server) loginFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, app.ErrGone) {
		s.fail(w, r, nil, http.StatusGone, "This sign-in link was already used or has expired (links last 5 minutes and work once). Send !dashboard to the bot for a new one.")
		return
	}
	s.failInternal(w, r, nil, err, "Could not sign you in with this link")
}

// signedIn sets the session cookie and goes to the role's start page.
// A session the browser still had ends: one browser, one session.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request, g *app.Grant, token string) {
	if c, err := r.Cookie(s.sessionCookieName(r)); err == nil && c.Value != "" && c.Value != token {
		if old, err := s.Svc.Session(r.Context(), c.Value); err == nil {
			if err := s.Svc.Logout(r.Context(), c.Value, app.Actor{Name: old.User, Via: app.ViaDashboard}); err != nil {
				zerolog.Ctx(r.Context()).Warn().Err(err).Msg("dashboard: could not end the session replaced by a new sign-in")
			}
		}
	}
	http.SetCookie(w, s.cookie(r, signinCookie, "", -1))
	http.SetCookie(w, s.cookie(r, s.sessionCookieName(r), token, int(time.Until(g.Expires).Seconds())))
	to := "/ui/me"
	if g.Role == app.RoleAdmin {
		to = "/ui/exports"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, p *principal) {
	if p.session != "" {
		if err := s.Svc.Logout(r.Context(), p.session, p.actor()); err != nil {
			s.failInternal(w, r, p, err, "Could not sign you out")
			return
		}
	}
	http.SetCookie(w, s.cookie(r, s.sessionCookieName(r), "", -1))
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// exportsPage is the exports list, a page of it.
type exportsPage struct {
	Kind       string
	Jobs       []*app.JobView
	Page       int    // from 1
	Prev, Next string // links, "" at the ends
}

// exportsPageSize is how many jobs a page of the exports list shows
// (the event stream follows the newest snapshotSize).
const exportsPageSize = 100

func (s *Server) exports(w http.ResponseWriter, r *http.Request, p *principal) {
	q := r.URL.Query()
	kind := app.Kind(q.Get("kind"))
	switch kind {
	case "", app.KindExport, app.KindImport, app.KindVerify:
	default:
		s.fail(w, r, p, http.StatusBadRequest, "kind must be export, import or verify")
		return
	}
	n, ok := pageNumber(q.Get("page"))
	if !ok {
		s.fail(w, r, p, http.StatusBadRequest, fmt.Sprintf("page must be a number from 1 to %d", maxPage))
		return
	}
	jobs, err := s.Svc.Jobs(r.Context(), app.JobQuery{Kind: kind, Offset: (n - 1) * exportsPageSize, Limit: exportsPageSize + 1})
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	e := exportsPage{Kind: string(kind), Jobs: jobs, Page: n}
	link := func(n int) string {
		v := url.Values{}
		if kind != "" {
			v.Set("kind", string(kind))
		}
		if n > 1 {
			v.Set("page", strconv.Itoa(n))
		}
		if len(v) == 0 {
			return "/ui/exports"
		}
		return "/ui/exports?" + v.Encode()
	}
	if len(jobs) > exportsPageSize {
		e.Jobs, e.Next = jobs[:exportsPageSize], link(n+1)
	}
	if n > 1 {
		e.Prev = link(n - 1)
	}
	s.render(w, r, http.StatusOK, "exports", page{Title: "Exports", Nav: "exports", User: p, Data: e})
}

// maxPage is the highest page number read: far beyond any list, and
// low enough that an offset can't overflow.
const maxPage = 1_000_000

// pageNumber reads a page number, counted from 1 ("": the first).
func pageNumber(v string) (int, bool) {
	if v == "" {
		return 1, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPage {
		return 0, false
	}
	return n, true
}

// jobPage is one job's page; Links are shown once minted.
type jobPage struct {
	*app.JobDetail
	Links *app.Links
}

func (s *Server) job(w http.ResponseWriter, r *http.Request, p *principal) {
	s.showJob(w, r, p, nil)
}

func (s *Server) showJob(w http.ResponseWriter, r *http.Request, p *principal, links *app.Links) {
	d, err := s.Svc.Job(r.Context(), r.PathValue("id"))
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	s.render(w, r, http.StatusOK, "job", page{Title: string(d.Kind) + " " + d.ID, Nav: "exports", User: p, Data: jobPage{JobDetail: d, Links: links}})
}

// link mints download links on click (audited as link.create) and shows
// them on the job's page with their expiry.
func (s *Server) link(w http.ResponseWriter, r *http.Request, p *principal) {
	l, err := s.Svc.IssueLink(r.Context(), r.PathValue("id"), p.actor())
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	s.showJob(w, r, p, l)
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, p *principal) {
	v, err := s.Svc.Cancel(r.Context(), r.PathValue("id"), p.actor())
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	http.Redirect(w, r, "/ui/exports/"+url.PathEscape(v.ID), http.StatusSeeOther)
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request, p *principal) {
	v, err := s.Svc.Verify(r.Context(), "", r.PathValue("id"), p.actor())
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	http.Redirect(w, r, "/ui/exports/"+url.PathEscape(v.ID), http.StatusSeeOther)
}

// deleteForm asks before deleting: a page with the archive's name and a
// form, not a script's confirm().
func (s *Server) deleteForm(w http.ResponseWriter, r *http.Request, p *principal) {
	d, err := s.Svc.Job(r.Context(), r.PathValue("id"))
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	s.render(w, r, http.StatusOK, "delete", page{Title: "Delete " + d.Name, Nav: "exports", User: p, Data: d})
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, p *principal) {
	if r.PostFormValue("confirm") != "yes" {
		s.fail(w, r, p, http.StatusBadRequest, "Deleting needs the confirmation page's button.")
		return
	}
	v, err := s.Svc.Delete(r.Context(), r.PathValue("id"), p.actor())
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	http.Redirect(w, r, "/ui/exports/"+url.PathEscape(v.ID), http.StatusSeeOther)
}

// scheduleRow is one schedule with its runs' charts.
type scheduleRow struct {
	app.ScheduleView
	Next       time.Time
	Last       *app.JobView
	Defined    string
	Retention  string
	Selection  string
	Size, Time chart
	Success    chart
}

func (s *Server) schedules(w http.ResponseWriter, r *http.Request, p *principal) {
	list, err := s.Svc.Schedules(r.Context())
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	var rows []scheduleRow
	for _, sch := range list {
		runs, err := s.Svc.ScheduleRuns(r.Context(), sch.Name, 60)
		if err != nil {
			s.failErr(w, r, p, err)
			return
		}
		row := scheduleRow{ScheduleView: sch, Next: app.NextRun(sch.Schedule, time.Now()), Defined: "config file",
			Retention: retention(sch.Keep, sch.MaxAge), Selection: sch.Request.Selection.Type}
		if sch.CreatedBy != "" {
			row.Defined = "chat, by " + sch.CreatedBy
		}
		if row.Selection == "" {
			row.Selection = "full"
		}
		if len(runs) > 0 {
			row.Last = runs[0]
		}
		row.Size, row.Time, row.Success = runCharts(runs)
		rows = append(rows, row)
	}
	s.render(w, r, http.StatusOK, "schedules", page{Title: "Schedules", Nav: "schedules", User: p, Data: rows})
}

func retention(keep int, maxAge time.Duration) string {
	var parts []string
	if keep > 0 {
		parts = append(parts, "keep "+strconv.Itoa(keep))
	}
	if maxAge > 0 {
		parts = append(parts, "max age "+duration(maxAge))
	}
	if len(parts) == 0 {
		return "keep all"
	}
	return strings.Join(parts, ", ")
}

// historyPage is the audit log with its filters and paging.
type historyPage struct {
	Actor, Action, Since, Until string
	Entries                     []app.AuditEntry
	Page                        int    // from 1
	Prev, Next                  string // links, "" at the ends
}

const historyPageSize = 50

func (s *Server) history(w http.ResponseWriter, r *http.Request, p *principal) {
	q := r.URL.Query()
	h := historyPage{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")), Since: q.Get("since"), Until: q.Get("until")}
	aq := app.AuditQuery{Actor: h.Actor, Action: h.Action, Limit: historyPageSize}
	var err error
	if aq.Since, err = parseWhen(h.Since); err != nil {
		s.fail(w, r, p, http.StatusBadRequest, "since: "+err.Error())
		return
	}
	if aq.Until, err = parseUntil(h.Until); err != nil {
		s.fail(w, r, p, http.StatusBadRequest, "until: "+err.Error())
		return
	}
	var ok bool
	if h.Page, ok = pageNumber(q.Get("page")); !ok {
		s.fail(w, r, p, http.StatusBadRequest, fmt.Sprintf("page must be a number from 1 to %d", maxPage))
		return
	}
	aq.Offset = (h.Page - 1) * historyPageSize
	entries, more, err := s.Svc.AuditLog(r.Context(), aq)
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	h.Entries = entries
	pageLink := func(n int) string {
		v := url.Values{}
		for k, val := range map[string]string{"actor": h.Actor, "action": h.Action, "since": h.Since, "until": h.Until} {
			if val != "" {
				v.Set(k, val)
			}
		}
		v.Set("page", strconv.Itoa(n))
		return "/ui/history?" + v.Encode()
	}
	if h.Page > 1 {
		h.Prev = pageLink(h.Page - 1)
	}
	if more {
		h.Next = pageLink(h.Page + 1)
	}
	s.render(w, r, http.StatusOK, "history", page{Title: "History", Nav: "history", User: p, Data: h})
}

// whenLayouts are the time filters' forms, each with the span it names:
// "until" a date or a minute includes all of it.
var whenLayouts = []struct {
	layout string
	span   time.Duration
}{{time.RFC3339, 0}, {"2006-01-02T15:04", time.Minute}, {"2006-01-02T15:04:05", time.Second}, {time.DateOnly, 24 * time.Hour}}

// parseWhen reads a time filter: a date, a datetime-local value or
// RFC 3339 (UTC unless it says otherwise); "" is no bound.
func parseWhen(v string) (time.Time, error) {
	t, _, err := parseSpan(v)
	return t, err
}

// parseUntil reads the upper time filter, an exclusive bound: the end of
// the date, minute or second it names.
func parseUntil(v string) (time.Time, error) {
	t, span, err := parseSpan(v)
	return t.Add(span), err
}

func parseSpan(v string) (time.Time, time.Duration, error) {
	if v == "" {
		return time.Time{}, 0, nil
	}
	for _, l := range whenLayouts {
		if t, err := time.Parse(l.layout, v); err == nil {
			return t, l.span, nil
		}
	}
	return time.Time{}, 0, errors.New("use a date (2026-12-01) or a date and time (2026-12-01T15:04)")
}

// me is a user's own page: their personal exports only.
func (s *Server) me(w http.ResponseWriter, r *http.Request, p *principal) {
	jobs, err := s.Svc.PersonalExports(r.Context(), p.User)
	if err != nil {
		s.failErr(w, r, p, err)
		return
	}
	s.render(w, r, http.StatusOK, "me", page{Title: "Your exports", Nav: "me", User: p, Data: jobs})
}

// surface says how a job was asked for, from its Via.
func surface(via string) string {
	switch {
	case strings.HasPrefix(via, "room "), via == "mydata":
		return "chat"
	case via == "schedule":
		return "schedule"
	case strings.HasPrefix(via, "api"):
		return "API"
	case strings.HasPrefix(via, app.ViaDashboard):
		return "dashboard"
	case via == "cli":
		return "CLI"
	}
	return path.Base(via)
}
