// Package api is Ferry's HTTP API for admins' own tooling:
//
//	POST   /api/v1/exports        create an export (role admin)
//	GET    /api/v1/exports        list exports (admin, reader)
//	GET    /api/v1/exports/{id}   status, progress, size, checksum (admin: and a download link when done)
//	POST   /api/v1/exports/{id}/link  a fresh download link for a completed export (admin)
//	DELETE /api/v1/exports/{id}   cancel a running export, or delete a finished one's archive (admin)
//	POST   /api/v1/exports/{id}/verify  queue a verification of a finished export's archive (admin)
//	POST   /api/v1/imports        queue an import of a published archive into a configured target (admin)
//	GET    /api/v1/jobs           list jobs of every kind (?kind=export|import|verify)
//	GET    /api/v1/jobs/{id}      one job's status, progress and result
//	DELETE /api/v1/jobs/{id}      cancel a queued or running job (admin)
//	GET    /metrics               Prometheus metrics
//	GET    /healthz               liveness (and the state database is reachable)
//	GET    /download/...          signed download links (package links)
//	GET    /reveal/...            one-time secret links (package links)
//
// Requests carry "Authorization: Bearer <token>"; tokens come from the
// config, each with a role. Every client is rate limited: API callers by
// token, /download and /reveal by client address (X-Forwarded-For counts
// only from TrustedProxies), and refusals of the latter are audited as one
// row per address and minute. Errors are JSON
// {"errcode": "...", "error": "what is wrong and what to do"}.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/ratelimit"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/source"
)

// Roles of API tokens.
const (
	RoleAdmin  = "admin"  // everything, download links included
	RoleReader = "reader" // list and status, without download links
)

// Limits of /download and /reveal per client address: linkBurst requests
// at once, then linkRate a second. Enough for a download manager's
// parallel ranges and a person's clicks; a flood gets 429.
const (
	linkRate  = 1
	linkBurst = 20
)

// Token is an API token from the config.
type Token struct {
	Name   string // shown in the audit log, never the secret
	Role   string
	Secret string
}

// Service is what the API needs of Ferry's application layer
// (app.Service): its verbs, which write their own audit entries.
type Service interface {
	Submit(ctx context.Context, r app.ExportRequest) (*app.View, error)
	SubmitImport(ctx context.Context, id string, req app.ImportRequest, keyLine string, by app.Actor) (*app.View, error)
	Verify(ctx context.Context, id, export string, by app.Actor) (*app.View, error)
	Cancel(ctx context.Context, id string, by app.Actor) (*app.View, error)
	Delete(ctx context.Context, id string, by app.Actor) (*app.View, error)
	Get(ctx context.Context, id string) (*app.View, error)
	List(ctx context.Context, kind app.Kind, limit int) ([]*app.View, error)
	DownloadLinks(ctx context.Context, v *app.View) (*app.Links, error)
	IssueLink(ctx context.Context, id string, by app.Actor) (*app.Links, error)
	Audit(ctx context.Context, e app.AuditEntry) error
	Stats(ctx context.Context) (*app.Stats, error)
	Ping(ctx context.Context) error
}

// Server serves the API.
type Server struct {
	Svc    Service
	Tokens []Token
	// Links serves /download for stores without presigned URLs (the
	// service mints the links).
	Links *links.Handler
	// Reveal, if set, serves one-time secret links (links.RevealHandler).
	Reveal http.Handler
	// Rate limit per client: Rate requests per second, Burst at once.
	Rate  float64
	Burst int
	// TrustedProxies are the addresses (or CIDR prefixes) of reverse
	// proxies whose X-Forwarded-For names the client (api.trusted_proxies).
	TrustedProxies []string
	// RefusalWindow is how long refused /download and /reveal requests of
	// one address are counted before their audit row is written (default a
	// minute).
	RefusalWindow time.Duration

	once     sync.Once
	mux      *http.ServeMux
	limiter  *ratelimit.Limiter
	links    *ratelimit.Limiter // /download and /reveal, per client address
	refusals *ratelimit.Tally
	clients  ratelimit.Clients
	hashes   []tokenHash
}

type tokenHash struct {
	sum  [32]byte
	name string
	role string
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	s.once.Do(s.init)
	return s.mux
}

func (s *Server) init() {
	for _, t := range s.Tokens {
		s.hashes = append(s.hashes, tokenHash{sum: sha256.Sum256([]byte(t.Secret)), name: t.Name, role: t.Role})
	}
	if s.Rate <= 0 {
		s.Rate, s.Burst = 20, 40
	}
	s.limiter = ratelimit.New(s.Rate, s.Burst)
	s.links = ratelimit.New(linkRate, linkBurst)
	s.clients.Trusted, _ = ratelimit.ParsePrefixes(s.TrustedProxies) // config.Validate reports bad entries
	s.refusals = &ratelimit.Tally{Window: s.RefusalWindow, Report: func(key string, n int, from, to time.Time) {
		action, addr, _ := strings.Cut(key, " ")
		s.Svc.Audit(context.Background(), app.AuditEntry{At: from, Actor: "link", Via: action + " " + addr, Action: action,
			Outcome: "refused (429)", Detail: fmt.Sprintf("%d requests refused by the rate limit from %s to %s", n,
				from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))})
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&statsCollector{svc: s.Svc}, prometheus.NewGoCollector())
	m := http.NewServeMux()
	m.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m.HandleFunc("GET /healthz", s.healthz)
	m.Handle("POST /api/v1/exports", s.auth(RoleAdmin, s.create))
	m.Handle("GET /api/v1/exports", s.auth(RoleReader, s.list))
	m.Handle("GET /api/v1/exports/{id}", s.auth(RoleReader, s.status))
	m.Handle("POST /api/v1/exports/{id}/link", s.auth(RoleAdmin, s.link))
	m.Handle("DELETE /api/v1/exports/{id}", s.auth(RoleAdmin, s.remove))
	m.Handle("POST /api/v1/exports/{id}/verify", s.auth(RoleAdmin, s.verify))
	m.Handle("POST /api/v1/imports", s.auth(RoleAdmin, s.createImport))
	m.Handle("GET /api/v1/jobs", s.auth(RoleReader, s.listJobs))
	m.Handle("GET /api/v1/jobs/{id}", s.auth(RoleReader, s.jobStatus))
	m.Handle("DELETE /api/v1/jobs/{id}", s.auth(RoleAdmin, s.cancelJob))
	if s.Links != nil {
		if s.Links.Audit == nil {
			s.Links.Audit = func(d links.Download) {
				outcome, detail := "ok", d.Range
				if d.Err != nil {
					outcome, detail = "refused", d.Err.Error()
				}
				s.Svc.Audit(context.Background(), app.AuditEntry{At: d.At, Actor: "link", Via: "download " + d.RemoteAddr,
					Action: "download", Target: d.Key, Outcome: fmt.Sprintf("%s (%d)", outcome, d.Status), Detail: detail})
			}
		}
		m.Handle(links.Path, s.limitLinks("download", s.Links))
	}
	if s.Reveal != nil {
		m.Handle(links.RevealPath, s.limitLinks("secret.reveal", s.Reveal))
	}
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", fmt.Sprintf("no endpoint %s %s: see /api/v1/exports", r.Method, r.URL.Path))
	})
	s.mux = m
}

// caller is the authenticated token.
type caller struct{ name, role string }

// actor is the caller as the verbs record it.
func (c caller) actor() app.Actor { return app.Actor{Name: "token:" + c.name, Via: "api"} }

func (s *Server) auth(need string, h func(http.ResponseWriter, *http.Request, caller)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || bearer == "" {
			if !s.limiter.Allow("anon:" + ratelimit.Key(s.clients.Addr(r))) {
				tooMany(w)
				return
			}
			writeError(w, http.StatusUnauthorized, "M_MISSING_TOKEN", "send an API token: Authorization: Bearer <token> (tokens are in Ferry's config)")
			return
		}
		sum := sha256.Sum256([]byte(bearer))
		var c *caller
		for _, t := range s.hashes {
			if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
				c = &caller{name: t.name, role: t.role}
			}
		}
		if c == nil {
			addr := s.clients.Addr(r)
			if !s.limiter.Allow("anon:" + ratelimit.Key(addr)) {
				tooMany(w)
				return
			}
			s.Svc.Audit(r.Context(), app.AuditEntry{Actor: "unknown token", Via: "api " + addr, Action: r.Method + " " + r.URL.Path, Outcome: "refused", Detail: "unknown token"})
			writeError(w, http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "this API token is not valid")
			return
		}
		if !s.limiter.Allow("token:" + c.name) {
			tooMany(w)
			return
		}
		if need == RoleAdmin && c.role != RoleAdmin {
			s.Svc.Audit(r.Context(), app.AuditEntry{Actor: "token:" + c.name, Via: "api", Action: r.Method + " " + r.URL.Path, Outcome: "refused", Detail: "role " + c.role})
			writeError(w, http.StatusForbidden, "M_FORBIDDEN", fmt.Sprintf("token %q has role %s; this needs %s", c.name, c.role, RoleAdmin))
			return
		}
		h(w, r, *c)
	})
}

// limitLinks rate-limits h (/download, /reveal) by client address. A
// refused request gets 429 with Retry-After and is only counted: one audit
// row per address and window says how many were refused. The requests let
// through see the client address as RemoteAddr (their audit rows name it).
func (s *Server) limitLinks(action string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := s.clients.Addr(r)
		key := action + " " + ratelimit.Key(addr) // IPv6: the client's /64, for the limit and the count
		if ok, wait := s.links.Take(key); !ok {
			s.refusals.Add(key)
			w.Header().Set("Retry-After", strconv.Itoa(int(max(1, wait.Round(time.Second)/time.Second))))
			http.Error(w, "429 too many requests from your address: wait a moment and retry", http.StatusTooManyRequests)
			return
		}
		r2 := r.WithContext(r.Context()) // a shallow copy
		r2.RemoteAddr = addr
		h.ServeHTTP(w, r2)
	})
}

func tooMany(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", "too many requests: slow down and retry after a second")
}

func writeError(w http.ResponseWriter, code int, errcode, msg string) {
	writeJSON(w, code, map[string]string{"errcode": errcode, "error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Svc.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "M_UNAVAILABLE", "state database unreachable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ExportRequest is the body of POST /api/v1/exports.
type ExportRequest struct {
	Type       string        `json:"type"` // full | partial (default: partial when options select rooms, users or a date range)
	Options    ExportOptions `json:"options"`
	Recipients []string      `json:"recipients"`
	Plaintext  bool          `json:"plaintext"`
	Name       string        `json:"name"`
	// Verify queues a verification once the archive is published.
	Verify bool `json:"verify"`
}

// ExportOptions of a request.
type ExportOptions struct {
	DateRange *struct {
		Start Timestamp `json:"start"`
		End   Timestamp `json:"end"`
	} `json:"date_range"`
	Rooms        []string `json:"rooms"`
	Users        []string `json:"users"`
	IncludeMedia *bool    `json:"include_media"`
	Media        string   `json:"media"` // none | referenced | all (overrides include_media)
	AccessTokens bool     `json:"access_tokens"`
	OneTimeKeys  bool     `json:"one_time_keys"`
}

// Timestamp accepts RFC 3339 text or epoch milliseconds.
type Timestamp struct{ time.Time }

func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if ms, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		t.Time = time.UnixMilli(ms)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("a timestamp is RFC 3339 text or epoch milliseconds")
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("timestamp %q: use RFC 3339, e.g. 2026-11-23T00:00:00Z", s)
	}
	t.Time = v
	return nil
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, c caller) {
	var req ExportRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "request body: "+err.Error())
		return
	}
	v, err := s.Svc.Submit(r.Context(), exportRequest(req, c))
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, s.view(r.Context(), v, c))
}

// exportRequest turns a request into the verb's: its options are the
// exporter's Selection, which the verb validates (include_media false is
// media none; true leaves the default to the selection).
func exportRequest(req ExportRequest, c caller) app.ExportRequest {
	o := req.Options
	sel := exporter.Selection{Type: req.Type, Rooms: o.Rooms, Users: o.Users, Media: o.Media}
	if o.DateRange != nil {
		sel.Since, sel.Until = o.DateRange.Start.Time, o.DateRange.End.Time
	}
	if sel.Media == "" && o.IncludeMedia != nil && !*o.IncludeMedia {
		sel.Media = source.MediaNone
	}
	return app.ExportRequest{Selection: sel, Options: source.Options{AccessTokens: o.AccessTokens, OneTimeKeys: o.OneTimeKeys},
		Recipients: req.Recipients, Plaintext: req.Plaintext, Name: req.Name, Verify: req.Verify, By: c.actor()}
}

// ExportView is what the API returns for an export.
type ExportView struct {
	ExportID            string        `json:"export_id"`
	Kind                string        `json:"kind"` // export | import | verify
	Result              string        `json:"result,omitempty"`
	Status              string        `json:"status"`
	Name                string        `json:"name"`
	Progress            float64       `json:"progress"` // percent
	Detail              *app.Progress `json:"detail,omitempty"`
	EstimatedCompletion *time.Time    `json:"estimated_completion,omitempty"`
	Size                int64         `json:"size,omitempty"`
	SHA256              string        `json:"checksum,omitempty"`
	Link                string        `json:"link,omitempty"`
	LinkExpires         *time.Time    `json:"link_expires,omitempty"`
	Error               string        `json:"error,omitempty"`
	RequestedBy         string        `json:"requested_by"`
	CreatedAt           time.Time     `json:"created_at"`
	FinishedAt          *time.Time    `json:"finished_at,omitempty"`
}

// view is what c sees of a job: a completed export's download link only
// if c is an admin (a link opens the archive, a plaintext one to anybody).
func (s *Server) view(ctx context.Context, j *app.View, c caller) ExportView {
	v := ExportView{ExportID: j.ID, Kind: string(j.Kind), Status: string(j.Status), Name: j.Name, Size: j.Size, SHA256: j.SHA256, Error: j.Error,
		RequestedBy: j.RequestedBy, CreatedAt: j.CreatedAt}
	if p := j.Progress; !p.IsZero() {
		v.Detail, v.Progress, v.Result = &p, p.Percent, p.Result
		if d, err := time.ParseDuration(p.ETA); err == nil && j.Status == app.StatusProcessing {
			t := time.Now().Add(d).UTC().Truncate(time.Second)
			v.EstimatedCompletion = &t
		}
	}
	if !j.FinishedAt.IsZero() {
		t := j.FinishedAt
		v.FinishedAt = &t
	}
	if j.Status == app.StatusCompleted {
		v.Progress = 100
	}
	if j.Status == app.StatusCompleted && j.Kind == app.KindExport && c.role == RoleAdmin && s.Links != nil {
		if l, err := s.Svc.DownloadLinks(ctx, j); err == nil {
			v.Link, v.LinkExpires = l.Archive, &l.Expires
		}
	}
	return v
}

// link mints a fresh download link for a completed export (admin only).
func (s *Server) link(w http.ResponseWriter, r *http.Request, c caller) {
	j, ok := s.lookup(w, r, app.KindExport)
	if !ok {
		return
	}
	if s.Links == nil {
		writeError(w, http.StatusNotImplemented, "M_UNRECOGNIZED", "this Ferry serves no download links")
		return
	}
	l, err := s.Svc.IssueLink(r.Context(), j.ID, c.actor())
	if err != nil {
		writeVerbError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"export_id": j.ID, "link": l.Archive, "link_expires": l.Expires})
}

// writeVerbError answers a verb's error: 404 for ErrNotFound, 409 for
// ErrConflict, 500 otherwise; the message is the verb's.
func writeVerbError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, app.ErrNotFound):
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", err.Error())
	case errors.Is(err, app.ErrConflict):
		writeError(w, http.StatusConflict, "M_CONFLICT", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, c caller) {
	s.listKind(w, r, c, app.KindExport, "exports")
}

// listKind answers with the newest jobs of kind ("" for all) under key,
// at most ?limit= of them (default 50).
func (s *Server) listKind(w http.ResponseWriter, r *http.Request, c caller, kind app.Kind, key string) {
	limit := 50
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "limit must be a number from 1 to 1000")
			return
		}
		limit = n
	}
	list, err := s.Svc.List(r.Context(), kind, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "could not read the "+key)
		return
	}
	out := make([]ExportView, 0, len(list))
	for _, j := range list {
		out = append(out, s.view(r.Context(), j, c))
	}
	writeJSON(w, http.StatusOK, map[string]any{key: out})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, c caller) {
	if j, ok := s.lookup(w, r, app.KindExport); ok {
		writeJSON(w, http.StatusOK, s.view(r.Context(), j, c))
	}
}

// lookup reads the job of the request's {id} path value, of kind ("" for
// any), or answers 404 or 500 and returns false.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request, kind app.Kind) (*app.View, bool) {
	id := r.PathValue("id")
	j, err := s.Svc.Get(r.Context(), id)
	if err == nil && kind != "" && j.Kind != kind {
		err = app.ErrNotFound // e.g. an import's ID under /exports, whose DELETE would remove the archive it read
	}
	what := map[app.Kind]string{"": "job", app.KindExport: "export"}[kind]
	if errors.Is(err, app.ErrNotFound) {
		hint := ""
		if kind == app.KindExport {
			hint = " (imports and verifications are under /api/v1/jobs)"
		}
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "no "+what+" "+id+hint)
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "could not read the "+what)
		return nil, false
	}
	return j, true
}

// remove cancels a running export, or deletes a completed one's archive.
func (s *Server) remove(w http.ResponseWriter, r *http.Request, c caller) {
	j, ok := s.lookup(w, r, app.KindExport)
	if !ok {
		return
	}
	switch {
	case j.Running():
		v, err := s.Svc.Cancel(r.Context(), j.ID, c.actor())
		if err != nil {
			writeError(w, http.StatusConflict, "M_CONFLICT", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, s.view(r.Context(), v, c))
	case j.Status == app.StatusCompleted:
		if _, err := s.Svc.Delete(r.Context(), j.ID, c.actor()); err != nil {
			writeVerbError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusConflict, "M_CONFLICT", fmt.Sprintf("export %s has ended (%s); there is nothing to cancel or delete", j.ID, j.Status))
	}
}

// statsCollector reports job metrics from the state database (through
// the service), so that they are right across restarts and several
// instances.
type statsCollector struct{ svc Service }

var (
	descExports  = prometheus.NewDesc("ferry_exports", "Exports by status.", []string{"status"}, nil)
	descBytes    = prometheus.NewDesc("ferry_export_bytes", "Bytes of published archives by status.", []string{"status"}, nil)
	descDuration = prometheus.NewDesc("ferry_export_seconds_total", "Summed run time of finished exports by status.", []string{"status"}, nil)
	descQueue    = prometheus.NewDesc("ferry_queue_depth", "Jobs (exports, imports, verifications) waiting or running.", nil, nil)
	descImports  = prometheus.NewDesc("ferry_imports", "Import jobs by status.", []string{"status"}, nil)
	descImportS  = prometheus.NewDesc("ferry_import_seconds_total", "Summed run time of finished imports by status.", []string{"status"}, nil)
	descVerifies = prometheus.NewDesc("ferry_verifications", "Verify jobs by status (failed: a damaged archive).", []string{"status"}, nil)
	descLastOK   = prometheus.NewDesc("ferry_schedule_last_success_timestamp_seconds", "When each schedule's newest backup completed.", []string{"schedule"}, nil)
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExports
	ch <- descBytes
	ch <- descDuration
	ch <- descQueue
	ch <- descImports
	ch <- descImportS
	ch <- descVerifies
	ch <- descLastOK
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.svc.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descExports, err)
		return
	}
	var queue int64
	for _, sc := range stats.Counts {
		switch sc.Kind {
		case app.KindExport:
			ch <- prometheus.MustNewConstMetric(descExports, prometheus.GaugeValue, float64(sc.Count), string(sc.Status))
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(sc.Bytes), string(sc.Status))
			ch <- prometheus.MustNewConstMetric(descDuration, prometheus.CounterValue, sc.Seconds, string(sc.Status))
		case app.KindImport:
			ch <- prometheus.MustNewConstMetric(descImports, prometheus.GaugeValue, float64(sc.Count), string(sc.Status))
			ch <- prometheus.MustNewConstMetric(descImportS, prometheus.CounterValue, sc.Seconds, string(sc.Status))
		case app.KindVerify:
			ch <- prometheus.MustNewConstMetric(descVerifies, prometheus.GaugeValue, float64(sc.Count), string(sc.Status))
		}
		if sc.Status == app.StatusQueued || sc.Status == app.StatusProcessing {
			queue += sc.Count
		}
	}
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(queue))
	for name, at := range stats.LastSuccess {
		ch <- prometheus.MustNewConstMetric(descLastOK, prometheus.GaugeValue, float64(at.UnixMilli())/1000, name)
	}
}
