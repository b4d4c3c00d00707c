package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sources"
)

// fakeService is an in-memory Service: the command handlers' tests run
// against it, and a stub homeserver, in milliseconds.
type fakeService struct {
	mu       sync.Mutex
	caps     source.Capabilities
	jobs     map[string]*app.View
	submits  []app.ExportRequest
	calls    []string
	audit    []app.AuditEntry
	damaged  bool
	contents bool
	preview  func(app.PreviewRequest) (*app.Preview, error)
}

func newFake() *fakeService {
	caps, _ := sources.Capabilities(sources.Dendrite)
	return &fakeService{caps: caps, jobs: map[string]*app.View{}}
}

func (f *fakeService) add(v *app.View) {
	f.mu.Lock()
	f.jobs[v.ID] = v
	f.mu.Unlock()
}

func (f *fakeService) called() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

func (f *fakeService) Submit(_ context.Context, r app.ExportRequest) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.jobs[r.ID]; ok {
		return v, nil
	}
	if err := r.Selection.Validate(); err != nil {
		return nil, err
	}
	if err := r.Selection.Check(f.caps); err != nil {
		return nil, err
	}
	f.submits = append(f.submits, r)
	f.calls = append(f.calls, "submit "+r.ID)
	v := &app.View{ID: r.ID, Kind: app.KindExport, Status: app.StatusQueued, Type: exporter.ArchiveType(r.Selection, ""), Name: r.Name,
		RequestedBy: r.By.Name, Via: r.By.Via, CreatedAt: time.Now()}
	f.jobs[r.ID] = v
	return v, nil
}

func (f *fakeService) PersonalExport(_ context.Context, id, user string) (*app.Personal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.jobs[id]; ok {
		return nil, app.ErrDuplicate
	}
	f.calls = append(f.calls, "personal "+user)
	v := &app.View{ID: id, Kind: app.KindExport, Status: app.StatusQueued, Type: exporter.TypeUser, RequestedBy: user, Via: "mydata"}
	f.jobs[id] = v
	return &app.Personal{View: v, RevealURL: "https://ferry.test/reveal/token"}, nil
}

func (f *fakeService) Get(_ context.Context, id string) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.jobs[id]; ok {
		c := *v
		return &c, nil
	}
	return nil, app.ErrNotFound
}

func (f *fakeService) List(_ context.Context, kind app.Kind, limit int) ([]*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*app.View
	for _, v := range f.jobs {
		if v.Kind == kind && len(out) < limit {
			out = append(out, v)
		}
	}
	return out, nil
}

func (f *fakeService) Cancel(_ context.Context, id string, by app.Actor) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.jobs[id]
	if !v.Running() {
		return nil, fmt.Errorf("export %s has already ended (%s): %w", id, v.Status, app.ErrConflict)
	}
	f.calls = append(f.calls, "cancel "+id+" by "+by.Name)
	v.Status = app.StatusCancelled
	return v, nil
}

func (f *fakeService) Delete(_ context.Context, id string, by app.Actor) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "delete "+id+" by "+by.Name)
	f.jobs[id].Status = app.StatusDeleted
	return f.jobs[id], nil
}

func (f *fakeService) CheckStored(_ context.Context, id string, by app.Actor) (*app.StoredArchive, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "check "+id)
	if f.damaged {
		return nil, fmt.Errorf("archives/%s.ferry is %w: it is gone from storage", id, app.ErrDamaged)
	}
	return &app.StoredArchive{Key: "archives/" + id + ".ferry", Size: 1234, SHA256: "ab12"}, nil
}

func (f *fakeService) ChecksContents() bool { return f.contents }

func (f *fakeService) Verify(_ context.Context, id, export string, _ app.Actor) (*app.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "verify "+export)
	v := &app.View{ID: id, Kind: app.KindVerify, Status: app.StatusCompleted, Progress: app.Progress{Result: "every record checked"}}
	f.jobs[id] = v
	return v, nil
}

func (f *fakeService) Preview(_ context.Context, r app.PreviewRequest) (*app.Preview, error) {
	f.mu.Lock()
	f.calls = append(f.calls, "preview "+r.Export+r.Location)
	f.mu.Unlock()
	return f.preview(r)
}

func (f *fakeService) AddSchedule(_ context.Context, r app.ScheduleRequest) (app.Schedule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "schedule "+r.Name)
	return app.Schedule{Name: r.Name, Cron: r.Cron, Keep: r.Keep, MaxAge: r.MaxAge, CreatedBy: r.By.Name}, nil
}

func (f *fakeService) RemoveSchedule(context.Context, string, app.Actor) error { return nil }

func (f *fakeService) Schedules(context.Context) ([]app.ScheduleView, error) { return nil, nil }

func (f *fakeService) DownloadLinks(_ context.Context, v *app.View) (*app.Links, error) {
	return &app.Links{Archive: "https://ferry.test/download/a", Key: "https://ferry.test/download/k", Expires: time.Unix(2e9, 0).UTC()}, nil
}

func (f *fakeService) SaveFollow(context.Context, string, string) error { return nil }

func (f *fakeService) Follows(context.Context) (map[string]string, error) { return nil, nil }

func (f *fakeService) Audit(_ context.Context, e app.AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeService) IssueLogin(_ context.Context, user, role string, by app.Actor) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "login "+user+" "+role+" by "+by.Name)
	return "https://ferry.test/ui/login/TOKEN-" + role, nil
}

// Test identities.
const (
	testAdmin     = "@admin:bot.test"
	testAdminRoom = "!admins:bot.test"
	testUser      = "@alice:bot.test"
	testAgeKey    = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
)

// botRig is a Bot on a fake service, whose homeserver is a stub that
// records every message the bot sends.
type botRig struct {
	b    *Bot
	svc  *fakeService
	mu   sync.Mutex
	sent []sentMessage
	n    int
	// members are rooms' joined and invited members (user: membership);
	// a room not here holds testUser and the bot.
	members map[string]map[string]string
	// failSend: rooms where sending fails.
	failSend map[string]bool
	dms      int // direct chats created
}

// roomMembers are a room's members (the stub's answer).
func (r *botRig) roomMembers(room string) map[string]string {
	if m, ok := r.members[room]; ok {
		return m
	}
	return map[string]string{testUser: "join", "@ferry:bot.test": "join"}
}

type sentMessage struct {
	room string
	body string
}

func newRig(t *testing.T, svc *fakeService) *botRig {
	t.Helper()
	r := &botRig{svc: svc}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.Contains(req.URL.Path, "/send/"):
			var c struct {
				Body string `json:"body"`
			}
			data, _ := io.ReadAll(req.Body)
			json.Unmarshal(data, &c)
			parts := strings.Split(req.URL.Path, "/")
			r.mu.Lock()
			if r.failSend[parts[len(parts)-4]] {
				r.mu.Unlock()
				w.WriteHeader(http.StatusForbidden)
				w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"not in the room"}`))
				return
			}
			r.n++
			r.sent = append(r.sent, sentMessage{room: parts[len(parts)-4], body: c.Body})
			fmt.Fprintf(w, `{"event_id":"$sent%d"}`, r.n)
			r.mu.Unlock()
		case strings.HasSuffix(req.URL.Path, "/joined_members"):
			parts := strings.Split(req.URL.Path, "/")
			r.mu.Lock()
			joined := map[string]any{}
			for u, m := range r.roomMembers(parts[len(parts)-2]) {
				if m == "join" {
					joined[u] = map[string]any{}
				}
			}
			r.mu.Unlock()
			json.NewEncoder(w).Encode(map[string]any{"joined": joined})
		case strings.HasSuffix(req.URL.Path, "/members"):
			parts := strings.Split(req.URL.Path, "/")
			r.mu.Lock()
			var chunk []map[string]any
			for u, m := range r.roomMembers(parts[len(parts)-2]) {
				chunk = append(chunk, map[string]any{"type": "m.room.member", "state_key": u, "sender": u, "event_id": "$m" + u,
					"room_id": parts[len(parts)-2], "content": map[string]any{"membership": m}})
			}
			r.mu.Unlock()
			json.NewEncoder(w).Encode(map[string]any{"chunk": chunk})
		case strings.HasSuffix(req.URL.Path, "/createRoom"):
			var c struct {
				Invite []string `json:"invite"`
			}
			data, _ := io.ReadAll(req.Body)
			json.Unmarshal(data, &c)
			r.mu.Lock()
			r.dms++
			room := fmt.Sprintf("!newdm%d:bot.test", r.dms)
			if r.members == nil {
				r.members = map[string]map[string]string{}
			}
			r.members[room] = map[string]string{"@ferry:bot.test": "join"}
			for _, u := range c.Invite {
				r.members[room][u] = "invite"
			}
			r.mu.Unlock()
			fmt.Fprintf(w, `{"room_id":%q}`, room)
		default:
			w.Write([]byte(`{}`))
		}
	}))
	t.Cleanup(hs.Close)
	cfg := &config.Config{}
	cfg.Homeserver.Domain, cfg.Homeserver.URL, cfg.Homeserver.Implementation = "bot.test", hs.URL, sources.Dendrite
	cfg.Appservice.ID, cfg.Appservice.BotLocalpart, cfg.Appservice.Listen = "ferry", "ferry", "127.0.0.1:1"
	cfg.Admins.Users, cfg.Admins.Rooms = []string{testAdmin}, []string{testAdminRoom}
	cfg.Encryption.AdminRecipients = map[string][]string{testAdmin: {testAgeKey}}
	cfg.Limits.CommandsPerMinute = 1000
	b, err := New(cfg, svc, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	b.PollInterval, b.EditInterval = 10*time.Millisecond, 10*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	b.runCtx, b.started = ctx, time.Now().Add(-time.Minute)
	t.Cleanup(func() { cancel(); b.tracked.Wait() })
	r.b = b
	return r
}

// send runs a command as if it came in a transaction and returns its
// event ID.
func (r *botRig) send(sender, room, body string) id.EventID {
	r.mu.Lock()
	r.n++
	evt := &event.Event{ID: id.EventID(fmt.Sprintf("$cmd%d", r.n)), Sender: id.UserID(sender), RoomID: id.RoomID(room),
		Type: event.EventMessage, Timestamp: time.Now().UnixMilli()}
	r.mu.Unlock()
	evt.Content.Parsed = &event.MessageEventContent{MsgType: event.MsgText, Body: body}
	r.b.handle(context.Background(), evt)
	return evt.ID
}

// waitFor returns the first message the bot sent that contains want.
func (r *botRig) waitFor(t *testing.T, want string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		for _, m := range r.sent {
			if strings.Contains(m.body, want) {
				r.mu.Unlock()
				return m.body
			}
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("the bot never said %q; it said %q", want, r.sent)
	return ""
}
