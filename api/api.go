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
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
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

	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/ratelimit"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
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

// Server serves the API.
type Server struct {
	Jobs   *jobs.Service
	Tokens []Token
	// Source is the configured source name exports read from.
	Source string
	// Links serves /download for stores without presigned URLs; BaseURL is
	// Ferry's public URL for links, LinkTTL their lifetime.
	Links   *links.Handler
	BaseURL string
	LinkTTL time.Duration
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
	if s.LinkTTL <= 0 {
		s.LinkTTL = 24 * time.Hour
	}
	s.limiter = ratelimit.New(s.Rate, s.Burst)
	s.links = ratelimit.New(linkRate, linkBurst)
	s.clients.Trusted, _ = ratelimit.ParsePrefixes(s.TrustedProxies) // config.Validate reports bad entries
	st := s.Jobs.Store
	s.refusals = &ratelimit.Tally{Window: s.RefusalWindow, Report: func(key string, n int, from, to time.Time) {
		action, addr, _ := strings.Cut(key, " ")
		st.Audit(context.Background(), store.AuditEntry{At: from, Actor: "link", Via: action + " " + addr, Action: action,
			Outcome: "refused (429)", Detail: fmt.Sprintf("%d requests refused by the rate limit from %s to %s", n,
				from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))})
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&storeCollector{s: s.Jobs.Store}, prometheus.NewGoCollector())
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
				st.Audit(context.Background(), store.AuditEntry{At: d.At, Actor: "link", Via: "download " + d.RemoteAddr,
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
			s.Jobs.Store.Audit(r.Context(), store.AuditEntry{Actor: "unknown token", Via: "api " + addr, Action: r.Method + " " + r.URL.Path, Outcome: "refused", Detail: "unknown token"})
			writeError(w, http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "this API token is not valid")
			return
		}
		if !s.limiter.Allow("token:" + c.name) {
			tooMany(w)
			return
		}
		if need == RoleAdmin && c.role != RoleAdmin {
			s.Jobs.Store.Audit(r.Context(), store.AuditEntry{Actor: "token:" + c.name, Via: "api", Action: r.Method + " " + r.URL.Path, Outcome: "refused", Detail: "role " + c.role})
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
	if err := s.Jobs.Store.DB.PingContext(ctx); err != nil {
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
	id := newID()
	if req.Name == "" {
		req.Name = "export-" + time.Now().UTC().Format("20060102-150405") + "-" + id[:6]
	}
	jr, err := s.toJob(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
		return
	}
	e, err := s.Jobs.Submit(r.Context(), id, jr, "token:"+c.name, "api")
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, s.view(r.Context(), e, c))
}

// toJob turns a request into the job's: its options become the
// exporter's Selection, validated there (include_media false is media
// none; true leaves the default to the selection).
func (s *Server) toJob(req ExportRequest) (jobs.Request, error) {
	o := req.Options
	sel := exporter.Selection{Type: req.Type, Rooms: o.Rooms, Users: o.Users, Media: o.Media}
	if o.DateRange != nil {
		sel.Since, sel.Until = o.DateRange.Start.Time, o.DateRange.End.Time
	}
	if sel.Media == "" && o.IncludeMedia != nil && !*o.IncludeMedia {
		sel.Media = source.MediaNone
	}
	jr := jobs.Request{Source: s.Source, Selection: sel, Recipients: req.Recipients, Plaintext: req.Plaintext, Name: req.Name, Verify: req.Verify,
		Options: source.Options{AccessTokens: o.AccessTokens, OneTimeKeys: o.OneTimeKeys}}
	return jr, jr.Validate()
}

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ExportView is what the API returns for an export.
type ExportView struct {
	ExportID            string         `json:"export_id"`
	Kind                string         `json:"kind"` // export | import | verify
	Result              string         `json:"result,omitempty"`
	Status              string         `json:"status"`
	Name                string         `json:"name"`
	Progress            float64        `json:"progress"` // percent
	Detail              *jobs.Progress `json:"detail,omitempty"`
	EstimatedCompletion *time.Time     `json:"estimated_completion,omitempty"`
	Size                int64          `json:"size,omitempty"`
	SHA256              string         `json:"checksum,omitempty"`
	Link                string         `json:"link,omitempty"`
	LinkExpires         *time.Time     `json:"link_expires,omitempty"`
	Error               string         `json:"error,omitempty"`
	RequestedBy         string         `json:"requested_by"`
	CreatedAt           time.Time      `json:"created_at"`
	FinishedAt          *time.Time     `json:"finished_at,omitempty"`
}

// view is what c sees of e: a completed export's download link only if c
// is an admin (a link opens the archive, a plaintext one to anybody).
func (s *Server) view(ctx context.Context, e *store.Export, c caller) ExportView {
	v := ExportView{ExportID: e.ID, Kind: e.Kind, Status: e.Status, Name: e.Name, Size: e.Size, SHA256: e.SHA256, Error: e.Error,
		RequestedBy: e.RequestedBy, CreatedAt: e.CreatedAt}
	if e.Progress != "" {
		var p jobs.Progress
		if json.Unmarshal([]byte(e.Progress), &p) == nil {
			v.Detail, v.Progress, v.Result = &p, p.Percent, p.Result
			if d, err := time.ParseDuration(p.ETA); err == nil && e.Status == store.StatusProcessing {
				t := time.Now().Add(d).UTC().Truncate(time.Second)
				v.EstimatedCompletion = &t
			}
		}
	}
	if !e.FinishedAt.IsZero() {
		t := e.FinishedAt
		v.FinishedAt = &t
	}
	if e.Status == store.StatusCompleted {
		v.Progress = 100
	}
	if e.Status == store.StatusCompleted && e.Kind == store.KindExport && c.role == RoleAdmin && s.Links != nil {
		if u, exp, err := s.Links.Link(ctx, s.BaseURL, storage.ArchiveKey(e.Name), s.LinkTTL); err == nil {
			v.Link, v.LinkExpires = u, &exp
		}
	}
	return v
}

// link mints a fresh download link for a completed export (admin only).
func (s *Server) link(w http.ResponseWriter, r *http.Request, c caller) {
	e, ok := s.lookup(w, r, store.KindExport)
	if !ok {
		return
	}
	if e.Status != store.StatusCompleted {
		writeError(w, http.StatusConflict, "M_CONFLICT", fmt.Sprintf("export %s is %s: only a completed export has an archive to link to", e.ID, e.Status))
		return
	}
	if s.Links == nil {
		writeError(w, http.StatusNotImplemented, "M_UNRECOGNIZED", "this Ferry serves no download links")
		return
	}
	u, exp, err := s.Links.Link(r.Context(), s.BaseURL, storage.ArchiveKey(e.Name), s.LinkTTL)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
		return
	}
	s.Jobs.Store.Audit(r.Context(), store.AuditEntry{Actor: "token:" + c.name, Via: "api", Action: "link.create", Target: e.ID, Outcome: "ok",
		Detail: "expires " + exp.Format(time.RFC3339)})
	writeJSON(w, http.StatusOK, map[string]any{"export_id": e.ID, "link": u, "link_expires": exp})
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, c caller) {
	s.listKind(w, r, c, store.KindExport, "exports")
}

// listKind answers with the newest jobs of kind ("" for all) under key,
// at most ?limit= of them (default 50).
func (s *Server) listKind(w http.ResponseWriter, r *http.Request, c caller, kind, key string) {
	limit := 50
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "limit must be a number from 1 to 1000")
			return
		}
		limit = n
	}
	list, err := s.Jobs.Store.ListJobs(r.Context(), kind, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "could not read the "+key)
		return
	}
	out := make([]ExportView, 0, len(list))
	for _, e := range list {
		out = append(out, s.view(r.Context(), e, c))
	}
	writeJSON(w, http.StatusOK, map[string]any{key: out})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, c caller) {
	if e, ok := s.lookup(w, r, store.KindExport); ok {
		writeJSON(w, http.StatusOK, s.view(r.Context(), e, c))
	}
}

// lookup reads the job of the request's {id} path value, of kind ("" for
// any), or answers 404 or 500 and returns false.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request, kind string) (*store.Export, bool) {
	id := r.PathValue("id")
	e, err := s.Jobs.Store.GetExport(r.Context(), id)
	if err == nil && kind != "" && e.Kind != kind {
		err = store.ErrNotFound // e.g. an import's ID under /exports, whose DELETE would remove the archive it read
	}
	what := map[string]string{"": "job", store.KindExport: "export"}[kind]
	if errors.Is(err, store.ErrNotFound) {
		hint := ""
		if kind == store.KindExport {
			hint = " (imports and verifications are under /api/v1/jobs)"
		}
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "no "+what+" "+id+hint)
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "could not read the "+what)
		return nil, false
	}
	return e, true
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request, c caller) {
	ctx := r.Context()
	id := r.PathValue("id")
	e, ok := s.lookup(w, r, store.KindExport)
	if !ok {
		return
	}
	switch e.Status {
	case store.StatusQueued, store.StatusProcessing:
		if err := s.Jobs.Cancel(ctx, id, "token:"+c.name, "api"); err != nil {
			writeError(w, http.StatusConflict, "M_CONFLICT", err.Error())
			return
		}
		e, _ = s.Jobs.Store.GetExport(ctx, id)
		writeJSON(w, http.StatusOK, s.view(ctx, e, c))
	case store.StatusCompleted:
		key := storage.ArchiveKey(e.Name)
		if err := s.Jobs.Storage.Delete(ctx, key); err != nil {
			writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "could not delete the archive: "+err.Error())
			return
		}
		s.Jobs.Storage.Delete(ctx, key+storage.KeyExt)
		s.Jobs.Store.Finish(ctx, id, store.StatusDeleted, 0, e.SHA256, "")
		s.Jobs.Store.Audit(ctx, store.AuditEntry{Actor: "token:" + c.name, Via: "api", Action: "export.delete", Target: id, Outcome: "ok", Detail: key})
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusConflict, "M_CONFLICT", fmt.Sprintf("export %s has ended (%s); there is nothing to cancel or delete", id, e.Status))
	}
}

// storeCollector reports export metrics from the state database, so that
// they are right across restarts and several instances.
type storeCollector struct{ s *store.Store }

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

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExports
	ch <- descBytes
	ch <- descDuration
	ch <- descQueue
	ch <- descImports
	ch <- descImportS
	ch <- descVerifies
	ch <- descLastOK
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.s.CountByStatus(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descExports, err)
		return
	}
	var queue int64
	for _, sc := range counts {
		switch sc.Kind {
		case store.KindExport:
			ch <- prometheus.MustNewConstMetric(descExports, prometheus.GaugeValue, float64(sc.Count), sc.Status)
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(sc.Bytes), sc.Status)
			ch <- prometheus.MustNewConstMetric(descDuration, prometheus.CounterValue, sc.Seconds, sc.Status)
		case store.KindImport:
			ch <- prometheus.MustNewConstMetric(descImports, prometheus.GaugeValue, float64(sc.Count), sc.Status)
			ch <- prometheus.MustNewConstMetric(descImportS, prometheus.CounterValue, sc.Seconds, sc.Status)
		case store.KindVerify:
			ch <- prometheus.MustNewConstMetric(descVerifies, prometheus.GaugeValue, float64(sc.Count), sc.Status)
		}
		if sc.Status == store.StatusQueued || sc.Status == store.StatusProcessing {
			queue += sc.Count
		}
	}
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(queue))
	last, err := c.s.LastScheduledSuccess(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descLastOK, err)
		return
	}
	for name, at := range last {
		ch <- prometheus.MustNewConstMetric(descLastOK, prometheus.GaugeValue, float64(at.UnixMilli())/1000, name)
	}
}
