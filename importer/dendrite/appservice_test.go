package dendrite_test

import (
	"context"
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

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/clientview"
	"github.com/ferry-matrix/ferry/internal/seed"
	"github.com/ferry-matrix/ferry/internal/testenv"
)

// An appservice (a bridge) registered with the target is not sent the
// imported history: it saw those events when they happened on the source,
// and a bridge would post them to its remote network a second time. Nor
// does a stopped appservice hold the import up. After the import, Dendrite
// sends it new events as usual.
func TestImportSendsNoHistoryToAppservices(t *testing.T) {
	const name = "appservice.ferry.test"
	dir, key := seededArchive(t, name)

	var mu sync.Mutex
	var got []string // event IDs the appservice received
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var txn struct {
			Events []struct {
				EventID string `json:"event_id"`
			} `json:"events"`
		}
		if r.Method == http.MethodPut && json.NewDecoder(r.Body).Decode(&txn) == nil {
			mu.Lock()
			for _, e := range txn.Events {
				got = append(got, e.EventID)
			}
			mu.Unlock()
		}
		w.Write([]byte("{}"))
	}))
	defer as.Close()
	reg := filepath.Join(t.TempDir(), "recorder.yaml")
	if err := os.WriteFile(reg, []byte(fmt.Sprintf(`id: recorder
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
	to := testenv.NewDendrite(t, name)
	to.AddAppservice(t, reg)
	to.Start(t) // creates the appservice's JetStream consumer, on disk, and its sender account
	to.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The appservice's sender account makes the target non-empty.
	if _, err := importInto(ctx, t, to, openArchive(t, dir, key), importer.Options{Migration: true, AllowNonEmpty: true}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	during := len(got)
	mu.Unlock()
	if during > 0 {
		t.Errorf("the appservice was sent %d imported events during the import", during)
	}

	to.Start(t)
	c := &clientview.Client{URL: to.URL, ServerName: name}
	tok, err := c.Login(ctx, "alice", seed.Password("alice"))
	if err != nil {
		t.Fatal(err)
	}
	rooms, err := c.SyncTimelineIDs(ctx, tok)
	if err != nil || len(rooms) == 0 {
		t.Fatalf("alice's rooms after the import: %v %v", rooms, err)
	}
	var room string
	for r := range rooms {
		room = r
		break
	}
	id, err := c.Send(ctx, tok, room, "after-import", "sent after the import")
	if err != nil {
		t.Fatal(err)
	}
	for try := 0; try < 300; try++ {
		mu.Lock()
		done := slices.Contains(got, id)
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(got, id) {
		t.Errorf("the appservice did not receive the message sent after the import (%s); it received %v", id, got)
	}
	if len(got) != 1 {
		t.Errorf("the appservice received %d events, want only the new one: %v", len(got), got)
	}
}
