// Package fixturecheck is a test rig: it checks a homeserver restored or
// migrated from the real Synapse fixture against the fixture's ground truth
// (testdata/synapse-1.67/ground_truth.json) and the archive, through the
// client-server API only. The Dendrite migration and the Synapse restore
// run the same checks.
package fixturecheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// Login logs every user of the ground truth in with the fixture password
// and returns their tokens; a deactivated user must be refused.
func Login(t *testing.T, c *clientview.Client, truth *sourcetest.GroundTruth) map[string]string {
	t.Helper()
	tokens := map[string]string{}
	for _, u := range truth.Users {
		tok, err := c.Login(context.Background(), strings.TrimPrefix(strings.SplitN(u.UserID, ":", 2)[0], "@"), u.Password)
		if u.Deactivated {
			if err == nil {
				t.Errorf("deactivated %s logged in", u.UserID)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s logs in with the fixture password: %v", u.UserID, err)
		}
		tokens[u.UserID] = tok
	}
	return tokens
}

// Logins are the ground truth's users with the seed's passwords and their
// account data types: what clientview.Capture looks through.
func Logins(truth *sourcetest.GroundTruth) []clientview.Login {
	var out []clientview.Login
	for _, u := range truth.Users {
		local := strings.TrimPrefix(strings.SplitN(u.UserID, ":", 2)[0], "@")
		l := clientview.Login{Localpart: local, Password: seed.Password(local)}
		for _, a := range truth.AccountData {
			if a.UserID == u.UserID {
				l.AccountDataTypes = append(l.AccountDataTypes, a.Type)
			}
		}
		out = append(out, l)
	}
	return out
}

// MediaURIs are the ground truth's media as mxc:// URIs.
func MediaURIs(truth *sourcetest.GroundTruth) []string {
	var out []string
	for _, m := range truth.Media {
		out = append(out, "mxc://"+truth.ServerName+"/"+m.MediaID)
	}
	return out
}

// ArchiveEvents reads the timeline events of each room from the archive,
// in archive order: what /messages must show.
func ArchiveEvents(t *testing.T, r *archive.Reader) map[string][]archive.Event {
	t.Helper()
	out := map[string][]archive.Event{}
	err := archive.ReadSection(context.Background(), r, archive.SectionEvents, func(e *archive.Event) error {
		if !e.Outlier && e.Rejected == "" && !e.SoftFailed {
			out[e.RoomID] = append(out[e.RoomID], *e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func Rooms(t *testing.T, c *clientview.Client, truth *sourcetest.GroundTruth, tokens map[string]string, events map[string][]archive.Event) {
	ctx := context.Background()
	joined, invited := map[string][]string{}, map[string][]string{}
	for _, room := range truth.Rooms {
		for user, m := range room.Members {
			switch m.Membership {
			case "join":
				joined[user] = append(joined[user], room.RoomID)
			case "invite":
				invited[user] = append(invited[user], room.RoomID)
			}
		}
	}
	for user, tok := range tokens {
		var sync struct {
			Rooms struct {
				Join   map[string]json.RawMessage `json:"join"`
				Invite map[string]json.RawMessage `json:"invite"`
			} `json:"rooms"`
		}
		if err := c.Get(ctx, tok, "/_matrix/client/v3/sync?timeout=0", &sync); err != nil {
			t.Fatal(err)
		}
		for _, cmp := range []struct {
			what      string
			got, want []string
		}{{"joined", keys(sync.Rooms.Join), joined[user]}, {"invited to", keys(sync.Rooms.Invite), invited[user]}} {
			sort.Strings(cmp.want)
			if !slices.Equal(cmp.got, cmp.want) && (len(cmp.got) > 0 || len(cmp.want) > 0) {
				t.Errorf("%s is %s %v, ground truth %v", user, cmp.what, cmp.got, cmp.want)
			}
		}
	}
	for _, room := range truth.Rooms {
		tok := tokens[room.Creator]
		if tok == "" || room.Members[room.Creator].Membership != "join" {
			t.Errorf("room %s: its creator %s cannot look at it", room.RoomID, room.Creator)
			continue
		}
		// State: name, topic, rules and every membership of the ground truth.
		for _, s := range []struct {
			typ, field string
			want       any
		}{{"m.room.name", "name", room.Name}, {"m.room.topic", "topic", room.Topic},
			{"m.room.join_rules", "join_rule", room.JoinRule}, {"m.room.history_visibility", "history_visibility", room.HistoryVisibility}} {
			if s.want == nil || s.want == "" {
				continue
			}
			got, err := c.StateContent(ctx, tok, room.RoomID, s.typ, "")
			if err != nil || fmt.Sprint(got[s.field]) != fmt.Sprint(s.want) {
				t.Errorf("room %s: %s.%s = %v (%v), ground truth %v", room.RoomID, s.typ, s.field, got[s.field], err, s.want)
			}
		}
		for user, m := range room.Members {
			got, err := c.StateContent(ctx, tok, room.RoomID, "m.room.member", user)
			if err != nil || got["membership"] != m.Membership {
				t.Errorf("room %s: %s is %v (%v), ground truth %s", room.RoomID, user, got["membership"], err, m.Membership)
			}
		}
		// Timeline: every event, in order, with its ID and content.
		tl, err := c.Timeline(ctx, tok, room.RoomID)
		if err != nil {
			t.Fatal(err)
		}
		want := events[room.RoomID]
		if len(tl) != len(want) {
			t.Errorf("room %s: /messages has %d events, the archive %d", room.RoomID, len(tl), len(want))
		}
		byType := map[string]int{}
		for i, e := range tl {
			byType[e.Type]++
			if i >= len(want) {
				continue
			}
			var w struct {
				Type    string          `json:"type"`
				Content json.RawMessage `json:"content"`
			}
			json.Unmarshal(want[i].JSON, &w)
			if e.EventID != want[i].EventID || e.Type != w.Type || !sameJSON(clientContent(e.Content, e.Type), clientContent(w.Content, w.Type)) {
				t.Errorf("room %s: event %d is %s %s %s, the archive has %s %s %s", room.RoomID, i, e.EventID, e.Type, e.Content, want[i].EventID, w.Type, w.Content)
				break
			}
		}
		t.Logf("room %s: %d events via /messages, %d in the archive, %d types in the ground truth", room.RoomID, len(tl), len(want), len(truth.EventsByRoomAndType[room.RoomID]))
		for typ, n := range truth.EventsByRoomAndType[room.RoomID] {
			if byType[typ] != n {
				t.Errorf("room %s: %d %s events via /messages, ground truth %d (all types seen: %v)", room.RoomID, byType[typ], typ, n, byType)
			}
		}
	}
}

// Search checks the server's search index through /search: in every room
// of the ground truth, a search for its name finds its m.room.name event
// and a search for its topic its m.room.topic event, as the room's
// creator. Synapse indexes names (and messages) in a background update
// that may still run when the server starts, so it asks again for up to
// a minute before it fails.
func Search(t *testing.T, c *clientview.Client, truth *sourcetest.GroundTruth, tokens map[string]string) {
	t.Helper()
	ctx := context.Background()
	type query struct{ tok, room, typ, key, field, want string }
	var pending []query
	for _, room := range truth.Rooms {
		tok := tokens[room.Creator]
		if tok == "" || room.Members[room.Creator].Membership != "join" {
			continue
		}
		if room.Name != "" {
			pending = append(pending, query{tok, room.RoomID, "m.room.name", "content.name", "name", room.Name})
		}
		if room.Topic != "" {
			pending = append(pending, query{tok, room.RoomID, "m.room.topic", "content.topic", "topic", room.Topic})
		}
	}
	if len(pending) == 0 {
		t.Fatal("the ground truth has no room with a name or topic to search for")
	}
	for try := 0; ; try++ {
		var missing []string
		var left []query
		for _, q := range pending {
			found, err := c.Search(ctx, q.tok, q.room, q.want, q.key)
			if err != nil {
				t.Fatalf("search %s for %q: %v", q.room, q.want, err)
			}
			if !slices.ContainsFunc(found, func(f clientview.Found) bool { return f.Type == q.typ && f.Content[q.field] == q.want }) {
				left = append(left, q)
				missing = append(missing, fmt.Sprintf("room %s: a search for its %s %q finds no %s event (found %d events)", q.room, q.field, q.want, q.typ, len(found)))
			}
		}
		if pending = left; len(pending) == 0 {
			return
		}
		if try == 60 {
			for _, m := range missing {
				t.Error(m)
			}
			return
		}
		time.Sleep(time.Second)
	}
}

// clientContent is an event's content less "redacts", which Synapse copies
// into a redaction's content in every room version (MSC2174's form) and
// which a client may or may not have put there itself.
func clientContent(content json.RawMessage, typ string) json.RawMessage {
	if typ != "m.room.redaction" {
		return content
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(content, &c) != nil {
		return content
	}
	delete(c, "redacts")
	out, _ := json.Marshal(c)
	return out
}

func Users(t *testing.T, c *clientview.Client, truth *sourcetest.GroundTruth, tokens map[string]string) {
	ctx := context.Background()
	for _, u := range truth.Users {
		tok := tokens[u.UserID]
		if tok == "" {
			continue
		}
		var p struct {
			DisplayName string `json:"displayname"`
			AvatarURL   string `json:"avatar_url"`
		}
		if err := c.Get(ctx, tok, "/_matrix/client/v3/profile/"+url.PathEscape(u.UserID), &p); err != nil || p.DisplayName != u.DisplayName || p.AvatarURL != u.AvatarURL {
			t.Errorf("profile of %s: %+v (%v), ground truth %q %q", u.UserID, p, err, u.DisplayName, u.AvatarURL)
		}
	}
	for _, a := range append(append([]sourcetest.TruthAccountData{}, truth.AccountData...), truth.RoomAccountData...) {
		tok := tokens[a.UserID]
		if tok == "" {
			continue
		}
		path := "/_matrix/client/v3/user/" + url.PathEscape(a.UserID) + "/account_data/" + url.PathEscape(a.Type)
		if a.RoomID != "" {
			path = "/_matrix/client/v3/user/" + url.PathEscape(a.UserID) + "/rooms/" + url.PathEscape(a.RoomID) + "/account_data/" + url.PathEscape(a.Type)
		}
		var got json.RawMessage
		if err := c.Get(ctx, tok, path, &got); err != nil || !sameJSON(got, a.Content) {
			t.Errorf("account data %s %s %s = %s (%v), ground truth %s", a.UserID, a.RoomID, a.Type, got, err, a.Content)
		}
	}
	for _, tag := range truth.Tags {
		var got struct {
			Tags map[string]json.RawMessage `json:"tags"`
		}
		if err := c.Get(ctx, tokens[tag.UserID], "/_matrix/client/v3/user/"+url.PathEscape(tag.UserID)+"/rooms/"+url.PathEscape(tag.RoomID)+"/tags", &got); err != nil || !sameJSON(got.Tags[tag.Tag], tag.Content) {
			t.Errorf("tag %s of %s in %s = %s (%v), ground truth %s", tag.Tag, tag.UserID, tag.RoomID, got.Tags[tag.Tag], err, tag.Content)
		}
	}
	for _, rule := range truth.PushRules {
		var got struct {
			Actions    []json.RawMessage `json:"actions"`
			Conditions []json.RawMessage `json:"conditions"`
			Pattern    string            `json:"pattern"`
		}
		err := c.Get(ctx, tokens[rule.UserName], "/_matrix/client/v3/pushrules/"+rule.RuleID, &got)
		if err != nil || !sameJSON(mustJSON(got.Actions), mustJSON(rule.Actions)) {
			t.Errorf("push rule %s of %s: %+v (%v), ground truth actions %s", rule.RuleID, rule.UserName, got, err, mustJSON(rule.Actions))
		}
	}
	for _, e := range truth.PushRulesEnable {
		var got struct {
			Enabled bool `json:"enabled"`
		}
		err := c.Get(ctx, tokens[e.UserName], "/_matrix/client/v3/pushrules/"+e.RuleID+"/enabled", &got)
		if err != nil || got.Enabled != (e.Enabled == 1) {
			t.Errorf("push rule %s of %s enabled = %v (%v), ground truth %d", e.RuleID, e.UserName, got.Enabled, err, e.Enabled)
		}
	}
	var anyTok string
	for _, tok := range tokens {
		anyTok = tok
	}
	for _, m := range truth.Media {
		sum, err := c.Download(ctx, anyTok, "mxc://"+truth.ServerName+"/"+m.MediaID)
		if err != nil || sum != m.SHA256 {
			t.Errorf("media %s: sha256 %s (%v), ground truth %s", m.MediaID, sum, err, m.SHA256)
		}
	}
}

// CrossSigning: /keys/query shows every user's cross-signing keys of
// the ground truth, the self-signing and user-signing keys signed by the
// master key, as clients need them to trust each other's devices.
func CrossSigning(t *testing.T, c *clientview.Client, truth *sourcetest.GroundTruth, tokens map[string]string) {
	var users []string
	for u := range truth.E2E.CrossSigning {
		users = append(users, u)
	}
	if len(users) == 0 {
		t.Fatal("the ground truth has no cross-signing keys to check")
	}
	type keyObj struct {
		Keys       map[string]string            `json:"keys"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	for user, usages := range truth.E2E.CrossSigning {
		// A user-signing key is shown only to its owner: each user asks.
		raw, err := c.KeysQuery(context.Background(), tokens[user], []string{user})
		if err != nil {
			t.Fatal(err)
		}
		var res map[string]map[string]keyObj
		json.Unmarshal(raw, &res)
		master := usages["master"]
		for usage, pub := range usages {
			k := res[usage+"_keys"][user]
			if k.Keys["ed25519:"+pub] != pub {
				t.Errorf("%s %s key: %+v, ground truth %s", user, usage, k, pub)
				continue
			}
			if usage != "master" && k.Signatures[user]["ed25519:"+master] == "" {
				t.Errorf("%s %s key is not signed by the master key: %+v", user, usage, k)
			}
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
