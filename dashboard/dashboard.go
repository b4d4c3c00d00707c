// Package dashboard is Ferry's web dashboard (/ui/): every export, import
// and verification with live progress, one job's page (verification,
// fidelity reports, audit trail, download links, cancel, verify,
// delete), the schedules with charts of their runs, and the audit log.
// It is server-rendered with html/template from the application layer's
// verbs (the Service it declares), with its assets embedded; the only
// script is a small file that follows progress over server-sent events
// (or polls).
//
// Sign-in needs no password: the bot's !dashboard sends a one-time link
// (app.LoginPath + token, valid app.LoginWindow) whose GET only shows a
// sign-in form, so that a homeserver's URL previewer cannot use it up;
// the form's same-origin POST uses the link and sets the session cookie
// (HttpOnly, SameSite=Strict, Secure behind TLS). An admin API token
// works too, pasted into the sign-in form or as "Authorization: Bearer".
// An admin session sees everything; a user session only that user's
// personal exports (403 elsewhere).
//
// Every state-changing request carries the session's CSRF token (403
// without it); every page is sent with a strict Content-Security-Policy
// (no inline script or style); what is done here goes through the same
// verbs as chat and the API, audited as the session's Matrix user "via
// dashboard". Nothing secret is rendered: no tokens, key lines or
// identities.
package dashboard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/internal/ratelimit"
)

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// Cookie names. The session cookie holds the session's token; the
// sign-in cookie a random value the sign-in forms echo (login CSRF).
const (
	sessionCookie = "ferry_session"
	signinCookie  = "ferry_signin"
)

// CSP is the Content-Security-Policy of every answer: scripts, styles and
// images from Ferry only (no inline script or style attribute), forms
// only to Ferry, never framed.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Service is what the dashboard needs of Ferry's application layer
// (app.Service): the verbs chat and the API call, which write their own
// audit entries, and the dashboard's logins and sessions.
type Service interface {
	Jobs(ctx context.Context, q app.JobQuery) ([]*app.JobView, error)
	Job(ctx context.Context, id string) (*app.JobDetail, error)
	PersonalExports(ctx context.Context, user string) ([]*app.JobView, error)
	Cancel(ctx context.Context, id string, by app.Actor) (*app.View, error)
	Delete(ctx context.Context, id string, by app.Actor) (*app.View, error)
	Verify(ctx context.Context, id, export string, by app.Actor) (*app.View, error)
	IssueLink(ctx context.Context, id string, by app.Actor) (*app.Links, error)
	Schedules(ctx context.Context) ([]app.ScheduleView, error)
	ScheduleRuns(ctx context.Context, name string, limit int) ([]*app.ScheduleRun, error)
	AuditLog(ctx context.Context, q app.AuditQuery) ([]app.AuditEntry, bool, error)
	Audit(ctx context.Context, e app.AuditEntry) error
	PeekLogin(ctx context.Context, token string) (*app.Grant, error)
	Login(ctx context.Context, token, from string) (*app.Grant, string, error)
	StartSession(ctx context.Context, user, role, how, from string) (*app.Grant, string, error)
	Session(ctx context.Context, token string) (*app.Grant, error)
	Logout(ctx context.Context, token string, by app.Actor) error
}

// Token is an admin API token (api.tokens with role admin): it signs in
// as "token:NAME".
type Token struct {
	Name   string
	Secret string
}

// Server serves the dashboard.
type Server struct {
	Svc Service
	// AdminTokens are the API tokens with the admin role.
	AdminTokens []Token
	// IsAdmin reports whether a Matrix user is one of Ferry's admins now
	// (admins.users). Every request of an admin session asks again, so
	// an admin removed from the config loses the dashboard with the
	// next request; nil: no Matrix user is an admin (admin sessions of
	// API tokens still work while their token is configured).
	IsAdmin func(user string) bool
	// Secure marks the cookies Secure (Ferry's public URL is https);
	// a request that came over TLS gets Secure cookies either way.
	Secure bool
	// Interval between progress updates on the event stream (default 1 s).
	Interval time.Duration
	// PublicURL is Ferry's public URL (api.public_url): forms posted from
	// its origin are same-origin also when a proxy passes another Host.
	PublicURL string
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (api.trusted_proxies), for the sign-in rate limit and
	// the audit log.
	TrustedProxies []string

	public    *url.URL
	once      sync.Once
	closeOnce sync.Once
	closing   chan struct{} // closed by Close: open event streams end
	clients   ratelimit.Clients
	signins   *ratelimit.Limiter
	mux       *http.ServeMux
	pages     map[string]*template.Template
	tokens    []tokenHash
	snap      snapshot
}

type tokenHash struct {
	sum  [32]byte
	name string
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Handler returns the dashboard's handler, for Prefix.
func (s *Server) Handler() http.Handler {
	s.once.Do(s.init)
	return s.mux
}

// Close ends the open event streams (their browsers reconnect to
// whatever serves next). http.Server.Shutdown waits for requests to end,
// and an event stream never would: register Close with
// RegisterOnShutdown.
func (s *Server) Close() {
	s.once.Do(s.init)
	s.closeOnce.Do(func() { close(s.closing) })
}

func (s *Server) init() {
	s.closing = make(chan struct{})
	if u, err := url.Parse(s.PublicURL); err == nil && u.Host != "" {
		s.public = u
	}
	if s.Interval <= 0 {
		s.Interval = time.Second
	}
	for _, t := range s.AdminTokens {
		s.tokens = append(s.tokens, tokenHash{sum: sha256.Sum256([]byte(t.Secret)), name: t.Name})
	}
	s.pages = parsePages()
	s.clients.Trusted, _ = ratelimit.ParsePrefixes(s.TrustedProxies) // config.Validate reports bad entries
	s.signins = ratelimit.New(signinRate, signinBurst)
	static, _ := fs.Sub(staticFS, "static")
	m := http.NewServeMux()
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /ui/{$}", s.home)
	m.HandleFunc("GET /ui/login", s.signinForm)
	m.HandleFunc("POST /ui/login", s.limited(s.tokenSignin))
	m.HandleFunc("GET /ui/login/{token}", s.limited(s.linkForm))
	m.HandleFunc("POST /ui/login/{token}", s.limited(s.linkSignin))
	m.HandleFunc("POST /ui/logout", s.auth(roleAny, s.logout))
	m.HandleFunc("GET /ui/me", s.auth(roleAny, s.me))
	m.HandleFunc("GET /ui/events", s.auth(roleAny, s.events))
	m.HandleFunc("GET /ui/progress", s.auth(roleAny, s.progress))
	m.HandleFunc("GET /ui/exports", s.auth(app.RoleAdmin, s.exports))
	m.HandleFunc("GET /ui/exports/{id}", s.auth(app.RoleAdmin, s.job))
	m.HandleFunc("POST /ui/exports/{id}/link", s.auth(app.RoleAdmin, s.link))
	m.HandleFunc("POST /ui/exports/{id}/cancel", s.auth(app.RoleAdmin, s.cancel))
	m.HandleFunc("POST /ui/exports/{id}/verify", s.auth(app.RoleAdmin, s.verify))
	m.HandleFunc("GET /ui/exports/{id}/delete", s.auth(app.RoleAdmin, s.deleteForm))
	m.HandleFunc("POST /ui/exports/{id}/delete", s.auth(app.RoleAdmin, s.delete))
	m.HandleFunc("GET /ui/schedules", s.auth(app.RoleAdmin, s.schedules))
	m.HandleFunc("GET /ui/history", s.auth(app.RoleAdmin, s.history))
	m.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	s.mux = http.NewServeMux()
	s.mux.Handle(Prefix, secureHeaders(m))
}

// secureHeaders sets the headers every answer carries: the CSP, no
// sniffing, the referrer only within Ferry (a login link's token must
// not leak to a linked site; "no-referrer" would make browsers send
// "Origin: null" with Ferry's own forms), no caching of pages that show
// jobs.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// principal is who a request acts as.
type principal struct {
	app.Grant
	// session is the session cookie's token ("" for an API token in the
	// Authorization header, which needs no CSRF token: a browser never
	// adds it by itself).
	session string
}

func (p *principal) admin() bool { return p.Role == app.RoleAdmin }

// csrf is the session's CSRF token, derived from its secret token (the
// cookie, which scripts can't read) so that it needs no storage.
func (p *principal) csrf() string {
	if p.session == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("ferry dashboard csrf\x00" + p.session))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (p *principal) actor() app.Actor { return app.Actor{Name: p.User, Via: app.ViaDashboard} }

// roleAny lets any signed-in role through auth.
const roleAny = ""

type handler func(w http.ResponseWriter, r *http.Request, p *principal)

// auth resolves the request's principal (Authorization header with an
// admin API token, or the session cookie), sends the signed-out to the
// sign-in page, refuses other roles than role (403), and checks the CSRF
// token of state-changing requests (403).
func (s *Server) auth(role string, next handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.principal(r)
		switch {
		case errors.Is(err, errSignedOut), errors.Is(err, app.ErrGone):
			if err == app.ErrGone {
				http.SetCookie(w, s.cookie(r, s.sessionCookieName(r), "", -1))
			}
			if r.URL.Path == "/ui/events" || r.URL.Path == "/ui/progress" {
				http.Error(w, "signed out", http.StatusUnauthorized)
				return
			}
			to := "/ui/login"
			if err == app.ErrGone {
				to += "?expired=1"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		case errors.Is(err, errBadToken):
			s.fail(w, r, nil, http.StatusUnauthorized, "That API token is not an admin token of this Ferry.")
			return
		case err != nil:
			s.failInternal(w, r, nil, err, "Could not read your session")
			return
		}
		if role != roleAny && p.Role != role {
			s.fail(w, r, p, http.StatusForbidden, "This page is for Ferry's admins. Your page shows your own exports.")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && p.session != "" {
			got := r.PostFormValue("csrf")
			if got == "" {
				got = r.Header.Get("X-CSRF-Token")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(p.csrf())) != 1 {
				s.fail(w, r, p, http.StatusForbidden, "This form is missing its security token or it is stale. Reload the page and try again.")
				return
			}
		}
		next(w, r, p)
	}
}

var (
	errSignedOut = errors.New("signed out")
	errBadToken  = errors.New("not an admin API token")
)

func (s *Server) principal(r *http.Request) (*principal, error) {
	// Only a Bearer token is Ferry's: other schemes (a proxy's Basic
	// auth) are not about Ferry, and the session cookie decides.
	if h := r.Header.Get("Authorization"); len(h) > len(bearer) && strings.EqualFold(h[:len(bearer)], bearer) {
		name, ok := s.adminToken(strings.TrimSpace(h[len(bearer):]))
		if !ok {
			return nil, errBadToken
		}
		return &principal{Grant: app.Grant{User: "token:" + name, Role: app.RoleAdmin}}, nil
	}
	c, err := r.Cookie(s.sessionCookieName(r))
	if err != nil || c.Value == "" {
		return nil, errSignedOut
	}
	g, err := s.Svc.Session(r.Context(), c.Value)
	if err != nil {
		return nil, err
	}
	if !s.granted(g) {
		return nil, app.ErrGone
	}
	return &principal{Grant: *g, session: c.Value}, nil
}

const bearer = "Bearer "

// granted checks a session's grant against the config now: an admin
// session of an API token ("token:NAME") needs that admin token still
// configured, a Matrix user's admin session that user still an admin.
// A session that fails counts as signed out.
func (s *Server) granted(g *app.Grant) bool {
	if g.Role != app.RoleAdmin {
		return true
	}
	if name, ok := strings.CutPrefix(g.User, "token:"); ok {
		for _, t := range s.tokens {
			if t.name == name {
				return true
			}
		}
		return false
	}
	return s.IsAdmin != nil && s.IsAdmin(g.User)
}

// adminToken finds an admin API token (constant time per token).
func (s *Server) adminToken(secret string) (string, bool) {
	sum := sha256.Sum256([]byte(secret))
	name, ok := "", false
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			name, ok = t.name, true
		}
	}
	return name, ok && secret != ""
}

// cookie makes one of the dashboard's cookies: HttpOnly, SameSite=Strict,
// Secure behind TLS, for /ui/ only (a "__Host-" cookie must be for /);
// maxAge < 0 deletes it.
func (s *Server) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	path := Prefix
	if strings.HasPrefix(name, hostPrefix) {
		path = "/"
	}
	return &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r)}
}

func (s *Server) secure(r *http.Request) bool { return s.Secure || r.TLS != nil }

// hostPrefix makes browsers refuse a cookie that is not Secure, for
// Path=/ and without Domain: no other host or plain-HTTP page can set
// or shadow the session cookie.
const hostPrefix = "__Host-"

// sessionCookieName is the session cookie's name: "__Host-" prefixed
// when the cookies are Secure (plain HTTP, as in tests, can't have it).
func (s *Server) sessionCookieName(r *http.Request) string {
	if s.secure(r) {
		return hostPrefix + sessionCookie
	}
	return sessionCookie
}

// sameOrigin reports whether a form was posted from this site: the
// browser's Sec-Fetch-Site or Origin, when sent, must say so. The origin
// is the request's host, or Ferry's public URL's (a reverse proxy may
// pass another Host on).
func (s *Server) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" {
			return false
		}
		if u.Host != r.Host && (s.public == nil || u.Scheme != s.public.Scheme || u.Host != s.public.Host) {
			return false
		}
	}
	return true
}

// The sign-in rate limit per client address: signinBurst attempts at
// once, then signinRate a second. Plenty for people; a token guesser gets
// 429 (not that 192 random bits can be guessed).
const (
	signinRate  = 1
	signinBurst = 20
)

// limited applies the sign-in rate limit (429 with Retry-After).
func (s *Server) limited(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := s.signins.Take(ratelimit.Key(s.clientAddr(r))); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			s.fail(w, r, nil, http.StatusTooManyRequests, "Too many sign-in attempts from your address; wait a moment and try again.")
			return
		}
		next(w, r)
	}
}

// clientAddr is the client's address (behind trusted proxies, the one
// they name), for the rate limit and the audit log.
func (s *Server) clientAddr(r *http.Request) string { return s.clients.Addr(r) }
