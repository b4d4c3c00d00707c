package fixturecheck

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// Recorder is an appservice interested in every room that records the
// event IDs a homeserver sends it: the check that a restored server sends
// appservices only new events, never the restored history.
type Recorder struct {
	// Registration is its registration file, for the homeserver.
	Registration string
	mu           sync.Mutex
	got          []string
}

// NewRecorder starts a recording appservice on 127.0.0.1 (stopped when
// the test ends).
func NewRecorder(t *testing.T) *Recorder {
	t.Helper()
	rec := &Recorder{}
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var txn struct {
			Events []struct {
				EventID string `json:"event_id"`
			} `json:"events"`
		}
		if r.Method == http.MethodPut && json.NewDecoder(r.Body).Decode(&txn) == nil {
			rec.mu.Lock()
			for _, e := range txn.Events {
				rec.got = append(rec.got, e.EventID)
			}
			rec.mu.Unlock()
		}
		w.Write([]byte("{}"))
	}))
	t.Cleanup(as.Close)
	rec.Registration = filepath.Join(t.TempDir(), "recorder.yaml")
	if err := os.WriteFile(rec.Registration, []byte(fmt.Sprintf(`id: recorder
url: %s
as_token: recorder-as-token-0123456789
hs_token: recorder-hs-token-0123456789
sender_localpart: recorder
rate_limited: false
namespaces:
  users: []
  aliases: []
  rooms:
  - exclusive: false
    regex: "!.*"
`, as.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	return rec
}

// Received returns the event IDs sent so far.
func (r *Recorder) Received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// ExpectOnly waits (up to 30 s) for event id and fails t unless it is the
// only event the appservice was sent.
func (r *Recorder) ExpectOnly(t *testing.T, id string) {
	t.Helper()
	for try := 0; try < 300 && !slices.Contains(r.Received(), id); try++ {
		time.Sleep(100 * time.Millisecond)
	}
	got := r.Received()
	if !slices.Contains(got, id) {
		t.Errorf("the appservice did not receive the message sent after the import (%s); it received %v", id, got)
	}
	if len(got) != 1 {
		t.Errorf("the appservice received %d events, want only the new one: %v", len(got), got)
	}
}
