package dashboard

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/app"
)

// sessionOf is the session cookie's value the client holds for the rig.
func (r *rig) sessionOf(c *http.Client) string {
	r.t.Helper()
	u, _ := url.Parse(r.srv.URL + "/ui/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			return ck.Value
		}
	}
	r.t.Fatal("no session cookie")
	return ""
}

// An admin session is checked against the config on every request: a
// Matrix user no longer in admins.users is signed out (back to the
// sign-in page, cookie deleted), and so is the session of an admin API
// token that is no longer configured (after a restart with the new
// config: sessions survive restarts).
func TestAdminGrantRevoked(t *testing.T) {
	r := newRig(t)
	var removed atomic.Bool
	r.s.IsAdmin = func(u string) bool { return u == admin && !removed.Load() }
	c, _ := r.signIn(admin, app.RoleAdmin)
	removed.Store(true)
	for _, path := range []string{"/ui/exports", "/ui/history"} {
		a := r.do(c, "GET", path, nil)
		if a.status != http.StatusSeeOther || !strings.HasPrefix(a.header.Get("Location"), "/ui/login") {
			t.Fatalf("%s after the admin was removed: %d to %q", path, a.status, a.header.Get("Location"))
		}
	}
	if a := r.do(c, "GET", "/ui/progress", nil); a.status != http.StatusUnauthorized {
		t.Errorf("progress after the admin was removed: %d", a.status)
	}
	// A user session needs no admin grant.
	u, _ := r.signIn(bob, app.RoleUser)
	if a := r.do(u, "GET", "/ui/me", nil); a.status != 200 {
		t.Errorf("a user's page: %d", a.status)
	}

	// An API token's session, then a restart without that token.
	tc := r.browser()
	form := r.do(tc, "GET", "/ui/login", nil)
	if a := r.do(tc, "POST", "/ui/login", url.Values{"signin": {field(t, form.body, "signin")}, "token": {apiToken}}); a.status != http.StatusSeeOther {
		t.Fatalf("token sign-in: %d", a.status)
	}
	session := r.sessionOf(tc)
	for _, tokens := range [][]Token{{{Name: "ops", Secret: apiToken}}, {{Name: "other", Secret: "another-admin-token-0123456789"}}} {
		s := &Server{Svc: r.f, AdminTokens: tokens}
		srv := httptest.NewServer(s.Handler())
		req, _ := http.NewRequest("GET", srv.URL+"/ui/exports", nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: session})
		resp, err := r.browser().Do(req)
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := 200
		if tokens[0].Name != "ops" {
			want = http.StatusSeeOther
		}
		if resp.StatusCode != want {
			t.Errorf("token session with tokens %v: %d, want %d", tokens[0].Name, resp.StatusCode, want)
		}
	}
}

// Only "Authorization: Bearer" is an admin token: a reverse proxy's Basic
// auth leaves the session cookie in charge.
func TestAuthorizationNotBearer(t *testing.T) {
	r := newRig(t)
	basic := "Basic dXNlcjpwYXNz"
	if a := r.do(r.browser(), "GET", "/ui/exports", nil, "Authorization", basic); a.status != http.StatusSeeOther {
		t.Errorf("Basic auth, no session: %d, want the sign-in page", a.status)
	}
	c, _ := r.signIn(admin, app.RoleAdmin)
	if a := r.do(c, "GET", "/ui/exports", nil, "Authorization", basic); a.status != 200 {
		t.Errorf("Basic auth with a session: %d", a.status)
	}
	if a := r.do(r.browser(), "GET", "/ui/exports", nil, "Authorization", "bearer "+apiToken); a.status != 200 {
		t.Errorf("lower-case bearer: %d", a.status)
	}
	if a := r.do(r.browser(), "GET", "/ui/exports", nil, "Authorization", "Bearer nope"); a.status != http.StatusUnauthorized {
		t.Errorf("a wrong Bearer token: %d", a.status)
	}
}

// Secure cookies: the session cookie is "__Host-" prefixed, for Path=/,
// and works when sent back.
func TestSecureSessionCookie(t *testing.T) {
	r := newRig(t)
	s := &Server{Svc: r.f, Secure: true, IsAdmin: func(u string) bool { return u == admin }}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	r.srv = srv
	c := r.browser()
	link := r.link(admin, app.RoleAdmin, time.Minute)
	page := r.do(c, "GET", link, nil)
	// The jar keeps Secure cookies from plain HTTP pages out: echo by hand.
	var signin *http.Cookie
	for _, ck := range (&http.Response{Header: page.header}).Cookies() {
		if ck.Name == signinCookie {
			signin = ck
		}
	}
	if signin == nil || !signin.Secure {
		t.Fatalf("sign-in cookie: %+v", signin)
	}
	a := r.do(c, "POST", link, url.Values{"signin": {field(t, page.body, "signin")}}, "Cookie", signinCookie+"="+signin.Value)
	var session *http.Cookie
	for _, ck := range (&http.Response{Header: a.header}).Cookies() {
		if ck.Value != "" && strings.Contains(ck.Name, sessionCookie) {
			session = ck
		}
	}
	if a.status != http.StatusSeeOther || session == nil || session.Name != "__Host-"+sessionCookie || session.Path != "/" || !session.Secure {
		t.Fatalf("sign-in: %d, session cookie %+v", a.status, session)
	}
	if got := r.do(r.browser(), "GET", "/ui/exports", nil, "Cookie", session.Name+"="+session.Value); got.status != 200 {
		t.Errorf("with the __Host- cookie: %d", got.status)
	}
	if got := r.do(r.browser(), "GET", "/ui/exports", nil, "Cookie", sessionCookie+"="+session.Value); got.status != http.StatusSeeOther {
		t.Errorf("with the unprefixed cookie: %d", got.status)
	}
}

// A new sign-in in a browser ends the session its cookie named.
func TestNewSigninEndsOldSession(t *testing.T) {
	r := newRig(t)
	c, _ := r.signIn(admin, app.RoleAdmin)
	old := r.sessionOf(c)
	link := r.link(admin, app.RoleAdmin, time.Minute)
	page := r.do(c, "GET", link, nil)
	if a := r.do(c, "POST", link, url.Values{"signin": {field(t, page.body, "signin")}}); a.status != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d", a.status)
	}
	if now := r.sessionOf(c); now == old {
		t.Fatal("the session cookie did not change")
	}
	r.f.mu.Lock()
	_, live := r.f.sessions[old]
	r.f.mu.Unlock()
	if live {
		t.Error("the replaced session is still live")
	}
}

// An open event stream of an admin who is removed ends with "signedout"
// at its next check.
func TestEventStreamAdminRevoked(t *testing.T) {
	r := newRig(t)
	var removed atomic.Bool
	r.s.IsAdmin = func(u string) bool { return u == admin && !removed.Load() }
	defer func(d time.Duration) { sessionRecheck = d }(sessionRecheck)
	sessionRecheck = 0
	c, _ := r.signIn(admin, app.RoleAdmin)
	_, resp := r.openEvents(c)
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "data: ") {
	}
	removed.Store(true)
	for lines.Scan() {
		if lines.Text() == "event: signedout" {
			return
		}
	}
	t.Fatalf("the stream ended without signedout: %v", lines.Err())
}
