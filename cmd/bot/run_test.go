package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/store"
)

// botEnv is a real homeserver (Dendrite or Synapse) with Ferry's bot
// registered as its appservice and running (`bot run`), an admin room, an
// admin and a normal user, each with a client that records everything it
// sees over /sync. @admin2 is configured as a second admin too (the
// dashboard test registers it).
type botEnv struct {
	hs           botHomeserver
	ferryURL     string
	hsToken      string
	cfgPath      string
	identityFile string
	adminRoom    id.RoomID
	admin, alice *watcher
	botID        id.UserID
	stopBot      func()
	top          *testing.T // the bot runs until this test ends
}

// startBotEnv starts it all on the homeserver start makes; download links
// live linkLifetime, and extra is appended to Ferry's config.
func startBotEnv(t *testing.T, start startHomeserver, linkLifetime, extra string) *botEnv {
	t.Helper()
	const domain = "bot.test"
	dir := t.TempDir()
	env := &botEnv{botID: id.NewUserID("ferry", domain), top: t}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	env.ferryURL = "http://" + addr
	asToken, hsToken := strings.Repeat("a", 20)+"-as-token-0123456789", strings.Repeat("h", 20)+"-hs-token-0123456789"
	env.hsToken = hsToken

	// Registration first: the homeserver reads it at start.
	regCfg := &config.Config{Homeserver: config.Homeserver{Domain: domain},
		Appservice: config.Appservice{Address: env.ferryURL, ID: "ferry", BotLocalpart: "ferry", ASToken: config.Secret(asToken), HSToken: config.Secret(hsToken)}}
	reg, err := regCfg.RegistrationYAML()
	if err != nil {
		t.Fatal(err)
	}
	regFile := filepath.Join(dir, "registration.yaml")
	os.WriteFile(regFile, reg, 0o600)
	env.hs = start(t, domain, regFile)

	ctx := context.Background()
	env.admin = newWatcher(t, env.hs, "admin", true)
	env.alice = newWatcher(t, env.hs, "alice", false)
	room, err := env.admin.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Ferry admins",
		Invite: []id.UserID{env.alice.cli.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	env.adminRoom = room.RoomID
	if _, err := env.alice.cli.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		env.admin.cli.SendText(ctx, room.RoomID, fmt.Sprintf("history before the bot, message %d", i))
	}

	id, _ := age.GenerateX25519Identity()
	env.identityFile = filepath.Join(dir, "admin-identity.txt")
	os.WriteFile(env.identityFile, []byte(id.String()+"\n"), 0o600)
	backup, _ := age.GenerateX25519Identity() // the operator's backup key: every archive is also encrypted to it
	// Ferry holds the backup key to verify archives' contents (!export verify).
	os.WriteFile(filepath.Join(dir, "backup-identity.txt"), []byte(backup.String()+"\n"), 0o600)
	yaml := `homeserver: {url: "` + env.hs.clientURL() + `", domain: ` + domain + `, implementation: ` + env.hs.implementation() + `}
appservice: {address: "` + env.ferryURL + `", listen: "` + addr + `", as_token: "` + asToken + `", hs_token: "` + hsToken + `"}
admins: {users: ["@admin:` + domain + `", "@admin2:` + domain + `"], rooms: ["` + room.RoomID.String() + `"]}
` + env.hs.sourceYAML() + `
storage: {url: "file://` + filepath.Join(dir, "archives") + `", link_lifetime: ` + linkLifetime + `, link_secret_file: "` + filepath.Join(dir, "link.secret") + `"}
encryption:
  recipients: ["` + backup.Recipient().String() + `"]
  admin_recipients: {"@admin:` + domain + `": ["` + id.Recipient().String() + `"]}
  identity_file: "` + filepath.Join(dir, "backup-identity.txt") + `"
state: {database: "sqlite://` + filepath.Join(dir, "ferry.db") + `"}
api: {public_url: "` + env.ferryURL + `"}
` + extra
	env.cfgPath = filepath.Join(dir, "config.yaml")
	os.WriteFile(env.cfgPath, []byte(yaml), 0o600)
	env.startBot(t)
	return env
}

// startBot runs `bot run` until stopBot (or the end of the test that
// made the environment, also when called from a subtest).
func (env *botEnv) startBot(t *testing.T) {
	t.Helper()
	top := env.top
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "-c", env.cfgPath}) }()
	var once sync.Once
	env.stopBot = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				top.Errorf("bot run: %v", err)
			}
		})
	}
	top.Cleanup(env.stopBot)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(env.ferryURL + "/_matrix/mau/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("bot run ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("bot did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// seen is one event a watcher received, with when.
type seen struct {
	room id.RoomID
	evt  *event.Event
	at   time.Time
}

// watcher is a logged-in user whose /sync loop records every timeline
// event and invite.
type watcher struct {
	cli    *mautrix.Client
	mu     sync.Mutex
	events []seen
	invite []id.RoomID
	wake   chan struct{}
}

func newWatcher(t *testing.T, hs botHomeserver, localpart string, admin bool) *watcher {
	t.Helper()
	tok := hs.Register(t, localpart, localpart+"-password", admin)
	cli, err := mautrix.NewClient(hs.clientURL(), id.NewUserID(localpart, hs.domain()), tok)
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{cli: cli, wake: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		since := ""
		for ctx.Err() == nil {
			resp, err := cli.SyncRequest(ctx, 10000, since, "", false, "")
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			now := time.Now()
			w.mu.Lock()
			for room, jr := range resp.Rooms.Join {
				for _, e := range jr.Timeline.Events {
					e.RoomID = room
					e.Content.ParseRaw(e.Type)
					w.events = append(w.events, seen{room: room, evt: e, at: now})
				}
			}
			for room := range resp.Rooms.Invite {
				w.invite = append(w.invite, room)
			}
			close(w.wake)
			w.wake = make(chan struct{})
			w.mu.Unlock()
			since = resp.NextBatch
		}
	}()
	return w
}

// waitFor returns the first event (from index from on) that matches.
func (w *watcher) waitFor(t *testing.T, what string, timeout time.Duration, from int, match func(s seen) bool) (seen, int) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		for i := from; i < len(w.events); i++ {
			if match(w.events[i]) {
				s := w.events[i]
				w.mu.Unlock()
				return s, i
			}
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.events)
}

func (w *watcher) all() []seen {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// inviteBot has the admin invite the bot to the admin room, and waits
// until it joins.
func (env *botEnv) inviteBot(t *testing.T) {
	t.Helper()
	if _, err := env.admin.cli.InviteUser(context.Background(), env.adminRoom, &mautrix.ReqInviteUser{UserID: env.botID}); err != nil {
		t.Fatal(err)
	}
	env.waitBotJoined(t, env.admin, env.adminRoom, "the admin room")
}

// waitBotJoined waits until w sees the bot join room (what names it).
func (env *botEnv) waitBotJoined(t *testing.T, w *watcher, room id.RoomID, what string) {
	t.Helper()
	w.waitFor(t, "the bot to join "+what, 30*time.Second, 0, func(s seen) bool {
		return s.room == room && s.evt.Type == event.StateMember && s.evt.GetStateKey() == env.botID.String() &&
			s.evt.Content.AsMember().Membership == event.MembershipJoin
	})
}

// send posts a command and returns its event ID and when it was sent.
func (w *watcher) send(t *testing.T, room id.RoomID, body string) (id.EventID, time.Time) {
	t.Helper()
	at := time.Now()
	resp, err := w.cli.SendText(context.Background(), room, body)
	if err != nil {
		t.Fatalf("send %q: %v", body, err)
	}
	return resp.EventID, at
}

// replyTo waits for the bot's reply to evt and returns its text.
func (env *botEnv) replyTo(t *testing.T, w *watcher, evt id.EventID) seen {
	t.Helper()
	s, _ := w.waitFor(t, "the bot's reply to "+evt.String(), 60*time.Second, 0, func(s seen) bool {
		m := s.evt.Content.AsMessage()
		return s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplyTo() == evt
	})
	return s
}

func body(s seen) string { return s.evt.Content.AsMessage().Body }

// The bot end to end on a real Dendrite: every scenario of botEnv, then
// no key ever in a room. Logs the reply latency. TestBotSynapse runs the
// representative ones on Synapse.
func TestBotEndToEnd(t *testing.T) {
	runScenarios(t, onDendrite, "export full", "partial export", "schedule", "refusals", "appservice API",
		"encrypted message", "restart", "cancel a running export", "latency")
}

// scenarios are botEnv's scenarios by the names their subtests get.
var scenarios = map[string]func(*botEnv, *testing.T){
	"export full":             (*botEnv).exportFull,
	"partial export":          (*botEnv).partialExport,
	"schedule":                (*botEnv).schedule,
	"refusals":                (*botEnv).refusals,
	"appservice API":          (*botEnv).appserviceAPI,
	"encrypted message":       (*botEnv).encryptedMessage,
	"restart":                 (*botEnv).restart,
	"cancel a running export": (*botEnv).cancelRunning,
	"mydata":                  (*botEnv).mydata,
	"latency":                 (*botEnv).latency,
}

// runScenarios runs the named scenarios in one bot environment on the
// homeserver start makes (links live an hour, commands are not rate
// limited), the bot invited to the admin room first; then checks that no
// secret reached a room.
func runScenarios(t *testing.T, start startHomeserver, names ...string) {
	env := startBotEnv(t, start, "1h", "limits: {commands_per_minute: 6000}\n")
	env.inviteBot(t)
	for _, name := range names {
		run, ok := scenarios[name]
		if !ok {
			t.Fatalf("no scenario %q", name)
		}
		t.Run(name, func(t *testing.T) { run(env, t) })
	}
	env.noSecretInRooms(t)
}

// exportFull: an admin's `!export full` in the admin room -> a progress
// message edited in place -> a completion notice whose links download an
// archive that verifies and decrypts with the admin's own key (a forged link is refused); status,
// list and verify; !import's key form and preview; a damaged archive;
// cancel of a finished export; delete after !confirm.
func (env *botEnv) exportFull(t *testing.T) {
	ctx := context.Background()
	cmd, _ := env.admin.send(t, env.adminRoom, "!export full")
	progress := env.replyTo(t, env.admin, cmd)
	if !strings.Contains(body(progress), "Export `") {
		t.Fatalf("first reply is not a progress message: %q", body(progress))
	}
	done, _ := env.admin.waitFor(t, "the completion notice", 120*time.Second, 0, func(s seen) bool {
		m := s.evt.Content.AsMessage()
		return s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplyTo() == progress.evt.ID
	})
	text := body(done)
	if !strings.Contains(text, "is ready") {
		t.Fatalf("export did not complete: %q", text)
	}
	// The progress message was edited in place and ends at 100%.
	var edits []seen
	for _, s := range env.admin.all() {
		if m := s.evt.Content.AsMessage(); s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplaceID() == progress.evt.ID {
			edits = append(edits, s)
		}
	}
	if len(edits) == 0 {
		t.Fatal("the progress message was never edited")
	}
	last := edits[len(edits)-1].evt.Content.AsMessage()
	if last.NewContent == nil || !strings.Contains(last.NewContent.Body, "done") || !strings.Contains(last.NewContent.Body, "100%") {
		t.Fatalf("last edit is not the finished state: %+v", last.NewContent)
	}
	t.Logf("progress message: %d edits over %s", len(edits), edits[len(edits)-1].at.Sub(progress.at).Round(time.Millisecond))

	urls := regexp.MustCompile(`https?://\S+`).FindAllString(text, -1)
	if len(urls) != 2 {
		t.Fatalf("want an archive and a key link in %q", text)
	}
	dir := t.TempDir()
	archiveFile, keyFile := filepath.Join(dir, "a.ferry"), filepath.Join(dir, "a.ferry.key.age")
	download(t, urls[0], archiveFile, http.StatusOK)
	download(t, urls[1], keyFile, http.StatusOK)
	if err := run(ctx, []string{"archive", "verify", "--identity", env.identityFile, "--key-file", keyFile, archiveFile}); err != nil {
		t.Fatalf("the downloaded archive does not verify with the admin's key: %v", err)
	}
	out := filepath.Join(dir, "plain")
	if err := run(ctx, []string{"archive", "extract", "--identity", env.identityFile, "--key-file", keyFile, archiveFile, out}); err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	// A forged link (one character changed) is refused.
	forged := []byte(urls[0])
	i := strings.Index(urls[0], "/download/") + len("/download/") + 5
	forged[i] ^= 1
	download(t, string(forged), filepath.Join(dir, "forged"), http.StatusForbidden)

	exportID := regexp.MustCompile("Export `([0-9a-f]+)`").FindStringSubmatch(text)[1]
	st, _ := env.admin.send(t, env.adminRoom, "!export status "+exportID)
	if b := body(env.replyTo(t, env.admin, st)); !strings.Contains(b, "done") || !strings.Contains(b, "@admin:bot.test") {
		t.Errorf("status: %q", b)
	}
	ls, _ := env.admin.send(t, env.adminRoom, "!export list")
	if b := body(env.replyTo(t, env.admin, ls)); !strings.Contains(b, exportID) || !strings.Contains(b, "completed") {
		t.Errorf("list: %q", b)
	}
	vf, _ := env.admin.send(t, env.adminRoom, "!export verify "+exportID)
	if b := body(env.replyTo(t, env.admin, vf)); !strings.Contains(b, "is intact") || !strings.Contains(b, "Now checking every record") {
		t.Errorf("verify: %q", b)
	}
	// Ferry holds the operator's backup key: a verify job reads the
	// archive's contents and the result is posted in the room.
	verified, _ := env.admin.waitFor(t, "the verification's result", 60*time.Second, 0, func(s seen) bool {
		return strings.Contains(body(s), "Verified:") || strings.Contains(body(s), "Verification failed")
	})
	if b := body(verified); !strings.Contains(b, "contents checked") || !strings.Contains(b, "no errors") {
		t.Errorf("verification result: %q", b)
	}
	// !import: an encrypted archive can't be previewed (no key in chat);
	// a plaintext one is validated with the fidelity preview.
	im, _ := env.admin.send(t, env.adminRoom, "!import "+exportID)
	importAsk := env.replyTo(t, env.admin, im)
	if b := body(importAsk); !strings.Contains(b, "is encrypted, and I hold no key") || !strings.Contains(b, "--dry-run") {
		t.Errorf("!import of an encrypted archive: %q", b)
	}
	// The key of this one archive goes through the one-time form, not chat.
	unlock := regexp.MustCompile(`https?://\S+/unlock/\S+`).FindString(body(importAsk))
	if unlock == "" {
		t.Fatalf("no key form link in %q", body(importAsk))
	}
	keyLine := archiveKeyLine(t, archiveFile, keyFile, env.identityFile)
	resp, err := http.PostForm(unlock, url.Values{"key": {keyLine}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("key form: %v %v", resp, err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(page, []byte("Posted in the room")) || bytes.Contains(page, []byte("✗")) {
		t.Fatalf("key form answer: %s", page)
	}
	env.admin.waitFor(t, "the preview after the key form", 60*time.Second, 0, func(s seen) bool {
		m := s.evt.Content.AsMessage()
		return s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplyTo() == im &&
			strings.Contains(m.Body, "✅ valid full export of bot.test") && strings.Contains(m.Body, "What an import into Dendrite")
	})
	if resp, _ := http.PostForm(unlock, url.Values{"key": {keyLine}}); resp == nil || resp.StatusCode != http.StatusGone {
		t.Errorf("the key form worked twice: %v", resp)
	}
	plain := filepath.Join(filepath.Dir(env.cfgPath), "archives", "plain.ferry") // !import URL reads only from Ferry's storage (and storage.import_from)
	if err := run(ctx, append(append([]string{"export"}, env.hs.exportFlags()...), "--plaintext", "--to", plain)); err != nil {
		t.Fatal(err)
	}
	im, _ = env.admin.send(t, env.adminRoom, "!import file://"+plain)
	if b := body(env.replyTo(t, env.admin, im)); !strings.Contains(b, "✅ valid full export of bot.test") || !strings.Contains(b, "What an import into Dendrite") {
		t.Errorf("!import of a plaintext archive: %q", b)
	}
	// Damage the stored archive: verify says so.
	file := regexp.MustCompile("is ready: `([^`]+)`").FindStringSubmatch(text)[1]
	stored := filepath.Join(filepath.Dir(env.cfgPath), "archives", "archives", file)
	data, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	os.WriteFile(stored, data, 0o600)
	vf, _ = env.admin.send(t, env.adminRoom, "!export verify "+exportID)
	if b := body(env.replyTo(t, env.admin, vf)); !strings.Contains(b, "is damaged") {
		t.Errorf("verify of a damaged archive: %q", b)
	}
	cn, _ := env.admin.send(t, env.adminRoom, "!export cancel "+exportID)
	if b := body(env.replyTo(t, env.admin, cn)); !strings.Contains(b, "already ended") {
		t.Errorf("cancel of a finished export: %q", b)
	}
	// Deleting asks for confirmation, from the same admin in the same room.
	del, _ := env.admin.send(t, env.adminRoom, "!export delete "+exportID)
	ask := body(env.replyTo(t, env.admin, del))
	m := regexp.MustCompile("`!confirm ([0-9a-f]+)`").FindStringSubmatch(ask)
	if m == nil {
		t.Fatalf("delete did not ask for confirmation: %q", ask)
	}
	wrong, _ := env.admin.send(t, env.adminRoom, "!confirm 000000")
	if b := body(env.replyTo(t, env.admin, wrong)); !strings.Contains(b, "no step of yours waits") {
		t.Errorf("wrong code: %q", b)
	}
	download(t, urls[0], filepath.Join(dir, "still-there"), http.StatusOK)
	ok, _ := env.admin.send(t, env.adminRoom, "!confirm "+m[1])
	if b := body(env.replyTo(t, env.admin, ok)); !strings.Contains(b, "Deleted") {
		t.Errorf("confirm: %q", b)
	}
	download(t, urls[0], filepath.Join(dir, "gone"), http.StatusNotFound)
}

// partialExport: `!export partial` of the admin room.
func (env *botEnv) partialExport(t *testing.T) {
	cmd, _ := env.admin.send(t, env.adminRoom, "!export partial --rooms "+env.adminRoom.String()+" --media none")
	progress := env.replyTo(t, env.admin, cmd)
	done, _ := env.admin.waitFor(t, "the partial export's notice", 120*time.Second, 0, func(s seen) bool {
		m := s.evt.Content.AsMessage()
		return s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplyTo() == progress.evt.ID
	})
	if !strings.Contains(body(done), "is ready") || !strings.Contains(body(progress), "(partial)") {
		t.Fatalf("partial export: %q / %q", body(progress), body(done))
	}
}

// schedule: `!schedule add` runs are announced, completed and pruned by
// retention in the admin room; a removed schedule stops.
func (env *botEnv) schedule(t *testing.T) {
	from := env.admin.count()
	add, _ := env.admin.send(t, env.adminRoom, `!schedule add "@every 3s" full --keep 1 --media none --name often`)
	if got := body(env.replyTo(t, env.admin, add)); !strings.Contains(got, "Schedule `often` added") || !strings.Contains(got, "keeping the newest 1") {
		t.Fatalf("schedule add: %q", got)
	}
	botSays := func(what, text string) seen {
		s, _ := env.admin.waitFor(t, what, 90*time.Second, from, func(s seen) bool {
			return s.evt.Sender == env.botID && s.room == env.adminRoom && strings.Contains(body(s), text)
		})
		return s
	}
	botSays("the announced start", "Scheduled backup `often` started")
	botSays("a scheduled run's completion notice", "is ready: `often-")
	botSays("retention pruning the older archive", "Retention of `often` deleted `archives/often-")
	ls, _ := env.admin.send(t, env.adminRoom, "!schedule list")
	if got := body(env.replyTo(t, env.admin, ls)); !strings.Contains(got, "`often` cron `@every 3s`, keeping the newest 1, added by @admin:bot.test") {
		t.Errorf("schedule list: %q", got)
	}
	rm, _ := env.admin.send(t, env.adminRoom, "!schedule remove often")
	if got := body(env.replyTo(t, env.admin, rm)); !strings.Contains(got, "removed") {
		t.Fatalf("schedule remove: %q", got)
	}
	time.Sleep(5 * time.Second) // a tick already queued may still run
	n := env.admin.count()
	time.Sleep(7 * time.Second)
	for _, s := range env.admin.all()[n:] {
		if strings.Contains(body(s), "Scheduled backup `often` started") {
			t.Errorf("the removed schedule still runs: %q", body(s))
		}
	}
}

// refusals of a non-admin, of an admin command outside the admin room, of
// unknown commands and bad options, of an invite to another room; all
// in the audit log.
func (env *botEnv) refusals(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		who  *watcher
		body string
		want string
	}{
		{env.alice, "!export full", "Only Ferry's admins"},
		{env.admin, "!frobnicate", "unknown command !frobnicate"},
		{env.admin, "!export", "needs one of"},
		{env.admin, "!export partial --media sometimes --rooms " + env.adminRoom.String(), "media filter \"sometimes\""},
		{env.admin, "!export partial", "say what to export"},
		{env.admin, "!export partial --since yesterday", "\"yesterday\" is not a time"},
		{env.admin, "!export status nosuchexport", "there is no export"},
		{env.alice, "!help", "!help"},
	} {
		evt, _ := tc.who.send(t, env.adminRoom, tc.body)
		if got := body(env.replyTo(t, tc.who, evt)); !strings.Contains(got, tc.want) {
			t.Errorf("%s: reply %q, want it to contain %q", tc.body, got, tc.want)
		}
	}
	// !help hides admin commands from non-admins.
	evt, _ := env.alice.send(t, env.adminRoom, "!help")
	if got := body(env.replyTo(t, env.alice, evt)); strings.Contains(got, "!export") {
		t.Errorf("non-admin help lists admin commands: %q", got)
	}
	// An admin command in a room that is not an admin room: the bot
	// joins a direct chat from a local user, and refuses there.
	dm, err := env.admin.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{env.botID}})
	if err != nil {
		t.Fatal(err)
	}
	env.waitBotJoined(t, env.admin, dm.RoomID, "the direct chat")
	evt, _ = env.admin.send(t, dm.RoomID, "!export full")
	if got := body(env.replyTo(t, env.admin, evt)); !strings.Contains(got, "works only in an admin room") {
		t.Errorf("admin command in a direct chat: %q", got)
	}
	// A group room that is not an admin room: the invite is refused.
	other, err := env.alice.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{env.botID}})
	if err != nil {
		t.Fatal(err)
	}
	env.alice.waitFor(t, "the bot to refuse the invite", 30*time.Second, 0, func(s seen) bool {
		return s.room == other.RoomID && s.evt.Type == event.StateMember && s.evt.GetStateKey() == env.botID.String() && s.evt.Content.AsMember().Membership == event.MembershipLeave
	})
	// Every refusal is in the audit log.
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(filepath.Dir(env.cfgPath), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log, _ := st.AuditLog(ctx, 1000)
	var refused []string
	for _, e := range log {
		if e.Outcome == "refused" {
			refused = append(refused, e.Actor+" "+e.Action)
		}
	}
	if !slices.Contains(refused, "@alice:bot.test command !export full") || !slices.Contains(refused, "@admin:bot.test command !export full") ||
		!slices.Contains(refused, "@alice:bot.test command invite") {
		t.Errorf("audit log refusals: %q", refused)
	}
}

// appserviceAPI: the transaction endpoint's token check, a replayed
// transaction processed once, a command sent while the bot was down
// answered but not run.
func (env *botEnv) appserviceAPI(t *testing.T) {
	now := time.Now().UnixMilli()
	txn := func(eventID string, ts int64, body string) []byte {
		b, _ := json.Marshal(map[string]any{"events": []map[string]any{{
			"type": "m.room.message", "room_id": env.adminRoom, "sender": "@admin:bot.test", "event_id": eventID,
			"origin_server_ts": ts, "content": map[string]any{"msgtype": "m.text", "body": body}}}})
		return b
	}
	// Wrong hs_token: refused, nothing runs.
	if code := putTxn(t, env.ferryURL, "forged-1", "not-the-hs-token", txn("$forged:bot.test", now, "!export full")); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("wrong hs_token: status %d", code)
	}
	if code := putTxn(t, env.ferryURL, "forged-2", "", txn("$forged2:bot.test", now, "!export full")); code < 400 {
		t.Errorf("no token: status %d", code)
	}
	// The same transaction twice, and the same event in another
	// transaction: processed once.
	for _, id := range []string{"replay-1", "replay-1", "replay-2"} {
		if code := putTxn(t, env.ferryURL, id, env.hsToken, txn("$replayed:bot.test", now, "!export list")); code != 200 {
			t.Fatalf("transaction %s: status %d", id, code)
		}
	}
	// A command sent while the bot was down (before it started): answered, not run.
	if code := putTxn(t, env.ferryURL, "late-1", env.hsToken, txn("$late:bot.test", now-3600_000, "!export full")); code != 200 {
		t.Fatalf("late transaction: status %d", code)
	}
	late := env.replyTo(t, env.admin, "$late:bot.test")
	if !strings.Contains(body(late), "did not run it late") {
		t.Errorf("late command: %q", body(late))
	}
	env.replyTo(t, env.admin, "$replayed:bot.test")
	time.Sleep(3 * time.Second) // room for a duplicate to show up
	n := 0
	for _, s := range env.admin.all() {
		if m := s.evt.Content.AsMessage(); s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplyTo() == "$replayed:bot.test" {
			n++
		}
		if m := s.evt.Content.AsMessage(); m != nil && m.RelatesTo != nil && (m.RelatesTo.GetReplyTo() == "$forged:bot.test" || m.RelatesTo.GetReplyTo() == "$forged2:bot.test") {
			t.Errorf("a transaction with a wrong token was processed: %q", m.Body)
		}
	}
	if n != 1 {
		t.Errorf("replayed transaction answered %d times, want once", n)
	}
}

// encryptedMessage: an encrypted message is answered in a new unencrypted
// direct chat.
func (env *botEnv) encryptedMessage(t *testing.T) {
	ctx := context.Background()
	_, err := env.alice.cli.SendMessageEvent(ctx, env.adminRoom, event.EventEncrypted, map[string]any{
		"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnB...", "session_id": "sess", "sender_key": "key", "device_id": "DEV"})
	if err != nil {
		t.Fatal(err)
	}
	var dm id.RoomID
	deadline := time.Now().Add(30 * time.Second)
	for dm == "" {
		env.alice.mu.Lock()
		for _, r := range env.alice.invite {
			if r != env.adminRoom {
				dm = r
			}
		}
		env.alice.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("no direct chat invite after an encrypted command")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := env.alice.cli.JoinRoomByID(ctx, dm); err != nil {
		t.Fatal(err)
	}
	got, _ := env.alice.waitFor(t, "the explanation in the direct chat", 30*time.Second, 0, func(s seen) bool {
		return s.room == dm && s.evt.Sender == env.botID && s.evt.Type == event.EventMessage
	})
	if !strings.Contains(body(got), "can't read encrypted messages") {
		t.Errorf("explanation: %q", body(got))
	}
	if err := env.alice.cli.StateEvent(ctx, dm, event.StateEncryption, "", &struct{}{}); err == nil {
		t.Error("the explanation's direct chat is encrypted")
	}
}

// restart: a restarted bot posts the outcome it had not posted, and answers
// (without running) what was sent while it was down, when the homeserver
// delivers it again.
func (env *botEnv) restart(t *testing.T) {
	ctx := context.Background()
	cmd, _ := env.admin.send(t, env.adminRoom, "!export full --media none")
	progress := env.replyTo(t, env.admin, cmd)
	isOutcome := func(s seen) bool {
		m := s.evt.Content.AsMessage()
		return s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplyTo() == progress.evt.ID
	}
	_, first := env.admin.waitFor(t, "the completion notice", 120*time.Second, 0, isOutcome)
	env.stopBot()
	// While the bot is down: a command (the homeserver redelivers it
	// later), and, as if the bot had died before posting it, the
	// outcome of the export marked as not yet posted.
	late, _ := env.admin.send(t, env.adminRoom, "!export list")
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(filepath.Dir(env.cfgPath), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	list, _ := st.ListExports(ctx, 1)
	if follows, err := st.Follows(ctx); err != nil || follows[list[0].ID] != "" {
		t.Fatalf("the export's follow state was kept after its outcome was posted: %v %v", follows, err)
	}
	// The state the bot keeps while it follows the export (bot.followState).
	state, _ := json.Marshal(map[string]string{"room": string(env.adminRoom), "reply_to": string(cmd), "message": string(progress.evt.ID), "type": "full"})
	if err := st.SaveFollow(ctx, list[0].ID, string(state)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	env.startBot(t)
	env.admin.waitFor(t, "the outcome posted again by the restarted bot", 60*time.Second, first+1, isOutcome)
	if b := body(env.replyTo(t, env.admin, late)); !strings.Contains(b, "did not run it late") {
		t.Errorf("a command sent while the bot was down: %q", b)
	}
}

// cancelRunning: `!export cancel` of an export held in its media stream (a
// FIFO in place of an uploaded file): cancelled, nothing published.
func (env *botEnv) cancelRunning(t *testing.T) {
	ctx := context.Background()
	// A media file that never finishes reading (a FIFO in the
	// homeserver's media directory) holds the export in its media stream.
	data := []byte("a file the export will wait for")
	if _, err := env.admin.cli.UploadBytes(ctx, data, "text/plain"); err != nil {
		t.Fatal(err)
	}
	stored := storedMedia(t, env.hs, data)
	os.Remove(stored)
	if err := syscall.Mkfifo(stored, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Unblock the reader (EOF), then put the file back.
		if f, err := os.OpenFile(stored, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		os.Remove(stored)
		os.WriteFile(stored, data, 0o600)
	}()
	cmd, _ := env.admin.send(t, env.adminRoom, "!export full")
	progress := env.replyTo(t, env.admin, cmd)
	exportID := regexp.MustCompile("Export `([0-9a-f]+)`").FindStringSubmatch(body(progress))[1]
	// Wait until it runs (it then stays in the media stream for good).
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		st, _ := env.admin.send(t, env.adminRoom, "!export status "+exportID)
		if strings.Contains(body(env.replyTo(t, env.admin, st)), ": exporting ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the export never started")
		}
	}
	time.Sleep(2 * time.Second) // past the other streams, into the FIFO
	cn, _ := env.admin.send(t, env.adminRoom, "!export cancel "+exportID)
	if b := body(env.replyTo(t, env.admin, cn)); !strings.Contains(b, "is cancelled") {
		t.Fatalf("cancel: %q", b)
	}
	outcome, _ := env.admin.waitFor(t, "the cancellation notice", 30*time.Second, 0, func(s seen) bool {
		m := s.evt.Content.AsMessage()
		return s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplyTo() == progress.evt.ID
	})
	if !strings.Contains(body(outcome), "was cancelled") || !strings.Contains(body(outcome), "nothing was published") {
		t.Errorf("outcome: %q", body(outcome))
	}
}

// latency logs command -> first reply over 20 commands (p50, p95, max).
func (env *botEnv) latency(t *testing.T) {
	var lat []time.Duration
	for range 20 {
		evt, at := env.admin.send(t, env.adminRoom, "!export list")
		lat = append(lat, env.replyTo(t, env.admin, evt).at.Sub(at))
	}
	slices.Sort(lat)
	t.Logf("%s: command -> first reply over %d commands: p50 %s, p95 %s, max %s", env.hs.implementation(), len(lat), lat[len(lat)/2].Round(time.Millisecond),
		lat[len(lat)*95/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
}

// noSecretInRooms: no secret ever reached a room the admin or alice is
// in: no age identity, no plain key line.
func (env *botEnv) noSecretInRooms(t *testing.T) {
	t.Helper()
	identity, _ := os.ReadFile(env.identityFile)
	for _, w := range []*watcher{env.admin, env.alice} {
		for _, s := range w.all() {
			raw, _ := json.Marshal(s.evt.Content.Raw)
			if bytes.Contains(bytes.ToUpper(raw), []byte("AGE-SECRET-KEY")) || bytes.Contains(raw, []byte("ferry-archive-key")) || bytes.Contains(raw, bytes.TrimSpace(identity)) {
				t.Errorf("a secret in room %s: %s", s.room, raw)
			}
		}
	}
}

// archiveKeyLine is what `bot archive key` prints for the archive.
func archiveKeyLine(t *testing.T, archiveFile, keyFile, identityFile string) string {
	t.Helper()
	idText, _ := os.ReadFile(identityFile)
	ids, err := keywrap.ParseIdentities(idText)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, _ := os.ReadFile(keyFile)
	r, err := archive.OpenLocation(context.Background(), archiveFile, archive.OpenOptions{Identities: ids, KeyFile: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	key, err := keywrap.FromBytes(r.Key())
	if err != nil {
		t.Fatal(err)
	}
	return string(key.Encode(r.Manifest().ArchiveID))
}

func download(t *testing.T, url, file string, want int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, b, want)
	}
	os.WriteFile(file, b, 0o600)
}

func putTxn(t *testing.T, base, txnID, token string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, base+"/_matrix/app/v1/transactions/"+txnID, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The links of a completion notice stop working when they expire: 403
// with a body that says so.
func TestBotLinksExpire(t *testing.T) {
	env := startBotEnv(t, onDendrite, "4s", "")
	env.inviteBot(t)
	cmd, _ := env.admin.send(t, env.adminRoom, "!export full --media none")
	progress := env.replyTo(t, env.admin, cmd)
	done, _ := env.admin.waitFor(t, "the completion notice", 120*time.Second, 0, func(s seen) bool {
		m := s.evt.Content.AsMessage()
		return s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplyTo() == progress.evt.ID
	})
	link := regexp.MustCompile(`https?://\S+`).FindString(body(done))
	time.Sleep(6 * time.Second) // past the 4 s lifetime, whatever the rounding to seconds
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "expired") {
		t.Errorf("an expired link: %d %s", resp.StatusCode, b)
	}
}
