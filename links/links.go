// Package links makes download links that expire and cannot be forged, for
// stores that cannot presign URLs themselves (file://, the embedded
// default): Ferry serves /download/<token>/<file name> with HMAC-SHA256
// signed, single-object tokens, Range requests of one range (resumable and
// progressive downloads) and an audit callback for every download.
package links

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// Errors of Verify.
var (
	ErrInvalid = errors.New("link is not valid: it was changed or was not made by this Ferry")
	ErrExpired = errors.New("link has expired: ask for a new one")
)

// Signer signs and checks download tokens.
type Signer struct {
	key []byte
	now func() time.Time
}

// MinSecret is the shortest accepted secret.
const MinSecret = 32

// NewSigner makes a signer; now may be nil (time.Now).
func NewSigner(secret []byte, now func() time.Time) (*Signer, error) {
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("link secret is %d bytes; it needs at least %d", len(secret), MinSecret)
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: append([]byte(nil), secret...), now: now}, nil
}

// LoadOrCreateSecret reads the link secret at path, creating a random one
// (mode 0600) when the file does not exist.
func LoadOrCreateSecret(path string) ([]byte, error) {
	secret, err := store.LoadOrCreateKey(path)
	if err != nil {
		return nil, fmt.Errorf("link secret: %w", err)
	}
	return secret, nil
}

// Token layout (base64url): version(1) expiry unix seconds(8) key length(2) key mac(32).
const tokenVersion = 1

// Sign makes a token for object key, valid until now+ttl.
func (s *Signer) Sign(key string, ttl time.Duration) (string, error) {
	if key == "" || len(key) > 0xffff {
		return "", fmt.Errorf("cannot sign a link for a key of %d bytes", len(key))
	}
	exp := s.now().Add(ttl).Unix()
	msg := make([]byte, 0, 11+len(key)+sha256.Size)
	msg = append(msg, tokenVersion)
	msg = binary.BigEndian.AppendUint64(msg, uint64(exp))
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(key)))
	msg = append(msg, key...)
	m := hmac.New(sha256.New, s.key)
	m.Write(msg)
	return base64.RawURLEncoding.EncodeToString(m.Sum(msg)), nil
}

// Verify checks a token (signature first, in constant time) and returns
// the object key it grants and its expiry.
func (s *Signer) Verify(token string) (string, time.Time, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < 11+sha256.Size || raw[0] != tokenVersion {
		return "", time.Time{}, ErrInvalid
	}
	msg, mac := raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	m := hmac.New(sha256.New, s.key)
	m.Write(msg)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return "", time.Time{}, ErrInvalid
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(msg[1:9])), 0)
	n := int(binary.BigEndian.Uint16(msg[9:11]))
	if len(msg) != 11+n {
		return "", time.Time{}, ErrInvalid
	}
	if !s.now().Before(exp) {
		return "", exp, ErrExpired
	}
	return string(msg[11:]), exp, nil
}

// Download is what the audit callback receives for each request.
type Download struct {
	Key        string
	RemoteAddr string
	Range      string // as asked for, cut to maxRangeAudit bytes
	Status     int
	Err        error
	At         time.Time
}

// Handler serves GET and HEAD /download/<token>[/<file name>].
type Handler struct {
	Store  *storage.Store
	Signer *Signer
	// Audit, if set, is called for every request, allowed or refused.
	Audit func(Download)
}

// Path is where links point (mount the handler there).
const Path = "/download/"

// URL makes a link for key under baseURL (e.g. https://ferry.example.org).
func (h *Handler) URL(baseURL, key string, ttl time.Duration) (string, error) {
	token, err := h.Signer.Sign(key, ttl)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(baseURL, "/") + Path + token + "/" + path.Base(key), nil
}

// Link returns a download link for key that expires after ttl: the
// bucket's own presigned URL where it has one (S3), else a signed
// /download link under baseURL (Ferry serves it). It fails when neither
// is possible (no presigning and no baseURL).
func (h *Handler) Link(ctx context.Context, baseURL, key string, ttl time.Duration) (string, time.Time, error) {
	exp := time.Now().Add(ttl).UTC().Truncate(time.Second)
	if u, err := h.Store.SignedURL(ctx, key, ttl); err == nil {
		return u, exp, nil
	}
	if baseURL == "" {
		return "", time.Time{}, errors.New("no download link possible: the bucket cannot presign URLs and api.public_url is not set")
	}
	u, err := h.URL(baseURL, key, ttl)
	return u, exp, err
}

// errArchiveGone is the audit's reason for a link whose archive was
// deleted.
var errArchiveGone = errors.New("the archive no longer exists")

// maxRangeAudit is how much of a Range header the audit record keeps.
const maxRangeAudit = 200

// ServeHTTP serves one archive. A Range of one range is answered with 206
// and that range; a Range of several ranges is ignored (RFC 9110 lets a
// server do so) and answered with the whole archive, 200: net/http would
// otherwise serve every part of a multipart answer, and 200,000 parts of
// one byte cost seconds of CPU for one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Download{RemoteAddr: r.RemoteAddr, Range: r.Header.Get("Range"), At: time.Now()}
	if len(rec.Range) > maxRangeAudit {
		rec.Range = rec.Range[:maxRangeAudit] + "…"
	}
	defer func() {
		if h.Audit != nil {
			h.Audit(rec)
		}
	}()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rec.Status = http.StatusMethodNotAllowed
		http.Error(w, "only GET and HEAD", rec.Status)
		return
	}
	token, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, Path), "/")
	key, _, err := h.Signer.Verify(token)
	if err != nil {
		rec.Status, rec.Err = http.StatusForbidden, err
		http.Error(w, "403 forbidden: "+err.Error(), rec.Status)
		return
	}
	rec.Key = key
	obj, err := h.Store.Stat(r.Context(), key)
	if errors.Is(err, storage.ErrNotFound) {
		// The audit says what happened, not where the bucket keeps its
		// files (the driver's error names a server path).
		rec.Status, rec.Err = http.StatusNotFound, errArchiveGone
		http.Error(w, "404 the archive behind this link no longer exists (deleted by retention?)", rec.Status)
		return
	}
	if err != nil {
		rec.Status, rec.Err = http.StatusServiceUnavailable, err
		http.Error(w, "503 the archive storage cannot be reached now; try again later", rec.Status)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", path.Base(key)))
	w.Header().Set("Cache-Control", "private, no-store")
	if strings.Contains(r.Header.Get("Range"), ",") {
		r = r.Clone(r.Context())
		r.Header.Del("Range")
	}
	rs := &objectReadSeeker{ctx: r.Context(), store: h.Store, key: key, size: obj.Size}
	defer rs.Close()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	http.ServeContent(sw, r, path.Base(key), obj.ModTime, rs)
	rec.Status = sw.status
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// objectReadSeeker reads an object with range requests, opened lazily at
// the current offset, so http.ServeContent can serve Range requests
// without reading from the start.
type objectReadSeeker struct {
	ctx   context.Context
	store *storage.Store
	key   string
	size  int64
	off   int64
	rc    io.ReadCloser
}

func (o *objectReadSeeker) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	if o.rc == nil {
		rc, err := o.store.Range(o.ctx, o.key, o.off, -1)
		if err != nil {
			return 0, err
		}
		o.rc = rc
	}
	n, err := o.rc.Read(p)
	o.off += int64(n)
	return n, err
}

func (o *objectReadSeeker) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.off + offset
	case io.SeekEnd:
		abs = o.size + offset
	}
	if abs < 0 {
		return 0, errors.New("seek before the start")
	}
	if abs != o.off && o.rc != nil {
		o.rc.Close()
		o.rc = nil
	}
	o.off = abs
	return abs, nil
}

func (o *objectReadSeeker) Close() error {
	if o.rc != nil {
		return o.rc.Close()
	}
	return nil
}
