package sourcetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"maunium.net/go/mautrix/crypto/canonicaljson"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/matrixevent"
	"github.com/ferry-matrix/ferry/source"
)

// Suite describes one adapter on one fixture.
type Suite struct {
	// Open opens the source on the fixture (a fresh one each call is fine).
	Open  func(t *testing.T) source.Source
	Truth *GroundTruth
	// Secrets are strings of the fixture (config secrets, access tokens)
	// that must never appear in a plaintext export.
	Secrets []string
	// PasswordsVerify: the fixture's passwords ("<localpart>-Fixtur3pw" in
	// the ground truth) must verify against the exported bcrypt hashes.
	PasswordsVerify bool
	// OriginalsLost: the source keeps only the redacted form of redacted
	// events (Dendrite), so the redacted_originals option must report the
	// omission instead of exporting them.
	OriginalsLost bool
}

// Run runs the conformance checks as subtests.
func (s Suite) Run(t *testing.T) {
	t.Run("full-encrypted", func(t *testing.T) {
		c := s.collect(t, source.Filter{}, source.Options{Encrypted: true})
		s.checkUsers(t, c)
		s.checkRooms(t, c)
		s.checkEvents(t, c)
		s.checkAccountData(t, c)
		s.checkDevicesAndKeys(t, c, false)
		s.checkMedia(t, c)
		if len(c.of(archive.SectionUsers)) > 0 && s.PasswordsVerify {
			for _, u := range c.of(archive.SectionUsers) {
				if u.(*archive.User).PasswordHash == "" {
					t.Errorf("%s: no password hash in an encrypted export", u.(*archive.User).UserID)
				}
			}
		}
	})
	t.Run("plaintext-has-no-secrets", func(t *testing.T) {
		c := s.collect(t, source.Filter{}, source.Options{AccessTokens: true})
		for _, u := range c.of(archive.SectionUsers) {
			if u.(*archive.User).PasswordHash != "" {
				t.Errorf("%s: password hash in a plaintext export", u.(*archive.User).UserID)
			}
		}
		for _, d := range c.of(archive.SectionDevices) {
			if len(d.(*archive.Device).AccessTokens) > 0 {
				t.Errorf("access tokens in a plaintext export")
			}
		}
		if n := len(c.of(archive.SectionBackupSessions)); n > 0 {
			t.Errorf("%d backed-up room keys in a plaintext export", n)
		}
		for _, secret := range s.Secrets {
			if bytes.Contains(c.all.Bytes(), []byte(secret)) {
				t.Errorf("secret %q…%q appears in a plaintext export", secret[:3], secret[len(secret)-3:])
			}
		}
		if len(c.sensitive) > 0 {
			t.Errorf("plaintext export marked sensitive fields: %v", c.sensitive)
		}
		if !c.omitted("excluded_by_default", archive.SectionUsers+"#password_hash") {
			t.Error("leaving out password hashes is not reported")
		}
	})
	t.Run("options", func(t *testing.T) {
		c := s.collect(t, source.Filter{}, source.Options{Encrypted: true, AccessTokens: true, OneTimeKeys: true, RedactedOriginals: true})
		s.checkDevicesAndKeys(t, c, true)
		tokens := 0
		for _, d := range c.of(archive.SectionDevices) {
			tokens += len(d.(*archive.Device).AccessTokens)
		}
		if tokens == 0 {
			t.Error("access_tokens option exported no access token")
		}
		originals := 0
		for _, e := range c.of(archive.SectionEvents) {
			if ev := e.(*archive.Event); ev.Redacted && len(ev.OriginalJSON) > 0 {
				originals++
			}
		}
		switch {
		case s.OriginalsLost && (originals != 0 || !c.omitted("source_missing", archive.SectionEvents+"#original_json")):
			t.Errorf("source without originals: %d exported, omission reported %v", originals, c.omitted("source_missing", archive.SectionEvents+"#original_json"))
		case !s.OriginalsLost && originals != len(s.Truth.Redactions):
			t.Errorf("%d redacted originals exported with the option, want %d", originals, len(s.Truth.Redactions))
		}
	})
	t.Run("selection", s.runSelections)
}

// collector is an in-memory Sink.
type collector struct {
	records   map[string][]any
	blobs     map[string]blobInfo
	files     map[string][]byte
	omissions []archive.Omission
	sensitive []string
	all       bytes.Buffer // every emitted byte, for secret scans
}

type blobInfo struct {
	size int64
	sum  string
}

func (c *collector) Record(section string, rec any) error {
	if e, ok := rec.(*archive.Event); ok { // its JSON lasts only the call (source.Sink)
		cp := *e
		cp.JSON, cp.OriginalJSON = bytes.Clone(e.JSON), bytes.Clone(e.OriginalJSON)
		rec = &cp
	}
	c.records[section] = append(c.records[section], rec)
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	c.all.Write(b)
	c.scanBytes(reflect.ValueOf(rec))
	return nil
}

// scanBytes adds byte-slice fields (JSON held in records) as they are.
func (c *collector) scanBytes(v reflect.Value) {
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Uint8 {
			c.all.Write(f.Bytes())
		}
	}
}

func (c *collector) Blob(path string, size int64, r io.Reader) (string, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("blob %s: %d bytes, announced %d", path, n, size)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	c.blobs[path] = blobInfo{size, sum}
	return sum, nil
}

func (c *collector) File(path string, data []byte, _ int64, sensitive []string) error {
	c.files[path] = data
	c.sensitive = append(c.sensitive, sensitive...)
	c.all.Write(data)
	return nil
}

func (c *collector) Omit(o archive.Omission) error {
	c.omissions = append(c.omissions, o)
	return nil
}

func (c *collector) Checkpoint([]byte) error { return nil }

func (c *collector) of(section string) []any { return c.records[section] }

func (c *collector) omitted(code, item string) bool {
	for _, o := range c.omissions {
		if o.Code == code && o.Item == item {
			return true
		}
	}
	return false
}

// collect runs every stream of a fresh source into a collector.
func (s Suite) collect(t *testing.T, f source.Filter, o source.Options) *collector {
	t.Helper()
	ctx := context.Background()
	src := s.Open(t)
	defer src.Close()
	streams, err := src.Streams(ctx, f, o)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{records: map[string][]any{}, blobs: map[string]blobInfo{}, files: map[string][]byte{}}
	for _, st := range streams {
		if err := st.Run(ctx, nil, c); err != nil {
			t.Fatalf("stream %s: %v", st.Name, err)
		}
	}
	return c
}

// Collect exposes an export into memory for adapter-specific tests: it
// returns the records of each section.
func Collect(t *testing.T, src source.Source, f source.Filter, o source.Options) map[string][]any {
	t.Helper()
	s := Suite{Open: func(*testing.T) source.Source { return nopClose{src} }}
	return s.collect(t, f, o).records
}

type nopClose struct{ source.Source }

func (nopClose) Close() error { return nil }

func (s Suite) checkUsers(t *testing.T, c *collector) {
	users := map[string]*archive.User{}
	for _, r := range c.of(archive.SectionUsers) {
		u := r.(*archive.User)
		users[u.UserID] = u
	}
	if len(users) != len(s.Truth.Users) {
		t.Errorf("%d users exported, ground truth has %d", len(users), len(s.Truth.Users))
	}
	for _, tu := range s.Truth.Users {
		u, ok := users[tu.UserID]
		if !ok {
			t.Errorf("user %s missing", tu.UserID)
			continue
		}
		if u.Admin != tu.Admin || u.Deactivated != tu.Deactivated || u.DisplayName != tu.DisplayName || u.AvatarURL != tu.AvatarURL {
			t.Errorf("user %s: got admin=%v deactivated=%v name=%q avatar=%q, want %v %v %q %q", tu.UserID,
				u.Admin, u.Deactivated, u.DisplayName, u.AvatarURL, tu.Admin, tu.Deactivated, tu.DisplayName, tu.AvatarURL)
		}
		if s.PasswordsVerify && tu.Password != "" {
			if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(tu.Password)); err != nil {
				t.Errorf("user %s: the fixture password does not verify against the exported hash: %v", tu.UserID, err)
			}
		}
	}
}

// state resolves the full state of a snapshot from the collected snapshots.
func state(snaps map[uint64]*archive.StateSnapshot, id uint64) map[[2]string]string {
	var chain []*archive.StateSnapshot
	for seen := map[uint64]bool{}; id != 0 && !seen[id]; {
		seen[id] = true
		sn, ok := snaps[id]
		if !ok {
			break
		}
		chain = append(chain, sn)
		id = sn.Parent
	}
	out := map[[2]string]string{}
	for i := len(chain) - 1; i >= 0; i-- {
		for _, k := range chain[i].Remove {
			delete(out, [2]string{k.Type, k.StateKey})
		}
		for _, e := range chain[i].Set {
			out[[2]string{e.Type, e.StateKey}] = e.EventID
		}
	}
	return out
}

func (s Suite) checkRooms(t *testing.T, c *collector) {
	snaps := map[uint64]*archive.StateSnapshot{}
	for _, r := range c.of(archive.SectionStateSnapshots) {
		sn := r.(*archive.StateSnapshot)
		snaps[sn.ID] = sn
	}
	events := eventsByID(c)
	rooms := map[string]*archive.Room{}
	for _, r := range c.of(archive.SectionRooms) {
		room := r.(*archive.Room)
		rooms[room.RoomID] = room
	}
	members := map[string]map[string]*archive.Membership{}
	for _, r := range c.of(archive.SectionMemberships) {
		m := r.(*archive.Membership)
		if members[m.RoomID] == nil {
			members[m.RoomID] = map[string]*archive.Membership{}
		}
		members[m.RoomID][m.UserID] = m
	}
	if len(rooms) != len(s.Truth.Rooms) {
		t.Errorf("%d rooms exported, ground truth has %d", len(rooms), len(s.Truth.Rooms))
	}
	for _, tr := range s.Truth.Rooms {
		room, ok := rooms[tr.RoomID]
		if !ok {
			t.Errorf("room %s (%s) missing", tr.RoomID, tr.Label)
			continue
		}
		if room.Version != tr.Version || room.Creator != tr.Creator || room.Public != tr.InDirectory {
			t.Errorf("room %s: version %q creator %q public %v, want %q %q %v", tr.Label, room.Version, room.Creator, room.Public, tr.Version, tr.Creator, tr.InDirectory)
		}
		aliases := slices.Clone(room.Aliases)
		sort.Strings(aliases)
		want := slices.Clone(tr.Aliases)
		sort.Strings(want)
		if !slices.Equal(aliases, want) {
			t.Errorf("room %s: aliases %v, want %v", tr.Label, aliases, want)
		}
		cur := state(snaps, room.CurrentState)
		content := func(typ, field string) string {
			ev, ok := events[cur[[2]string{typ, ""}]]
			if !ok {
				return ""
			}
			var c map[string]any
			json.Unmarshal(ev.content, &c)
			v, _ := c[field].(string)
			return v
		}
		for _, chk := range []struct{ got, want, what string }{
			{content("m.room.name", "name"), tr.Name, "name"},
			{content("m.room.topic", "topic"), tr.Topic, "topic"},
			{content("m.room.join_rules", "join_rule"), tr.JoinRule, "join rule"},
			{content("m.room.history_visibility", "history_visibility"), tr.HistoryVisibility, "history visibility"},
		} {
			if chk.got != chk.want {
				t.Errorf("room %s: current %s %q, want %q", tr.Label, chk.what, chk.got, chk.want)
			}
		}
		if tr.CanonicalAlias != nil && content("m.room.canonical_alias", "alias") != *tr.CanonicalAlias {
			t.Errorf("room %s: canonical alias %q, want %q", tr.Label, content("m.room.canonical_alias", "alias"), *tr.CanonicalAlias)
		}
		if tr.Encryption != nil && content("m.room.encryption", "algorithm") != *tr.Encryption {
			t.Errorf("room %s: encryption %q, want %q", tr.Label, content("m.room.encryption", "algorithm"), *tr.Encryption)
		}
		if len(members[tr.RoomID]) != len(tr.Members) {
			t.Errorf("room %s: %d memberships, want %d", tr.Label, len(members[tr.RoomID]), len(tr.Members))
		}
		for user, want := range tr.Members {
			m, ok := members[tr.RoomID][user]
			if !ok || m.Membership != want.Membership || m.Sender != want.Sender {
				t.Errorf("room %s: membership of %s = %+v, want %+v", tr.Label, user, m, want)
				continue
			}
			ev, ok := events[cur[[2]string{"m.room.member", user}]]
			if !ok || ev.membership != want.Membership || cur[[2]string{"m.room.member", user}] != m.EventID {
				t.Errorf("room %s: current state member event of %s disagrees with the membership record", tr.Label, user)
			}
		}
	}
}

type eventInfo struct {
	rec        *archive.Event
	typ        string
	sender     string
	content    json.RawMessage
	membership string
}

func eventsByID(c *collector) map[string]eventInfo {
	out := map[string]eventInfo{}
	for _, r := range c.of(archive.SectionEvents) {
		e := r.(*archive.Event)
		var ev struct {
			Type    string          `json:"type"`
			Sender  string          `json:"sender"`
			Content json.RawMessage `json:"content"`
		}
		json.Unmarshal(e.JSON, &ev)
		info := eventInfo{rec: e, typ: ev.Type, sender: ev.Sender, content: ev.Content}
		var m struct {
			Membership string `json:"membership"`
		}
		json.Unmarshal(ev.Content, &m)
		info.membership = m.Membership
		out[e.EventID] = info
	}
	return out
}

func (s Suite) checkEvents(t *testing.T, c *collector) {
	events := eventsByID(c)
	if len(events) != s.Truth.EventsTotal || len(c.of(archive.SectionEvents)) != s.Truth.EventsTotal {
		t.Errorf("%d events exported (%d distinct), ground truth has %d", len(c.of(archive.SectionEvents)), len(events), s.Truth.EventsTotal)
	}
	byRoomType := map[string]map[string]int{}
	bySender := map[string]map[string]int{}
	for _, e := range events {
		room := e.rec.RoomID
		if byRoomType[room] == nil {
			byRoomType[room], bySender[room] = map[string]int{}, map[string]int{}
		}
		byRoomType[room][e.typ]++
		if e.typ == "m.room.message" {
			bySender[room][e.sender]++
		}
	}
	for room, types := range s.Truth.EventsByRoomAndType {
		if !reflect.DeepEqual(byRoomType[room], types) {
			t.Errorf("room %s: events by type %v, want %v", room, byRoomType[room], types)
		}
	}
	for room, senders := range s.Truth.MessagesByRoomSender {
		if !reflect.DeepEqual(bySender[room], senders) {
			t.Errorf("room %s: messages by sender %v, want %v", room, bySender[room], senders)
		}
	}
	relates := func(id string) (relType, target string, ok bool) {
		e, found := events[id]
		if !found {
			return "", "", false
		}
		var c struct {
			RelatesTo struct {
				RelType   string `json:"rel_type"`
				EventID   string `json:"event_id"`
				Key       string `json:"key"`
				InReplyTo struct {
					EventID string `json:"event_id"`
				} `json:"m.in_reply_to"`
			} `json:"m.relates_to"`
		}
		json.Unmarshal(e.content, &c)
		if c.RelatesTo.RelType == "" {
			return "reply", c.RelatesTo.InReplyTo.EventID, true
		}
		return c.RelatesTo.RelType, c.RelatesTo.EventID, true
	}
	for _, ed := range s.Truth.Edits {
		if rt, target, ok := relates(ed.EventID); !ok || rt != "m.replace" || target != ed.Replaces {
			t.Errorf("edit %s: exported as %q -> %q (found %v), want m.replace -> %s", ed.EventID, rt, target, ok, ed.Replaces)
		}
	}
	for _, rp := range s.Truth.Replies {
		e, ok := events[rp.EventID]
		if !ok || !bytes.Contains(e.content, []byte(rp.InReplyTo)) {
			t.Errorf("reply %s missing or not replying to %s", rp.EventID, rp.InReplyTo)
		}
	}
	for _, th := range s.Truth.Threads {
		for _, id := range th.Replies {
			if rt, target, ok := relates(id); !ok || rt != "m.thread" || target != th.Root {
				t.Errorf("thread reply %s: %q -> %q, want m.thread -> %s", id, rt, target, th.Root)
			}
		}
	}
	redacted := map[string]bool{}
	for _, r := range s.Truth.Redactions {
		redacted[r.Redacts] = true
		e, ok := events[r.Redacts]
		if !ok {
			t.Errorf("redacted event %s missing", r.Redacts)
			continue
		}
		if !e.rec.Redacted {
			t.Errorf("event %s was redacted by %s but is exported unredacted", r.Redacts, r.EventID)
		}
		if e.typ == "m.room.message" && (bytes.Contains(e.content, []byte(`"body"`)) || len(e.rec.OriginalJSON) > 0 && !e.rec.Redacted) {
			t.Errorf("redacted event %s still carries its content: %s", r.Redacts, e.content)
		}
		if e.typ == "m.reaction" && bytes.Contains(e.content, []byte("m.relates_to")) {
			// m.relates_to is not kept by any room version's redaction.
			t.Errorf("redacted reaction %s keeps m.relates_to", r.Redacts)
		}
	}
	for _, re := range s.Truth.Reactions {
		if re.Redacted || redacted[re.EventID] {
			continue
		}
		e, ok := events[re.EventID]
		if !ok || e.typ != "m.reaction" || !bytes.Contains(e.content, []byte(re.Target)) {
			t.Errorf("reaction %s missing or not on %s", re.EventID, re.Target)
			continue
		}
		var c struct {
			RelatesTo struct {
				Key string `json:"key"`
			} `json:"m.relates_to"`
		}
		json.Unmarshal(e.content, &c)
		if c.RelatesTo.Key != re.Key {
			t.Errorf("reaction %s key %q, want %q", re.EventID, c.RelatesTo.Key, re.Key)
		}
	}
	reds := map[string]string{}
	for _, r := range c.of(archive.SectionRedactions) {
		rd := r.(*archive.Redaction)
		reds[rd.EventID] = rd.RedactedBy
	}
	for _, r := range s.Truth.Redactions {
		if reds[r.Redacts] != r.EventID {
			t.Errorf("redaction record for %s: %q, want %s", r.Redacts, reds[r.Redacts], r.EventID)
		}
	}
	s.checkSignatures(t, c)
}

// checkSignatures verifies every event against the exported server keys,
// and the content hash of every unredacted one.
func (s Suite) checkSignatures(t *testing.T, c *collector) {
	keys := map[[2]string]ed25519.PublicKey{}
	for _, r := range c.of(archive.SectionServerKeys) {
		k := r.(*archive.ServerKey)
		pub, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(k.PublicKey, "="))
		if err == nil {
			keys[[2]string{k.ServerName, k.KeyID}] = pub
		}
	}
	versions := map[string]string{}
	for _, r := range c.of(archive.SectionRooms) {
		versions[r.(*archive.Room).RoomID] = r.(*archive.Room).Version
	}
	bad := 0
	for _, r := range c.of(archive.SectionEvents) {
		e := r.(*archive.Event)
		v, err := matrixevent.LookupRoomVersion(versions[e.RoomID])
		if err != nil {
			t.Errorf("event %s: %v", e.EventID, err)
			continue
		}
		st, err := matrixevent.CheckSignatures(v, e.JSON, func(server, id string) (ed25519.PublicKey, bool) {
			k, ok := keys[[2]string{server, id}]
			return k, ok
		})
		if st != matrixevent.SignatureValid && matrixevent.ServerOf(eventSender(e.JSON)) == s.Truth.ServerName {
			bad++
			if bad < 5 {
				t.Errorf("event %s: signature %v (%v)", e.EventID, st, err)
			}
		}
		if !e.Redacted {
			if err := matrixevent.CheckContentHash(e.JSON); err != nil {
				t.Errorf("event %s: %v", e.EventID, err)
			}
		}
		if id, err := matrixevent.EventID(v, e.JSON); err != nil || id != e.EventID {
			t.Errorf("event %s: recomputed ID %s (%v)", e.EventID, id, err)
		}
	}
	if bad > 0 {
		t.Errorf("%d local events do not verify against the exported server key", bad)
	}
}

func eventSender(js []byte) string {
	var ev struct {
		Sender string `json:"sender"`
	}
	json.Unmarshal(js, &ev)
	return ev.Sender
}

func canon(t *testing.T, b []byte) string {
	out, err := canonicaljson.CanonicalJSON(bytes.Clone(b))
	if err != nil {
		t.Errorf("not JSON: %s", b)
		return string(b)
	}
	return string(out)
}

func (s Suite) checkAccountData(t *testing.T, c *collector) {
	got := map[[3]string]string{}
	var pushRules = map[string]json.RawMessage{}
	for _, r := range c.of(archive.SectionAccountData) {
		a := r.(*archive.AccountData)
		got[[3]string{a.UserID, a.RoomID, a.Type}] = canon(t, a.Content)
		if a.Type == "m.push_rules" {
			pushRules[a.UserID] = a.Content
		}
	}
	for _, want := range append(slices.Clone(s.Truth.AccountData), s.Truth.RoomAccountData...) {
		if g, ok := got[[3]string{want.UserID, want.RoomID, want.Type}]; !ok || g != canon(t, want.Content) {
			t.Errorf("account data %s %s %s = %s, want %s", want.UserID, want.RoomID, want.Type, g, want.Content)
		}
	}
	tags := map[[2]string]map[string]json.RawMessage{}
	for _, tg := range s.Truth.Tags {
		k := [2]string{tg.UserID, tg.RoomID}
		if tags[k] == nil {
			tags[k] = map[string]json.RawMessage{}
		}
		tags[k][tg.Tag] = tg.Content
	}
	for k, want := range tags {
		b, _ := json.Marshal(map[string]any{"tags": want})
		if g := got[[3]string{k[0], k[1], "m.tag"}]; g != canon(t, b) {
			t.Errorf("m.tag of %s in %s = %s, want %s", k[0], k[1], g, b)
		}
	}
	for _, pr := range s.Truth.PushRules {
		rs, ok := pushRules[pr.UserName]
		if !ok {
			t.Errorf("no m.push_rules for %s", pr.UserName)
			continue
		}
		kind, id := splitRuleID(pr.RuleID)
		rule := findRule(rs, kind, id)
		if rule == nil {
			t.Errorf("push rule %s of %s missing from the effective rules", pr.RuleID, pr.UserName)
			continue
		}
		if canonList(t, rule.Actions) != canonList(t, pr.Actions) {
			t.Errorf("push rule %s of %s: actions %s, want %s", pr.RuleID, pr.UserName, canonList(t, rule.Actions), canonList(t, pr.Actions))
		}
	}
	for _, en := range s.Truth.PushRulesEnable {
		kind, id := splitRuleID(en.RuleID)
		rule := findRule(pushRules[en.UserName], kind, id)
		if rule == nil || rule.Enabled != (en.Enabled == 1) {
			t.Errorf("push rule %s of %s: enabled %v, want %v", en.RuleID, en.UserName, rule != nil && rule.Enabled, en.Enabled == 1)
		}
	}
}

type rule struct {
	RuleID  string            `json:"rule_id"`
	Enabled bool              `json:"enabled"`
	Actions []json.RawMessage `json:"actions"`
}

func splitRuleID(id string) (kind, rest string) {
	parts := strings.SplitN(id, "/", 3)
	if len(parts) != 3 {
		return "", id
	}
	return parts[1], parts[2]
}

func findRule(rs json.RawMessage, kind, id string) *rule {
	var doc struct {
		Global map[string][]rule `json:"global"`
	}
	if json.Unmarshal(rs, &doc) != nil {
		return nil
	}
	for _, r := range doc.Global[kind] {
		if r.RuleID == id {
			return &r
		}
	}
	return nil
}

func canonList(t *testing.T, l []json.RawMessage) string {
	b, _ := json.Marshal(l)
	return canon(t, b)
}

func (s Suite) checkDevicesAndKeys(t *testing.T, c *collector, withOTKs bool) {
	devices := map[[2]string]*archive.Device{}
	for _, r := range c.of(archive.SectionDevices) {
		d := r.(*archive.Device)
		devices[[2]string{d.UserID, d.DeviceID}] = d
	}
	want := 0
	for _, td := range s.Truth.Devices {
		if td.Hidden {
			if _, ok := devices[[2]string{td.UserID, td.DeviceID}]; ok {
				t.Errorf("cross-signing key %s of %s exported as a device", td.DeviceID, td.UserID)
			}
			continue
		}
		want++
		d, ok := devices[[2]string{td.UserID, td.DeviceID}]
		if !ok || d.DisplayName != td.DisplayName {
			t.Errorf("device %s %s: %+v, want display name %q", td.UserID, td.DeviceID, d, td.DisplayName)
		}
	}
	if len(devices) != want {
		t.Errorf("%d devices exported, want %d", len(devices), want)
	}
	keys := map[string][]*archive.E2EEKey{}
	for _, r := range c.of(archive.SectionE2EEKeys) {
		k := r.(*archive.E2EEKey)
		keys[k.Kind] = append(keys[k.Kind], k)
	}
	for device, dk := range s.Truth.E2E.DeviceKeys {
		found := false
		for _, k := range keys[archive.KeyKindDevice] {
			if k.DeviceID == device && k.UserID == dk.UserID && bytes.Contains(k.JSON, []byte(dk.Ed25519)) && bytes.Contains(k.JSON, []byte(dk.Curve25519)) {
				found = true
			}
		}
		if !found {
			t.Errorf("device keys of %s %s missing or wrong", dk.UserID, device)
		}
		if dk.FallbackKey {
			found = false
			for _, k := range keys[archive.KeyKindFallback] {
				found = found || k.DeviceID == device && k.UserID == dk.UserID
			}
			if !found {
				t.Errorf("fallback key of %s %s missing", dk.UserID, device)
			}
		}
	}
	for user, usages := range s.Truth.E2E.CrossSigning {
		for usage, pub := range usages {
			found := false
			for _, k := range keys[archive.KeyKindCrossSigning] {
				found = found || k.UserID == user && k.Usage == usage && k.KeyID == "ed25519:"+pub && bytes.Contains(k.JSON, []byte(pub))
			}
			if !found {
				t.Errorf("cross-signing %s key of %s missing or wrong", usage, user)
			}
		}
	}
	if len(s.Truth.E2E.CrossSigning) > 0 && len(keys[archive.KeyKindSignature]) == 0 {
		t.Error("no cross-signing signatures exported")
	}
	otks := map[[2]string]int{}
	for _, k := range keys[archive.KeyKindOneTime] {
		otks[[2]string{k.UserID, k.DeviceID}]++
	}
	for _, r := range s.Truth.OneTimeKeysRemaining {
		k := [2]string{r.UserID, r.DeviceID}
		if withOTKs && otks[k] != r.Count {
			t.Errorf("one-time keys of %s %s: %d exported, want %d", r.UserID, r.DeviceID, otks[k], r.Count)
		}
		if !withOTKs {
			reported := false
			for _, o := range c.omissions {
				reported = reported || o.Code == "excluded_by_default" && o.Item == archive.SectionE2EEKeys+"#one_time" &&
					o.ID == r.UserID+" "+r.DeviceID && strings.HasPrefix(o.Detail, fmt.Sprint(r.Count)+" ")
			}
			if !reported || otks[k] != 0 {
				t.Errorf("one-time keys of %s %s: not reported as left out (or exported anyway)", r.UserID, r.DeviceID)
			}
		}
	}
	if b := s.Truth.E2E.Backup; b.UserID != "" {
		versions := map[string]bool{}
		for _, r := range c.of(archive.SectionBackupVersions) {
			v := r.(*archive.KeyBackupVersion)
			if v.UserID == b.UserID {
				versions[v.Version] = v.Deleted
			}
		}
		if deleted, ok := versions[b.Version]; !ok || deleted {
			t.Errorf("key backup version %s of %s missing or deleted", b.Version, b.UserID)
		}
		if deleted, ok := versions[b.DeletedVersion]; b.DeletedVersion != "" && (!ok || !deleted) {
			t.Errorf("deleted key backup version %s not exported as deleted", b.DeletedVersion)
		}
		sessions := map[[3]string]bool{}
		for _, r := range c.of(archive.SectionBackupSessions) {
			k := r.(*archive.KeyBackupSession)
			sessions[[3]string{k.RoomID, k.SessionID, k.Version}] = len(k.SessionData) > 0
		}
		for _, rk := range s.Truth.E2E.RoomKeys {
			if !sessions[[3]string{rk.RoomID, rk.SessionID, rk.Version}] {
				t.Errorf("backed-up session %s missing", rk.SessionID)
			}
		}
	}
}

func (s Suite) checkMedia(t *testing.T, c *collector) {
	media := map[string]*archive.Media{}
	for _, r := range c.of(archive.SectionMedia) {
		m := r.(*archive.Media)
		if m.Origin == s.Truth.ServerName {
			media[m.MediaID] = m
		}
	}
	if len(media) != len(s.Truth.Media) {
		t.Errorf("%d local media exported, want %d", len(media), len(s.Truth.Media))
	}
	for _, tm := range s.Truth.Media {
		m, ok := media[tm.MediaID]
		if !ok {
			t.Errorf("media %s missing", tm.MediaID)
			continue
		}
		if m.SHA256 != tm.SHA256 || m.Size != tm.Bytes || m.ContentType != tm.ContentType || m.UploadName != tm.UploadName || m.UserID != tm.Uploader {
			t.Errorf("media %s: %+v, want sha %s size %d type %s name %s uploader %s", tm.MediaID, m, tm.SHA256, tm.Bytes, tm.ContentType, tm.UploadName, tm.Uploader)
		}
		if b, ok := c.blobs[m.Path]; !ok || b.sum != tm.SHA256 {
			t.Errorf("media %s: file not exported byte for byte (%+v)", tm.MediaID, b)
		}
	}
	for _, th := range s.Truth.Thumbnails {
		m, ok := media[th.MediaID]
		if !ok {
			continue
		}
		found := false
		for _, mt := range m.Thumbnails {
			if mt.Width == th.Width && mt.Height == th.Height && mt.Method == th.Method && mt.ContentType == th.Type {
				b, ok := c.blobs[mt.Path]
				found = ok && b.size == th.Bytes && mt.Size == th.Bytes
			}
		}
		if !found {
			t.Errorf("thumbnail %dx%d %s of %s missing or wrong size", th.Width, th.Height, th.Method, th.MediaID)
		}
	}
}
