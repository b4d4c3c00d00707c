package synapse

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/pushrules"
	ssource "github.com/ferry-matrix/ferry/source/synapse"
)

// canonical re-encodes JSON with sorted keys, for comparison.
func canonical(t *testing.T, data []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// The real fixture's account data, tags and filters come back: each user
// reads them through the client-server API as before, and the ignored user
// list is in force.
func TestRestoredAccountData(t *testing.T) {
	ctx := context.Background()
	r := exportFixture(t, "synapse-1.67", source.Options{})
	s := testenv.NewSynapse(t, r.Core().ServerName)
	counts := restoreSlices(t, s, r, restoreUsers, restoreAccountData, restoreFilters)
	s.Start(t)

	tokens := map[string]string{}
	token := func(userID string) string {
		if tokens[userID] == "" {
			localpart := strings.TrimPrefix(strings.SplitN(userID, ":", 2)[0], "@")
			tok, code, err := s.Login(localpart, localpart+"-Fixtur3pw")
			if code != 200 {
				t.Fatalf("login %s: %d %v", userID, code, err)
			}
			tokens[userID] = tok
		}
		return tokens[userID]
	}
	checked, pushChecks := 0, 0
	err := archive.ReadSection(ctx, r, archive.SectionAccountData, func(a *archive.AccountData) error {
		if a.Type == "m.push_rules" {
			// What the user changed (their own rules, changed defaults,
			// flags), as Synapse serves it; Synapse's own defaults differ in
			// form from the spec's, and are the target's to keep.
			var rs pushrules.Ruleset
			if err := json.Unmarshal(a.Content, &rs); err != nil {
				return err
			}
			stored, enabled, err := pushrules.Changes(a.UserID, rs)
			if err != nil {
				return err
			}
			for _, rule := range stored {
				var got pushrules.Rule
				path := "/_matrix/client/v3/pushrules/global/" + rule.Kind + "/" + url.PathEscape(rule.RuleID)
				if code := get(t, s, token(a.UserID), path, &got); code != 200 {
					t.Errorf("push rule %s/%s of %s: HTTP %d", rule.Kind, rule.RuleID, a.UserID, code)
				} else if canonical(t, mustMarshal(got.Actions)) != canonical(t, mustMarshal(rule.Actions)) {
					t.Errorf("push rule %s/%s of %s: actions %s, want %s", rule.Kind, rule.RuleID, a.UserID, mustMarshal(got.Actions), mustMarshal(rule.Actions))
				}
				pushChecks++
			}
			for key, on := range enabled {
				var got struct {
					Enabled bool `json:"enabled"`
				}
				if code := get(t, s, token(a.UserID), "/_matrix/client/v3/pushrules/global/"+key+"/enabled", &got); code != 200 || got.Enabled != on {
					t.Errorf("push rule %s of %s: HTTP %d, enabled %v, want %v", key, a.UserID, code, got.Enabled, on)
				}
				pushChecks++
			}
			checked++
			return nil
		}
		uid := url.PathEscape(a.UserID)
		var got json.RawMessage
		switch {
		case a.Type == "m.tag":
			var tags struct {
				Tags json.RawMessage `json:"tags"`
			}
			if code := get(t, s, token(a.UserID), fmt.Sprintf("/_matrix/client/v3/user/%s/rooms/%s/tags", uid, url.PathEscape(a.RoomID)), &tags); code != 200 {
				t.Errorf("tags of %s in %s: HTTP %d", a.UserID, a.RoomID, code)
				return nil
			}
			got, _ = json.Marshal(map[string]json.RawMessage{"tags": tags.Tags})
		case a.RoomID == "":
			if code := get(t, s, token(a.UserID), fmt.Sprintf("/_matrix/client/v3/user/%s/account_data/%s", uid, url.PathEscape(a.Type)), &got); code != 200 {
				t.Errorf("account data %s of %s: HTTP %d", a.Type, a.UserID, code)
				return nil
			}
		default:
			if code := get(t, s, token(a.UserID), fmt.Sprintf("/_matrix/client/v3/user/%s/rooms/%s/account_data/%s", uid, url.PathEscape(a.RoomID), url.PathEscape(a.Type)), &got); code != 200 {
				t.Errorf("room account data %s of %s in %s: HTTP %d", a.Type, a.UserID, a.RoomID, code)
				return nil
			}
		}
		if canonical(t, got) != canonical(t, a.Content) {
			t.Errorf("%s of %s in %q: %s, want %s", a.Type, a.UserID, a.RoomID, got, a.Content)
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// INVENTORY.md: 7 global and more than 5 room account data items.
	// The fixture's users made 5 push rules and changed 1 flag (ground_truth.json).
	if checked < 12 || int64(checked) != counts[1] || pushChecks != 6 {
		t.Fatalf("checked %d account data records (%d push rule changes), restored %d", checked, pushChecks, counts[1])
	}

	filters := 0
	archive.ReadSection(ctx, r, archive.SectionFilters, func(f *archive.Filter) error {
		var got json.RawMessage
		if code := get(t, s, token(f.UserID), fmt.Sprintf("/_matrix/client/v3/user/%s/filter/%s", url.PathEscape(f.UserID), f.FilterID), &got); code != 200 {
			t.Errorf("filter %s of %s: HTTP %d", f.FilterID, f.UserID, code)
		} else if canonical(t, got) != canonical(t, bytes.TrimSpace(f.JSON)) {
			t.Errorf("filter %s of %s: %s, want %s", f.FilterID, f.UserID, got, f.JSON)
		}
		filters++
		return nil
	})
	if int64(filters) != counts[2] {
		t.Errorf("checked %d filters, restored %d", filters, counts[2])
	}
}

// A filter and a pusher a client stored on a live Synapse 1.160 come back
// (the fixtures hold neither): the filter under the same ID.
func TestRestoredFiltersAndPushersFromLiveSynapse(t *testing.T) {
	const server = "live.ferry.test"
	src := testenv.StartSynapse(t, server)
	tok := src.Register(t, "alice", "alice-Fixtur3pw", false)
	filter := `{"room":{"timeline":{"limit":7}},"presence":{"not_types":["*"]}}`
	req, _ := http.NewRequest("POST", src.URL+"/_matrix/client/v3/user/@alice:"+server+"/filter", strings.NewReader(filter))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		FilterID string `json:"filter_id"`
	}
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if created.FilterID == "" {
		t.Fatalf("no filter created: HTTP %d", resp.StatusCode)
	}
	pusher := map[string]any{"kind": "http", "app_id": "org.example.app", "pushkey": "a-push-key", "app_display_name": "Example",
		"device_display_name": "Alice's phone", "lang": "en", "data": map[string]any{"url": "http://127.0.0.1:9/_matrix/push/v1/notify", "format": "event_id_only"}}
	if code := post(t, src, tok, "/_matrix/client/v3/pushers/set", pusher, nil); code != 200 {
		t.Fatalf("set pusher: HTTP %d", code)
	}
	src.Stop()
	r := exportSynapse(t, ssource.Config{Database: src.DB, MediaStore: src.MediaStore, SigningKey: src.SigningKey, HomeserverConfig: src.Config}, source.Options{})

	dst := testenv.NewSynapse(t, server)
	counts := restoreSlices(t, dst, r, restoreUsers, restoreFilters, restorePushers)
	if counts[1] != 1 || counts[2] != 1 {
		t.Fatalf("restored %v, want a filter and a pusher", counts)
	}
	dst.Start(t)
	tok, code, err := dst.Login("alice", "alice-Fixtur3pw")
	if code != 200 {
		t.Fatalf("login: %d %v", code, err)
	}
	var got json.RawMessage
	if code := get(t, dst, tok, "/_matrix/client/v3/user/@alice:"+server+"/filter/"+created.FilterID, &got); code != 200 {
		t.Fatalf("filter %s: HTTP %d", created.FilterID, code)
	}
	if canonical(t, got) != canonical(t, []byte(filter)) {
		t.Fatalf("filter %s", got)
	}
	var pushers struct {
		Pushers []map[string]any `json:"pushers"`
	}
	if code := get(t, dst, tok, "/_matrix/client/v3/pushers", &pushers); code != 200 || len(pushers.Pushers) != 1 {
		t.Fatalf("pushers: HTTP %d, %v", code, pushers)
	}
	for k, want := range pusher {
		got, _ := json.Marshal(pushers.Pushers[0][k])
		w, _ := json.Marshal(want)
		if canonical(t, got) != canonical(t, w) {
			t.Errorf("pusher %s: %s, want %s", k, got, w)
		}
	}
}

func mustMarshal(v any) []byte {
	data, _ := json.Marshal(v)
	return data
}
