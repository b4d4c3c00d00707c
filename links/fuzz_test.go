package links

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/storage"
)

var fuzzClock = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fuzzTokens are the seeds: valid, expired and hostile tokens.
func fuzzTokens(s *Signer) []string {
	valid, _ := s.Sign(storage.ArchiveKey("full-1"), time.Hour)
	expired, _ := s.Sign(storage.ArchiveKey("full-1"), -time.Hour)
	other, _ := s.Sign("archives/../../etc/passwd", time.Hour)
	raw, _ := base64.RawURLEncoding.DecodeString(valid)
	mutate := func(f func(b []byte) []byte) string {
		return base64.RawURLEncoding.EncodeToString(f(append([]byte(nil), raw...)))
	}
	return []string{
		valid, expired, other, "", "A", "AQ", "!!!!", valid + "=", valid + "A", valid[:len(valid)-1],
		strings.ReplaceAll(strings.ReplaceAll(valid, "-", "+"), "_", "/"),                       // standard alphabet
		mutate(func(b []byte) []byte { b[0] = 2; return b }),                                    // another version
		mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[9:11], 0xffff); return b }), // key length past the end
		mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[9:11], 0); return b }),      // key length zero
		mutate(func(b []byte) []byte { binary.BigEndian.PutUint64(b[1:9], 1<<63); return b }),   // expiry overflow
		mutate(func(b []byte) []byte { return b[:11+sha256.Size] }),                             // mac only
		mutate(func(b []byte) []byte { return append(b[:11], make([]byte, 2*sha256.Size)...) }), // zero mac
		strings.Repeat("A", 1<<16),
	}
}

// FuzzVerify: Verify never panics, accepts only what Sign made with the
// same secret, and what it accepts round-trips.
func FuzzVerify(f *testing.F) {
	s, _ := NewSigner(bytes.Repeat([]byte{7}, 32), func() time.Time { return fuzzClock })
	for _, tok := range fuzzTokens(s) {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, token string) {
		key, exp, err := s.Verify(token)
		if err != nil {
			if err != ErrInvalid && err != ErrExpired {
				t.Fatalf("Verify(%q): unexpected error %v", token, err)
			}
			return
		}
		if key == "" || !exp.After(fuzzClock) {
			t.Fatalf("Verify(%q) accepted key %q expiring %v", token, key, exp)
		}
		// An accepted token is what Sign makes for its key and expiry.
		again, err := s.Sign(key, exp.Sub(fuzzClock))
		got, _ := base64.RawURLEncoding.DecodeString(token)
		want, _ := base64.RawURLEncoding.DecodeString(again)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Verify(%q) accepted a token Sign does not make (%q, %v)", token, again, err)
		}
	})
}

// FuzzDownload: the /download handler, with any path and Range header,
// never panics, answers only with a status it documents, and serves bytes
// only for a valid token.
func FuzzDownload(f *testing.F) {
	store, err := storage.Open(context.Background(), "file://"+f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	data := bytes.Repeat([]byte("ferry archive bytes "), 100)
	if _, err := store.Put(context.Background(), storage.ArchiveKey("full-1"), bytes.NewReader(data)); err != nil {
		f.Fatal(err)
	}
	s, _ := NewSigner(bytes.Repeat([]byte{7}, 32), func() time.Time { return fuzzClock })
	h := &Handler{Store: store, Signer: s}
	ranges := []string{"", "bytes=0-0", "bytes=10-19", "bytes=-5", "bytes=1990-", "bytes=5-1", "bytes=0-0,0-0", "bytes=0-9,20-29",
		"bytes=99999999999999999999-", "bytes=-0", "bytes=", "bytes=0-0," + strings.Repeat("0-0,", 1000) + "0-0", "items=0-1", "bytes=1-2-3"}
	for i, tok := range fuzzTokens(s) {
		f.Add(Path+tok+"/full-1.ferry", ranges[i%len(ranges)])
	}
	valid, _ := s.Sign(storage.ArchiveKey("full-1"), time.Hour)
	for _, r := range ranges {
		f.Add(Path+valid+"/full-1.ferry", r)
	}
	f.Fuzz(func(t *testing.T, path, rng string) {
		if !strings.HasPrefix(path, Path) {
			path = Path + path
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = path
		req.Header.Set("Range", rng)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusPartialContent, http.StatusRequestedRangeNotSatisfiable:
			token, _, _ := strings.Cut(strings.TrimPrefix(path, Path), "/")
			if _, _, err := s.Verify(token); err != nil {
				t.Fatalf("%d for an invalid token %q", rec.Code, token)
			}
			if rec.Code == http.StatusOK && !bytes.Equal(rec.Body.Bytes(), data) {
				t.Fatalf("200 with %d bytes, not the archive", rec.Body.Len())
			}
			if rec.Code == http.StatusPartialContent && strings.HasPrefix(rec.Header().Get("Content-Type"), "multipart/") {
				t.Fatalf("a multipart answer to Range %q", rng)
			}
		case http.StatusForbidden, http.StatusNotFound:
		default:
			t.Fatalf("status %d for %q Range %q", rec.Code, path, rng)
		}
	})
}
