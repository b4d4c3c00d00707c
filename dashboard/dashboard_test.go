package dashboard

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/app"
)

const (
	admin    = "@admin:example.org"
	bob      = "@bob:example.org"
	apiToken = "the-admin-api-token-0123456789"
	// secrets that must never reach a page
)

// rig is a dashboard over a fake service, served by httptest, and a
// browser-like client with its own cookie jar that does not follow
// redirects (the tests look at them).
type rig struct {
	t   *testing.T
	f   *fakeService
	s   *Server
	srv *httptest.Server
}

func newRig(t *testing.T) *rig {
	f := newFake()
	now := time.Now()
	f.jobs = []*app.JobView{
		{View: &app.View{ID: "run1", Kind: app.KindExport, Status: app.StatusProcessing, Name: "full-20261201-run1", Type: "full",
			RequestedBy: admin, Via: "room !admins:example.org", CreatedAt: now.Add(-time.Minute),
			Progress: app.Progress{Stream: "events", Percent: 40, Records: 400, Total: 1000, Blobs: 3, BlobBytes: 3 << 20, ETA: "1m30s",
				Streams: []app.StreamProgress{{Name: "users", Records: 20, Total: 20, Done: true}, {Name: "events", Records: 380, Total: 900},
					{Name: "media", Total: 80}}}},
			Selection: "full"},
		{View: &app.View{ID: "done1", Kind: app.KindExport, Status: app.StatusCompleted, Name: "full-20261130-done1", Type: "full", Size: 5 << 20,
			SHA256: "ab12", RequestedBy: "schedule:nightly", Via: "schedule", CreatedAt: now.Add(-time.Hour), FinishedAt: now.Add(-50 * time.Minute)},
			Selection: "full"},
		{View: &app.View{ID: "bobs", Kind: app.KindExport, Status: app.StatusProcessing, Name: "mydata-bob-1", Type: "user",
			RequestedBy: bob, Via: "mydata", CreatedAt: now}, Selection: "personal data of " + bob},
		{View: &app.View{ID: "alices", Kind: app.KindExport, Status: app.StatusCompleted, Name: "mydata-alice-1", Type: "user",
			RequestedBy: "@alice:example.org", Via: "mydata", CreatedAt: now}, Selection: "personal data of @alice:example.org"},
	}
	f.audit = []app.AuditEntry{{At: now, Actor: admin, Via: "room !admins:example.org", Action: "export.create", Target: "run1", Outcome: "queued"}}
	s := &Server{Svc: f, AdminTokens: []Token{{Name: "ops", Secret: apiToken}}, Interval: 20 * time.Millisecond,
		IsAdmin: func(u string) bool { return u == admin || u == "@second:example.org" || u == "@other:example.org" }}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &rig{t: t, f: f, s: s, srv: srv}
}

// browser is a client with a cookie jar that does not follow redirects.
func (r *rig) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	status int
	body   string
	header http.Header
}

func (r *rig) do(c *http.Client, method, path string, form url.Values, headers ...string) answer {
	r.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, r.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", r.srv.URL)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

// link mints a login link for user with role, as app.IssueLogin does.
func (r *rig) link(user, role string, valid time.Duration) string {
	token := "login-" + newRandom()
	r.f.mu.Lock()
	r.f.logins[token] = app.Grant{User: user, Role: role, Expires: time.Now().Add(valid)}
	r.f.mu.Unlock()
	return "/ui/login/" + token
}

var hiddenRe = regexp.MustCompile(`name="(signin|csrf)" value="([^"]+)"`)

// field reads a hidden form field's value from a page.
func field(t *testing.T, page, name string) string {
	t.Helper()
	for _, m := range hiddenRe.FindAllStringSubmatch(page, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	t.Fatalf("no %s field in the page:\n%s", name, page)
	return ""
}

// signIn follows a login link like a person: GET, then the form's POST.
func (r *rig) signIn(user, role string) (*http.Client, string) {
	r.t.Helper()
	c := r.browser()
	link := r.link(user, role, time.Minute)
	page := r.do(c, "GET", link, nil)
	if page.status != 200 {
		r.t.Fatalf("GET %s: %d", link, page.status)
	}
	a := r.do(c, "POST", link, url.Values{"signin": {field(r.t, page.body, "signin")}})
	if a.status != http.StatusSeeOther {
		r.t.Fatalf("sign in: %d %s", a.status, a.body)
	}
	home := "/ui/me"
	if role == app.RoleAdmin {
		home = "/ui/exports"
	}
	p := r.do(c, "GET", home, nil)
	if p.status != 200 {
		r.t.Fatalf("GET %s after sign-in: %d", home, p.status)
	}
	return c, field(r.t, p.body, "csrf")
}

// The login link: a GET shows only the form and uses nothing up (a URL
// previewer may fetch it any number of times); the form's POST needs the
// sign-in cookie and the same origin, uses the link and sets a strict
// session cookie; the link then answers 410, and so does an expired one.
func TestLoginLink(t *testing.T) {
	r := newRig(t)
	link := r.link(admin, app.RoleAdmin, time.Minute)
	preview := r.browser()
	for range 3 {
		a := r.do(preview, "GET", link, nil)
		if a.status != 200 || !strings.Contains(a.body, `<form method="post" action="`+link+`"`) || !strings.Contains(a.body, admin) {
			t.Fatalf("GET of the link: %d\n%s", a.status, a.body)
		}
		if a.header.Get("Set-Cookie") == "" || strings.Contains(a.header.Get("Set-Cookie"), sessionCookie) {
			t.Fatalf("GET set %q: want only the sign-in cookie", a.header.Get("Set-Cookie"))
		}
	}
	if strings.Contains(r.f.called(), "session") {
		t.Fatalf("a GET opened a session: %s", r.f.called())
	}

	c := r.browser()
	page := r.do(c, "GET", link, nil)
	signin := field(t, page.body, "signin")
	// Another site's form (no sign-in cookie, or a foreign Origin) is refused.
	if a := r.do(r.browser(), "POST", link, url.Values{"signin": {signin}}); a.status != http.StatusForbidden {
		t.Errorf("POST without the sign-in cookie: %d", a.status)
	}
	if a := r.do(c, "POST", link, url.Values{"signin": {signin}}, "Origin", "https://evil.example"); a.status != http.StatusForbidden {
		t.Errorf("POST from another origin: %d", a.status)
	}
	if a := r.do(c, "POST", link, url.Values{"signin": {signin}}, "Origin", "null"); a.status != http.StatusForbidden {
		t.Errorf("POST from an opaque origin: %d", a.status)
	}
	if a := r.do(c, "POST", link, url.Values{"signin": {signin}}, "Sec-Fetch-Site", "cross-site"); a.status != http.StatusForbidden {
		t.Errorf("POST with Sec-Fetch-Site cross-site: %d", a.status)
	}
	a := r.do(c, "POST", link, url.Values{"signin": {signin}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/exports" {
		t.Fatalf("POST: %d to %q", a.status, a.header.Get("Location"))
	}
	var session *http.Cookie
	for _, ck := range (&http.Response{Header: a.header}).Cookies() {
		if ck.Name == sessionCookie && ck.Value != "" {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.MaxAge <= 0 || session.Path != "/ui/" {
		t.Fatalf("session cookie: %+v", session)
	}
	if got := r.do(c, "GET", "/ui/exports", nil); got.status != 200 || !strings.Contains(got.body, "full-20261201-run1") {
		t.Fatalf("exports after sign-in: %d", got.status)
	}
	// Used: both GET and POST answer 410.
	if got := r.do(r.browser(), "GET", link, nil); got.status != http.StatusGone {
		t.Errorf("GET of a used link: %d", got.status)
	}
	if got := r.do(c, "POST", link, url.Values{"signin": {signin}}); got.status != http.StatusGone {
		t.Errorf("second POST: %d", got.status)
	}
	expired := r.link(admin, app.RoleAdmin, -time.Second)
	if got := r.do(r.browser(), "GET", expired, nil); got.status != http.StatusGone || !strings.Contains(got.body, "!dashboard") {
		t.Errorf("expired link: %d %s", got.status, got.body)
	}
}

// An admin API token signs in through the form, or works as a header
// without a session (and then needs no CSRF token); a wrong one is 401.
func TestAPITokenSignin(t *testing.T) {
	r := newRig(t)
	if a := r.do(r.browser(), "GET", "/ui/exports", nil, "Authorization", "Bearer "+apiToken); a.status != 200 {
		t.Fatalf("Authorization header: %d", a.status)
	}
	if a := r.do(r.browser(), "GET", "/ui/exports", nil, "Authorization", "Bearer wrong"); a.status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", a.status)
	}
	if a := r.do(r.browser(), "POST", "/ui/exports/run1/cancel", url.Values{}, "Authorization", "Bearer "+apiToken); a.status != http.StatusSeeOther {
		t.Fatalf("cancel with the header: %d %s", a.status, a.body)
	}
	c := r.browser()
	form := r.do(c, "GET", "/ui/login", nil)
	bad := r.do(c, "POST", "/ui/login", url.Values{"signin": {field(t, form.body, "signin")}, "token": {"nope"}})
	if bad.status != http.StatusUnauthorized || strings.Contains(bad.body, "nope") {
		t.Fatalf("wrong pasted token: %d", bad.status)
	}
	a := r.do(c, "POST", "/ui/login", url.Values{"signin": {field(t, bad.body, "signin")}, "token": {apiToken}})
	if a.status != http.StatusSeeOther {
		t.Fatalf("pasted token: %d %s", a.status, a.body)
	}
	if p := r.do(c, "GET", "/ui/exports", nil); p.status != 200 || !strings.Contains(p.body, "token:ops") {
		t.Fatalf("after token sign-in: %d", p.status)
	}
	if !strings.Contains(r.f.called(), "session token:ops admin by API token") {
		t.Errorf("calls: %s", r.f.called())
	}
}

// Every state-changing request needs the session's CSRF token: without
// it, or with another session's, 403 and nothing happens.
func TestCSRF(t *testing.T) {
	r := newRig(t)
	c, csrf := r.signIn(admin, app.RoleAdmin)
	_, other := r.signIn("@other:example.org", app.RoleAdmin)
	for _, path := range []string{"/ui/exports/run1/cancel", "/ui/exports/done1/verify", "/ui/exports/done1/link", "/ui/exports/done1/delete", "/ui/logout"} {
		for _, form := range []url.Values{{}, {"csrf": {other}, "confirm": {"yes"}}, {"csrf": {"x"}}} {
			if a := r.do(c, "POST", path, form); a.status != http.StatusForbidden {
				t.Errorf("POST %s with %v: %d", path, form, a.status)
			}
		}
	}
	if got := r.f.called(); strings.Contains(got, "cancel ") || strings.Contains(got, "delete ") || strings.Contains(got, "link done1") || strings.Contains(got, "verify ") || strings.Contains(got, "logout") {
		t.Fatalf("a forged request acted: %s", got)
	}
	if a := r.do(c, "POST", "/ui/exports/run1/cancel", url.Values{"csrf": {csrf}}); a.status != http.StatusSeeOther {
		t.Fatalf("cancel with the token: %d %s", a.status, a.body)
	}
	if !strings.Contains(r.f.called(), "cancel run1 by "+admin+" via dashboard") {
		t.Errorf("calls: %s", r.f.called())
	}
}

// Every answer carries the strict CSP, and no page has inline script or
// style: the CSP would block them.
func TestCSP(t *testing.T) {
	r := newRig(t)
	c, _ := r.signIn(admin, app.RoleAdmin)
	r.f.sched = []app.ScheduleView{{Schedule: app.Schedule{Name: "nightly", Cron: "0 3 * * *", Keep: 7}}}
	r.f.runs = r.f.jobs[:2]
	for _, path := range []string{"/ui/login", "/ui/exports", "/ui/exports/run1", "/ui/exports/done1", "/ui/exports/done1/delete",
		"/ui/schedules", "/ui/history", "/ui/me", "/ui/static/dashboard.js", "/ui/nowhere", r.link(admin, app.RoleAdmin, time.Minute)} {
		a := r.do(c, "GET", path, nil)
		csp := a.header.Get("Content-Security-Policy")
		if csp != CSP {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("Referrer-Policy") != "same-origin" {
			t.Errorf("%s: headers %v", path, a.header)
		}
		if strings.Contains(a.body, "style=") || strings.Contains(a.body, "<style") || regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(a.body) ||
			regexp.MustCompile(`\son[a-z]+=`).MatchString(a.body) || strings.Contains(a.body, "javascript:") {
			t.Errorf("%s: inline script or style in the page", path)
		}
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(CSP, want) {
			t.Errorf("CSP lacks %s", want)
		}
	}
	if strings.Contains(CSP, "unsafe") {
		t.Errorf("CSP allows something unsafe: %s", CSP)
	}
}

// A user session sees only its own personal exports, and 403 elsewhere
// (pages, actions, and other users' progress on the stream).
func TestUserOnlyOwnExports(t *testing.T) {
	r := newRig(t)
	c, csrf := r.signIn(bob, app.RoleUser)
	me := r.do(c, "GET", "/ui/me", nil)
	if !strings.Contains(me.body, "mydata-bob-1") || strings.Contains(me.body, "mydata-alice-1") || strings.Contains(me.body, "full-2026") {
		t.Fatalf("bob's page:\n%s", me.body)
	}
	for _, path := range []string{"/ui/exports", "/ui/exports/bobs", "/ui/exports/alices", "/ui/schedules", "/ui/history", "/ui/exports/done1/delete"} {
		if a := r.do(c, "GET", path, nil); a.status != http.StatusForbidden {
			t.Errorf("GET %s: %d", path, a.status)
		}
	}
	for _, path := range []string{"/ui/exports/bobs/cancel", "/ui/exports/done1/link", "/ui/exports/done1/delete"} {
		if a := r.do(c, "POST", path, url.Values{"csrf": {csrf}, "confirm": {"yes"}}); a.status != http.StatusForbidden {
			t.Errorf("POST %s: %d", path, a.status)
		}
	}
	prog := r.do(c, "GET", "/ui/progress", nil)
	if !strings.Contains(prog.body, `"id":"bobs"`) || strings.Contains(prog.body, "alices") || strings.Contains(prog.body, "run1") {
		t.Errorf("bob's progress: %s", prog.body)
	}
	if r.f.called() != "session "+bob+" user by login link" {
		t.Errorf("calls: %s", r.f.called())
	}
}

// An expired session is sent back to the sign-in page (and its stream
// answers 401, which the script turns into the same).
func TestSessionExpiry(t *testing.T) {
	r := newRig(t)
	c, _ := r.signIn(admin, app.RoleAdmin)
	r.f.expireSessions()
	a := r.do(c, "GET", "/ui/exports", nil)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/login?expired=1" {
		t.Fatalf("expired session: %d to %q", a.status, a.header.Get("Location"))
	}
	if p := r.do(c, "GET", "/ui/login?expired=1", nil); p.status != 200 || !strings.Contains(p.body, "Your session has ended") {
		t.Fatalf("sign-in page: %d", p.status)
	}
	if p := r.do(r.browser(), "GET", "/ui/events", nil); p.status != http.StatusUnauthorized {
		t.Fatalf("events signed out: %d", p.status)
	}
	if p := r.do(r.browser(), "GET", "/ui/history", nil); p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/login" {
		t.Fatalf("signed out: %d %q", p.status, p.header.Get("Location"))
	}
}

// No page shows a secret: not the session's token, the login link's,
// the API token, nor the bot's follow state (it holds a reveal link).
func TestNoSecretRendered(t *testing.T) {
	r := newRig(t)
	c, csrf := r.signIn(admin, app.RoleAdmin)
	var session string
	u, _ := url.Parse(r.srv.URL + "/ui/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			session = ck.Value
		}
	}
	pending := r.link(bob, app.RoleUser, time.Minute)
	var pages []string
	for _, path := range []string{"/ui/exports", "/ui/exports/run1", "/ui/exports/bobs", "/ui/history", "/ui/schedules", "/ui/progress"} {
		pages = append(pages, r.do(c, "GET", path, nil).body)
	}
	pages = append(pages, r.do(c, "POST", "/ui/exports/done1/link", url.Values{"csrf": {csrf}}).body)
	for i, p := range pages {
		for _, secret := range []string{session, strings.TrimPrefix(pending, "/ui/login/"), apiToken, "REVEALTOKEN123", `"reveal"`} {
			if secret != "" && strings.Contains(p, secret) {
				t.Errorf("page %d shows a secret %q", i, secret)
			}
		}
	}
	if !strings.Contains(pages[len(pages)-1], "http://ferry.test/download/a?sig=1") || !strings.Contains(pages[len(pages)-1], "2026-12-02 10:00:00Z") {
		t.Errorf("the minted links and their expiry are not shown")
	}
}

// Delete asks first: the delete button leads to a confirmation page whose
// form deletes; a POST without the confirmation is refused.
func TestDeleteAsksFirst(t *testing.T) {
	r := newRig(t)
	c, csrf := r.signIn(admin, app.RoleAdmin)
	job := r.do(c, "GET", "/ui/exports/done1", nil)
	if !strings.Contains(job.body, `href="/ui/exports/done1/delete"`) {
		t.Fatal("no delete button")
	}
	ask := r.do(c, "GET", "/ui/exports/done1/delete", nil)
	if ask.status != 200 || !strings.Contains(ask.body, "full-20261130-done1") || !strings.Contains(ask.body, `name="confirm" value="yes"`) {
		t.Fatalf("confirmation page: %d", ask.status)
	}
	if strings.Contains(r.f.called(), "delete") {
		t.Fatal("deleted without confirmation")
	}
	if a := r.do(c, "POST", "/ui/exports/done1/delete", url.Values{"csrf": {csrf}}); a.status != http.StatusBadRequest {
		t.Fatalf("delete without confirm: %d", a.status)
	}
	if a := r.do(c, "POST", "/ui/exports/done1/delete", url.Values{"csrf": {csrf}, "confirm": {"yes"}}); a.status != http.StatusSeeOther {
		t.Fatalf("delete: %d", a.status)
	}
	if !strings.Contains(r.f.called(), "delete done1 by "+admin+" via dashboard") {
		t.Errorf("calls: %s", r.f.called())
	}
	if a := r.do(c, "POST", "/ui/exports/done1/cancel", url.Values{"csrf": {csrf}}); a.status != http.StatusConflict {
		t.Errorf("cancel of an ended job: %d", a.status)
	}
	if a := r.do(c, "GET", "/ui/exports/nope", nil); a.status != http.StatusNotFound {
		t.Errorf("unknown job: %d", a.status)
	}
}

// History: filters go to the audit query, pages link to each other
// keeping the filters, bad input is a clear 400.
func TestHistory(t *testing.T) {
	r := newRig(t)
	for i := range 120 {
		r.f.audit = append(r.f.audit, app.AuditEntry{At: time.Now(), Actor: admin, Via: "dashboard", Action: "link.create", Target: "x" + string(rune('a'+i%26))})
	}
	c, _ := r.signIn("@second:example.org", app.RoleAdmin)
	a := r.do(c, "GET", "/ui/history?actor="+url.QueryEscape(admin)+"&action=link&since=2026-01-01&until=2030-01-01T10:00", nil)
	if a.status != 200 || !strings.Contains(a.body, "link.create") || !strings.Contains(a.body, `rel="next"`) || strings.Contains(a.body, `rel="prev"`) {
		t.Fatalf("history: %d", a.status)
	}
	q := r.f.lastQ
	if q.Actor != admin || q.Action != "link" || q.Since.Year() != 2026 || q.Until.Hour() != 10 || q.Limit != 50 {
		t.Errorf("query: %+v", q)
	}
	next := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(a.body)[1]
	p2 := r.do(c, "GET", strings.ReplaceAll(next, "&amp;", "&"), nil)
	if r.f.lastQ.Offset != 50 || r.f.lastQ.Actor != admin || !strings.Contains(p2.body, `rel="prev"`) {
		t.Errorf("page 2: %+v", r.f.lastQ)
	}
	for _, bad := range []string{"since=yesterday", "page=-1", "until=2026-13-01"} {
		if a := r.do(c, "GET", "/ui/history?"+bad, nil); a.status != http.StatusBadRequest {
			t.Errorf("%s: %d", bad, a.status)
		}
	}
}

// openEvents opens c's event stream for at most 5 s; ctx ends then.
func (r *rig) openEvents(c *http.Client) (context.Context, *http.Response) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	r.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", r.srv.URL+"/ui/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { resp.Body.Close() })
	return ctx, resp
}

// The event stream sends every visible job, then each change, without a
// reload.
func TestEventStream(t *testing.T) {
	r := newRig(t)
	c, _ := r.signIn(admin, app.RoleAdmin)
	ctx, resp := r.openEvents(c)
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() string {
		for lines.Scan() {
			if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				return data
			}
		}
		t.Fatalf("stream ended: %v", lines.Err())
		return ""
	}
	first := next()
	if !strings.Contains(first, `"id":"run1"`) || !strings.Contains(first, `"percent":40`) || !strings.Contains(first, "400 of 1000 records") ||
		!strings.Contains(first, "about 1m30s left") || !strings.Contains(first, "3 media files") {
		t.Fatalf("first event: %s", first)
	}
	if !strings.Contains(first, `{"name":"events","counts":"380 of 900 records","state":"running"}`) ||
		!strings.Contains(first, `{"name":"media","counts":"0 of 80 records","state":"waiting"}`) {
		t.Fatalf("first event lacks the streams: %s", first)
	}
	r.f.setProgress("run1", 55, 550)
	second := next()
	if !strings.Contains(second, `"percent":55`) || strings.Contains(second, "done1") {
		t.Fatalf("second event (only the change): %s", second)
	}
	// Close (on the server's shutdown) ends the stream.
	r.s.Close()
	for lines.Scan() {
	}
	if ctx.Err() != nil {
		t.Fatal("the stream did not end when the dashboard closed")
	}
}

// A stream opened after a change starts with it, however fresh the
// shared read of the jobs is: a page rendered after an export was deleted
// is not shown "completed" again by its own stream.
func TestEventStreamStartsNoOlderThanItsPage(t *testing.T) {
	r := newRig(t)
	r.s.Interval = time.Hour // the shared read stays fresh for the whole test
	c, _ := r.signIn(admin, app.RoleAdmin)
	first := func() string {
		_, resp := r.openEvents(c)
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				return data
			}
		}
		t.Fatalf("stream ended: %v", lines.Err())
		return ""
	}
	if got := first(); !strings.Contains(got, `"percent":40`) {
		t.Fatalf("first stream: %s", got)
	}
	r.f.setProgress("run1", 70, 700)
	if got := first(); !strings.Contains(got, `"percent":70`) {
		t.Fatalf("a stream opened after the change starts with the older state: %s", got)
	}
}

// One export's page shows every stream with its records and state, and
// the media files written so far.
func TestJobPageStreams(t *testing.T) {
	r := newRig(t)
	c, _ := r.signIn(admin, app.RoleAdmin)
	page := r.do(c, "GET", "/ui/exports/run1", nil)
	if page.status != http.StatusOK {
		t.Fatalf("job page: %d", page.status)
	}
	for _, want := range []string{
		`data-stream="users">`, "20 of 20 records", ">done<",
		`data-stream="events">`, "380 of 900 records", ">running<",
		`data-stream="media">`, "0 of 80 records", ">waiting<",
		"3 media files, 3.0 MiB",
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the job page lacks %q", want)
		}
	}
}

// Schedules: cron, next run, retention, where defined, and the charts as
// SVG bars (one per run) with the success rate.
func TestSchedulesCharts(t *testing.T) {
	r := newRig(t)
	r.f.sched = []app.ScheduleView{{Schedule: app.Schedule{Name: "nightly", Cron: "0 3 * * *", Keep: 7, MaxAge: 720 * time.Hour}},
		{Schedule: app.Schedule{Name: "chat-one", Cron: "@every 6h", CreatedBy: admin}}}
	failed := &app.JobView{View: &app.View{ID: "f1", Kind: app.KindExport, Status: app.StatusFailed, CreatedAt: time.Now().Add(-48 * time.Hour), FinishedAt: time.Now().Add(-47 * time.Hour)}}
	r.f.runs = []*app.JobView{r.f.jobs[1], failed}
	c, _ := r.signIn(admin, app.RoleAdmin)
	a := r.do(c, "GET", "/ui/schedules", nil)
	for _, want := range []string{"0 3 * * *", "keep 7, max age 30 days", "config file", "chat, by " + admin, "<svg", `class="bar ok"`, `class="bar failed"`,
		"1 of 2 runs succeeded (50%)", "Archive size per run", "Duration per run"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("schedules page lacks %q", want)
		}
	}
}

// Sign-in attempts are rate limited per client address: a burst, then
// 429 with Retry-After (signed-in pages are not).
func TestSigninRateLimit(t *testing.T) {
	r := newRig(t)
	c := r.browser()
	var codes []int
	for range signinBurst + 5 {
		codes = append(codes, r.do(c, "GET", "/ui/login/guess-"+newRandom(), nil).status)
	}
	for i, code := range codes {
		want := http.StatusGone
		if i >= signinBurst {
			want = http.StatusTooManyRequests
		}
		if code != want {
			t.Fatalf("attempt %d: %d, want %d (all: %v)", i, code, want, codes)
		}
	}
	if a := r.do(c, "POST", "/ui/login", url.Values{"token": {"x"}}); a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
		t.Errorf("token form after the burst: %d, Retry-After %q", a.status, a.header.Get("Retry-After"))
	}
	if a := r.do(c, "GET", "/ui/exports", nil, "Authorization", "Bearer "+apiToken); a.status != 200 {
		t.Errorf("a signed-in page after the burst: %d", a.status)
	}
}

// Behind a reverse proxy that passes another Host on, a sign-in posted
// from Ferry's public URL is same-origin; from another scheme or host it
// is not.
func TestSigninBehindProxy(t *testing.T) {
	f := newFake()
	s := &Server{Svc: f, PublicURL: "https://ferry.example.org"}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	r := &rig{t: t, f: f, s: s, srv: srv}
	for origin, want := range map[string]int{"https://ferry.example.org": http.StatusSeeOther, "http://ferry.example.org": http.StatusForbidden,
		"https://evil.example.org": http.StatusForbidden} {
		c := r.browser()
		link := r.link(admin, app.RoleAdmin, time.Minute)
		page := r.do(c, "GET", link, nil)
		if a := r.do(c, "POST", link, url.Values{"signin": {field(t, page.body, "signin")}}, "Origin", origin); a.status != want {
			t.Errorf("Origin %s: %d, want %d", origin, a.status, want)
		}
	}
}

// An export made by `bot export --record` is listed as made through the
// CLI, and its page says where the archive went instead of offering links,
// verification or deletion of a copy Ferry does not have.
func TestCLIExportPage(t *testing.T) {
	r := newRig(t)
	r.f.jobs = append(r.f.jobs, &app.JobView{View: &app.View{ID: "cli1", Kind: app.KindExport, Status: app.StatusCompleted,
		Name: "full.ferry", Location: "/backups/full.ferry", Type: "full", Size: 7 << 20, RequestedBy: "cli:root@host", Via: "cli",
		CreatedAt: time.Now().Add(-time.Hour), FinishedAt: time.Now()}, Selection: "full"})
	c, _ := r.signIn(admin, app.RoleAdmin)
	list := r.do(c, "GET", "/ui/exports", nil)
	if !strings.Contains(list.body, "cli:root@host") || !strings.Contains(list.body, "CLI") {
		t.Errorf("the exports list lacks the CLI export:\n%s", list.body)
	}
	page := r.do(c, "GET", "/ui/exports/cli1", nil)
	if page.status != http.StatusOK || !strings.Contains(page.body, "<code>/backups/full.ferry</code>") ||
		!strings.Contains(page.body, "bot archive verify") {
		t.Errorf("the CLI export's page (%d) does not say where its archive is:\n%s", page.status, page.body)
	}
	for _, action := range []string{`id="links"`, `id="verify"`, `id="delete"`} {
		if strings.Contains(page.body, action) {
			t.Errorf("the CLI export's page offers %s", action)
		}
	}
}
