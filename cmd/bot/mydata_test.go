package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
)

// !mydata end to end on Dendrite (TestBotSynapse runs it on Synapse),
// then a user's command rate limit.
func TestBotMydata(t *testing.T) {
	env := startBotEnv(t, onDendrite, "1h", "limits: {commands_per_minute: 6}\n") // bursts of 3
	env.mydata(t)
	env.commandRateLimit(t)
}

// mydata: bob's history in four rooms (one whose visibility changed to
// joined and which he left, an invite he rejected, a room he was banned
// from, a world-readable room he joined late), his and alice's media and
// account data; bob asks in a direct chat, reveals his key once through
// the link, and the archive he downloads holds exactly the events the
// homeserver's /messages shows him in each room, his own media, account
// data and receipts, and nothing of alice's. A third !mydata in a day is
// refused. bob sends three commands at once.
func (env *botEnv) mydata(t *testing.T) {
	ctx := context.Background()
	admin, alice := env.admin.cli, env.alice.cli
	bobW := newWatcher(t, env.hs, "bob", false)
	bob := bobW.cli
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	say := func(c *mautrix.Client, room id.RoomID, text string) { t.Helper(); must(c.SendText(ctx, room, text)) }

	// r1: shared history, bob joins, visibility becomes joined, bob leaves.
	r1, err := admin.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "r1"})
	must(r1, err)
	say(admin, r1.RoomID, "r1 before bob")
	must(admin.InviteUser(ctx, r1.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}))
	must(bob.JoinRoomByID(ctx, r1.RoomID))
	say(admin, r1.RoomID, "r1 while bob joined")
	say(bob, r1.RoomID, "r1 bob speaks")
	must(admin.SendStateEvent(ctx, r1.RoomID, event.StateHistoryVisibility, "", map[string]any{"history_visibility": "joined"}))
	say(admin, r1.RoomID, "r1 joined-only while bob in")
	must(bob.LeaveRoom(ctx, r1.RoomID))
	say(admin, r1.RoomID, "r1 after bob left")
	// r2: an invite bob rejected.
	r2, err := admin.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "r2", Invite: []id.UserID{bob.UserID}})
	must(r2, err)
	say(admin, r2.RoomID, "r2 secret")
	must(bob.LeaveRoom(ctx, r2.RoomID))
	say(admin, r2.RoomID, "r2 after reject")
	// r3: bob banned.
	r3, err := admin.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "r3"})
	must(r3, err)
	must(bob.JoinRoomByID(ctx, r3.RoomID))
	say(admin, r3.RoomID, "r3 hello")
	must(admin.BanUser(ctx, r3.RoomID, &mautrix.ReqBanUser{UserID: bob.UserID, Reason: "test"}))
	say(admin, r3.RoomID, "r3 after ban")
	// r4: world readable, bob joins late and stays.
	r4, err := admin.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "r4",
		InitialState: []*event.Event{{Type: event.StateHistoryVisibility, Content: event.Content{Parsed: &event.HistoryVisibilityEventContent{HistoryVisibility: event.HistoryVisibilityWorldReadable}}}}})
	must(r4, err)
	say(admin, r4.RoomID, "r4 early")
	must(bob.JoinRoomByID(ctx, r4.RoomID))
	say(admin, r4.RoomID, "r4 later")
	// Media and account data of bob and of alice; a receipt of the admin's.
	bobMedia, err := bob.UploadBytes(ctx, []byte("bob's picture bytes"), "image/png")
	must(bobMedia, err)
	aliceMedia, err := alice.UploadBytes(ctx, []byte("alice's private file bytes"), "text/plain")
	must(aliceMedia, err)
	must(nil, bob.SetAccountData(ctx, "org.example.bob", map[string]any{"x": 1}))
	must(nil, alice.SetAccountData(ctx, "org.example.alice", map[string]any{"secret": "alice-private"}))
	last, err := admin.SendText(ctx, r4.RoomID, "r4 read by admin")
	must(last, err)
	must(nil, admin.SendReceipt(ctx, r4.RoomID, last.EventID, event.ReceiptTypeRead, nil))
	must(nil, bob.SendReceipt(ctx, r4.RoomID, last.EventID, event.ReceiptTypeRead, nil))

	// bob asks in a direct chat with the bot.
	dm, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{env.botID}})
	must(dm, err)
	env.waitBotJoined(t, bobW, dm.RoomID, "bob's direct chat")
	cmd, _ := bobW.send(t, dm.RoomID, "!mydata")
	progress := env.replyTo(t, bobW, cmd)
	done, _ := bobW.waitFor(t, "bob's data", 120*time.Second, 0, func(s seen) bool {
		m := s.evt.Content.AsMessage()
		return s.evt.Sender == env.botID && m != nil && m.RelatesTo != nil && m.RelatesTo.GetReplyTo() == progress.evt.ID
	})
	text := body(done)
	if !strings.Contains(text, "Your data is ready") {
		t.Fatalf("mydata: %q", text)
	}
	urls := regexp.MustCompile(`https?://[^\s)]+`).FindAllString(text, -1)
	if len(urls) != 3 || !strings.Contains(urls[2], "/reveal/") {
		t.Fatalf("want archive, key file and reveal links in %q", text)
	}
	// The reveal link: GET shows a button only; the first POST shows the
	// key; the second is refused.
	resp, err := http.Get(urls[2])
	must(resp, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(page, []byte("AGE-SECRET-KEY")) || !bytes.Contains(page, []byte("<form method=\"post\"")) {
		t.Fatalf("GET of the reveal link: %s", page)
	}
	reveal := func() (int, []byte) {
		resp, err := http.Post(urls[2], "application/x-www-form-urlencoded", nil)
		must(resp, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, revealed := reveal()
	identityText := regexp.MustCompile(`AGE-SECRET-KEY-1[0-9A-Z]+`).Find(revealed)
	if code != 200 || identityText == nil {
		t.Fatalf("reveal: %d %s", code, revealed)
	}
	// What bob may see. Shared history from before he joined r1 (which he
	// left), and r2's before he rejected its invite: Synapse shows it to a
	// former member too, Dendrite only to one who is joined now.
	visible := []string{"r1 while bob joined", "r1 bob speaks", "r1 joined-only while bob in", "r3 hello", "r4 early", "r4 later"}
	hidden := []string{"r1 after bob left", "r2 after reject", "r3 after ban"}
	if env.hs.sharedHistoryToFormerMembers() {
		visible = append(visible, "r1 before bob", "r2 secret")
	} else {
		hidden = append(hidden, "r1 before bob", "r2 secret")
	}
	// The revealed page also shows the data readably: the messages bob
	// may see (his own marked), not the others.
	page2 := string(revealed)
	for _, want := range append([]string{"@bob:bot.test (you)", "org.example.bob"}, visible...) {
		if !strings.Contains(page2, want) {
			t.Errorf("the readable view lacks %q", want)
		}
	}
	for _, hidden := range append([]string{"alice-private"}, hidden...) {
		if strings.Contains(page2, hidden) {
			t.Errorf("the readable view shows %q", hidden)
		}
	}
	if code, again := reveal(); code != http.StatusGone {
		t.Fatalf("second reveal: %d %s", code, again)
	}
	dir := t.TempDir()
	archiveFile, keyFile := filepath.Join(dir, "mydata.ferry"), filepath.Join(dir, "mydata.ferry.key.age")
	download(t, urls[0], archiveFile, http.StatusOK)
	download(t, urls[1], keyFile, http.StatusOK)
	idFile := filepath.Join(dir, "mydata-key.txt")
	os.WriteFile(idFile, identityText, 0o600)
	if err := run(ctx, []string{"archive", "verify", "--identity", idFile, "--key-file", keyFile, archiveFile}); err != nil {
		t.Fatalf("bob's archive does not verify: %v", err)
	}
	ids, err := keywrap.ParseIdentities(identityText)
	must(ids, err)
	keyBytes, _ := os.ReadFile(keyFile)
	r, err := archive.OpenLocation(ctx, archiveFile, archive.OpenOptions{Identities: ids, KeyFile: keyBytes})
	must(r, err)
	defer r.Close()
	if typ := r.Manifest().Export.Type; typ != "user" {
		t.Errorf("archive type %q, want user", typ)
	}

	// Events per room against what /messages shows bob.
	got := map[string][]string{}
	bodies := map[string]string{}
	what := map[string]string{} // event ID -> type, state key, body: for a failure's message
	describe := func(eventID, typ string, stateKey *string, body string) {
		d := typ
		if stateKey != nil && *stateKey != "" {
			d += " " + *stateKey
		}
		if body != "" {
			d += " " + strconv.Quote(body)
		}
		what[eventID] = d
	}
	must(nil, archive.ReadSection(ctx, r, archive.SectionEvents, func(e *archive.Event) error {
		got[e.RoomID] = append(got[e.RoomID], e.EventID)
		var ev struct {
			Type     string  `json:"type"`
			StateKey *string `json:"state_key"`
			Content  struct {
				Body       string `json:"body"`
				Membership string `json:"membership"`
			} `json:"content"`
		}
		json.Unmarshal(e.JSON, &ev)
		bodies[e.EventID] = ev.Content.Body
		describe(e.EventID, ev.Type, ev.StateKey, ev.Content.Body+ev.Content.Membership)
		return nil
	}))
	cv := &clientview.Client{URL: env.hs.clientURL(), ServerName: env.hs.domain()}
	for name, room := range map[string]id.RoomID{"r1": r1.RoomID, "r2": r2.RoomID, "r3": r3.RoomID, "r4": r4.RoomID} {
		tl, err := cv.Timeline(ctx, bob.AccessToken, room.String())
		var want []string
		if err != nil {
			t.Logf("%s: /messages refuses bob (%v): the archive holds what he could see while he was in the room (checked below)", name, err)
			continue
		}
		for _, e := range tl {
			want = append(want, e.EventID)
			var c struct{ Body, Membership string }
			json.Unmarshal(e.Content, &c)
			describe(e.EventID, e.Type, e.StateKey, c.Body+c.Membership)
		}
		t.Logf("%s: /messages shows bob %d events, his archive holds %d", name, len(want), len(got[room.String()]))
		if len(want) == 0 {
			t.Errorf("%s: /messages shows bob nothing: the comparison would prove nothing", name)
		}
		g := slices.Clone(got[room.String()])
		sort.Strings(g)
		sort.Strings(want)
		if !slices.Equal(g, want) {
			var only []string
			for _, e := range g {
				if !slices.Contains(want, e) {
					only = append(only, "only in the archive: "+what[e])
				}
			}
			for _, e := range want {
				if !slices.Contains(g, e) {
					only = append(only, "only in /messages: "+what[e])
				}
			}
			t.Errorf("%s: archive has %d events, /messages shows bob %d:\n%s", name, len(g), len(want), strings.Join(only, "\n"))
		}
	}
	var texts []string
	for _, b := range bodies {
		if b != "" {
			texts = append(texts, b)
		}
	}
	for _, must := range visible {
		if !slices.Contains(texts, must) {
			t.Errorf("bob's archive lacks %q (has %q)", must, texts)
		}
	}
	for _, mustNot := range hidden {
		if slices.Contains(texts, mustNot) {
			t.Errorf("bob's archive holds %q, which he may not see", mustNot)
		}
	}
	if _, inAdminRoom := got[env.adminRoom.String()]; inAdminRoom {
		t.Error("bob's archive holds events of a room he was never in")
	}

	// Nothing of anybody else's private data.
	must(nil, archive.ReadSection(ctx, r, archive.SectionUsers, func(u *archive.User) error {
		if u.UserID != bob.UserID.String() {
			t.Errorf("another user's account: %s", u.UserID)
		}
		if u.PasswordHash != "" {
			t.Error("a personal export carries the password hash")
		}
		return nil
	}))
	var accountData []string
	must(nil, archive.ReadSection(ctx, r, archive.SectionAccountData, func(a *archive.AccountData) error {
		if a.UserID != bob.UserID.String() {
			t.Errorf("%s's account data %s", a.UserID, a.Type)
		}
		accountData = append(accountData, a.Type)
		return nil
	}))
	if !slices.Contains(accountData, "org.example.bob") {
		t.Errorf("bob's account data missing: %v", accountData)
	}
	must(nil, archive.ReadSection(ctx, r, archive.SectionReceipts, func(rc *archive.Receipt) error {
		if rc.UserID != bob.UserID.String() {
			t.Errorf("%s's receipt", rc.UserID)
		}
		return nil
	}))
	var media []string
	must(nil, archive.ReadSection(ctx, r, archive.SectionMedia, func(m *archive.Media) error {
		media = append(media, "mxc://"+m.Origin+"/"+m.MediaID)
		return nil
	}))
	if !slices.Equal(media, []string{bobMedia.ContentURI.String()}) {
		t.Errorf("media %v, want only bob's %s (not alice's %s)", media, bobMedia.ContentURI, aliceMedia.ContentURI)
	}
	must(nil, archive.ReadSection(ctx, r, archive.SectionDevices, func(d *archive.Device) error {
		if d.UserID != bob.UserID.String() || len(d.AccessTokens) > 0 {
			t.Errorf("%s's device %s (tokens: %d)", d.UserID, d.DeviceID, len(d.AccessTokens))
		}
		return nil
	}))
	// Rate limit: the per-day limit (2 by default) refuses the third.
	for i := 0; i < 2; i++ {
		again, _ := bobW.send(t, dm.RoomID, "!mydata")
		reply := body(env.replyTo(t, bobW, again))
		if i == 1 && !strings.Contains(reply, "the limit is 2") {
			t.Errorf("third !mydata in a day: %q", reply)
		}
	}
	// No key in any room bob is in.
	for _, s := range bobW.all() {
		raw, _ := json.Marshal(s.evt.Content.Raw)
		if bytes.Contains(raw, bytes.TrimSpace(identityText)) || bytes.Contains(raw, []byte("AGE-SECRET-KEY")) {
			t.Errorf("a key in room %s: %s", s.room, raw)
		}
	}
}

// commandRateLimit: commands beyond a user's rate are refused (with
// limits.commands_per_minute 6: bursts of 3); alice asks for help in her
// direct chat with the bot.
func (env *botEnv) commandRateLimit(t *testing.T) {
	ctx := context.Background()
	alice := env.alice.cli
	aliceDM, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{env.botID}})
	if err != nil {
		t.Fatal(err)
	}
	env.waitBotJoined(t, env.alice, aliceDM.RoomID, "alice's direct chat")
	var replies []string
	for range 4 {
		evt, _ := env.alice.send(t, aliceDM.RoomID, "!help")
		replies = append(replies, body(env.replyTo(t, env.alice, evt)))
	}
	if !strings.Contains(replies[3], "faster than I take them") || strings.Contains(replies[2], "faster") {
		t.Errorf("rate limit: replies %q", replies)
	}
}
