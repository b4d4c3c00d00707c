package links

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/storage"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func setup(t *testing.T) (*Handler, *httptest.Server, *clock, *[]Download, []byte) {
	t.Helper()
	store, err := storage.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	data := bytes.Repeat([]byte("ferry archive bytes "), 50_000)
	if _, err := store.Put(context.Background(), storage.ArchiveKey("full-1"), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	signer, err := NewSigner(bytes.Repeat([]byte{7}, 32), c.now)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var audit []Download
	h := &Handler{Store: store, Signer: signer, Audit: func(d Download) { mu.Lock(); audit = append(audit, d); mu.Unlock() }}
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	srv := httptest.NewServer(mux) // binds 127.0.0.1
	t.Cleanup(srv.Close)
	return h, srv, c, &audit, data
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

func TestDownloadLinks(t *testing.T) {
	h, srv, c, audit, data := setup(t)
	link, err := h.URL(srv.URL, storage.ArchiveKey("full-1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, link, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, data) || !strings.Contains(resp.Header.Get("Content-Disposition"), "full-1.ferry") {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(body))
	}
	// Resumable: a Range request returns exactly that range.
	resp, body = get(t, link, map[string]string{"Range": "bytes=100000-100019"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[100000:100020]) {
		t.Fatalf("range: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, link, map[string]string{"Range": "bytes=999990-"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[999990:]) {
		t.Fatalf("suffix range: %d %d bytes", resp.StatusCode, len(body))
	}

	// Tampered: change one character of the token.
	i := strings.Index(link, Path) + len(Path) + 5
	swap := "A"
	if link[i] == 'A' {
		swap = "B"
	}
	bad := link[:i] + swap + link[i+1:]
	resp, body = get(t, bad, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "not valid") {
		t.Fatalf("tampered link: %d %s", resp.StatusCode, body)
	}
	// A token for one archive does not open another.
	other, _ := h.Signer.Sign(storage.ArchiveKey("other"), time.Hour)
	resp, _ = get(t, srv.URL+Path+other+"/full-1.ferry", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a link to a missing archive: %d", resp.StatusCode)
	}
	// Its audit record says why, and names no path of the server's.
	gone := (*audit)[len(*audit)-1]
	if gone.Status != http.StatusNotFound || gone.Err == nil || strings.Contains(gone.Err.Error(), "/") {
		t.Fatalf("audit of a missing archive: %d %v", gone.Status, gone.Err)
	}
	// Expired.
	c.t = c.t.Add(61 * time.Minute)
	resp, body = get(t, link, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "expired") {
		t.Fatalf("expired link: %d %s", resp.StatusCode, body)
	}
	statuses := []int{}
	for _, d := range *audit {
		statuses = append(statuses, d.Status)
	}
	if len(statuses) != 6 || statuses[0] != 200 || statuses[1] != 206 || statuses[3] != 403 || statuses[5] != 403 {
		t.Fatalf("audit %v", statuses)
	}
}

func TestSignerRefusesGarbage(t *testing.T) {
	s, _ := NewSigner(bytes.Repeat([]byte{1}, 32), nil)
	for _, tok := range []string{"", "!!!", "AQ", strings.Repeat("A", 200)} {
		if _, _, err := s.Verify(tok); err != ErrInvalid {
			t.Errorf("%q: %v", tok, err)
		}
	}
	other, _ := NewSigner(bytes.Repeat([]byte{2}, 32), nil)
	tok, _ := other.Sign("archives/x.ferry", time.Hour)
	if _, _, err := s.Verify(tok); err != ErrInvalid {
		t.Errorf("another secret's token: %v", err)
	}
	if _, err := NewSigner([]byte("short"), nil); err == nil {
		t.Error("short secret accepted")
	}
}

func TestSecretFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "link.secret")
	a, err := LoadOrCreateSecret(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateSecret(p)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatal("secret not kept")
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %v", st.Mode())
	}
}

// A Range of many parts is answered with the whole archive (200), not a
// multipart answer of every part; one range is still a 206.
func TestManyRangesServeTheWholeArchive(t *testing.T) {
	h, srv, _, audit, data := setup(t)
	link, _ := h.URL(srv.URL, storage.ArchiveKey("full-1"), time.Hour)
	many := "bytes=" + strings.Repeat("0-0,", 20_000) + "0-0"
	for _, rng := range []string{many, "bytes=0-9,20-29"} {
		resp, body := get(t, link, map[string]string{"Range": rng})
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
			t.Errorf("Range of %d bytes: %d, %d bytes (%s), want 200 and the whole archive", len(rng), resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
		}
	}
	resp, body := get(t, link, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[10:20]) {
		t.Errorf("one range: %d %q", resp.StatusCode, body)
	}
	for _, d := range *audit {
		if len(d.Range) > maxRangeAudit+len("…") {
			t.Errorf("the audit keeps a Range of %d bytes", len(d.Range))
		}
	}
}

// BenchmarkManyRanges is one request whose Range has 200,000 parts
// (before the fix: 12.6 s of CPU, a multipart answer of every part).
func BenchmarkManyRanges(b *testing.B) {
	store, err := storage.Open(context.Background(), "file://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	store.Put(context.Background(), storage.ArchiveKey("full-1"), bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20)))
	signer, _ := NewSigner(bytes.Repeat([]byte{7}, 32), nil)
	h := &Handler{Store: store, Signer: signer}
	token, _ := signer.Sign(storage.ArchiveKey("full-1"), time.Hour)
	rng := "bytes=" + strings.Repeat("0-0,", 199_999) + "0-0"
	for b.Loop() {
		req := httptest.NewRequest("GET", Path+token+"/full-1.ferry", nil)
		req.Header.Set("Range", rng)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
