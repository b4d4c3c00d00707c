package pushrules

import (
	"encoding/json"
	"strings"
	"testing"
)

func raw(s string) []json.RawMessage {
	var out []json.RawMessage
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		panic(err)
	}
	return out
}

func ids(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.RuleID)
	}
	return out
}

// The order Synapse serves: the master rule, the user's override rules,
// the other default override rules; user rules before defaults elsewhere.
func TestEffectiveOrderAndChanges(t *testing.T) {
	stored := []Stored{
		{Kind: "override", RuleID: "org.example.mute_bots", Priority: 0, Conditions: raw(`[{"kind":"event_match","key":"content.msgtype","pattern":"m.notice"}]`), Actions: raw(`["dont_notify"]`)},
		{Kind: "content", RuleID: "kiln_kw", Pattern: "kiln", Actions: raw(`["notify"]`)},
		{Kind: "room", RuleID: "!r:x", Actions: raw(`["dont_notify"]`), Conditions: raw(`[{"kind":"event_match","key":"room_id","pattern":"!r:x"}]`)},
		{Kind: "underride", RuleID: ".m.rule.message", Default: true, Actions: raw(`["dont_notify"]`)},
	}
	rs, err := Effective("@nina:x", stored, map[string]bool{"override/.m.rule.roomnotif": false, "content/kiln_kw": true})
	if err != nil {
		t.Fatal(err)
	}
	o := ids(rs.Global["override"])
	if o[0] != ".m.rule.master" || o[1] != "org.example.mute_bots" || o[2] != ".m.rule.suppress_notices" {
		t.Errorf("override order %v", o)
	}
	c := rs.Global["content"]
	if c[0].RuleID != "kiln_kw" || c[0].Pattern != "kiln" || c[0].Conditions != nil || c[1].RuleID != ".m.rule.contains_user_name" || c[1].Pattern != "nina" {
		t.Errorf("content rules %+v", c)
	}
	if r := rs.Global["room"]; len(r) != 1 || r[0].Conditions != nil || r[0].Default {
		t.Errorf("room rules %+v (conditions are implied by the rule ID)", r)
	}
	for _, r := range rs.Global["underride"] {
		if r.RuleID == ".m.rule.message" && (string(r.Actions[0]) != `"dont_notify"` || !r.Default) {
			t.Errorf("changed default rule %+v", r)
		}
	}
	for _, r := range rs.Global["override"] {
		switch r.RuleID {
		case ".m.rule.roomnotif":
			if r.Enabled {
				t.Error("disabled default rule is enabled")
			}
		case ".m.rule.master":
			if r.Enabled {
				t.Error("the master rule is on by default")
			}
		case ".m.rule.invite_for_me":
			var c struct{ Pattern string }
			json.Unmarshal(r.Conditions[2], &c)
			if c.Pattern != "@nina:x" {
				t.Errorf("user ID not filled in: %s", r.Conditions[2])
			}
		}
	}
	if len(rs.Global["sender"]) != 0 || rs.Global["sender"] == nil {
		t.Error("empty kinds must be present as empty lists")
	}
}

func TestDefaultsParse(t *testing.T) {
	d, err := Defaults("@a:b")
	if err != nil {
		t.Fatal(err)
	}
	if len(d["override"]) < 10 || len(d["underride"]) != 5 || len(d["content"]) != 1 {
		t.Errorf("defaults %v", d)
	}
}

// Changes undoes Effective: a user's own rules in each kind, a default
// rule with other actions, and flags that differ from the defaults.
func TestChangesInvertsEffective(t *testing.T) {
	user := "@nina:example.org"
	stored := []Stored{
		{Kind: "content", RuleID: "kiln", Priority: 2, Pattern: "kiln", Actions: raw(`["notify"]`)},
		{Kind: "content", RuleID: "glaze", Priority: 1, Pattern: "glaze", Actions: raw(`["notify"]`)},
		{Kind: "room", RuleID: "!r:example.org", Actions: raw(`["dont_notify"]`)},
		{Kind: "override", RuleID: "mute_bots", Conditions: raw(`[{"kind":"event_match","key":"sender","pattern":"@bot*"}]`), Actions: raw(`["dont_notify"]`)},
		{Kind: "underride", RuleID: ".m.rule.message", Default: true, Actions: raw(`["dont_notify"]`)},
	}
	enabled := map[string]bool{"override/.m.rule.roomnotif": false, "content/glaze": false}
	rs, err := Effective(user, stored, enabled)
	if err != nil {
		t.Fatal(err)
	}
	gotStored, gotEnabled, err := Changes(user, rs)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Effective(user, gotStored, gotEnabled)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(rs)
	b, _ := json.Marshal(again)
	if string(a) != string(b) {
		t.Errorf("Effective(Changes(rs)) differs from rs:\n%s\n%s", a, b)
	}
	if len(gotStored) != len(stored) || len(gotEnabled) != len(enabled) {
		t.Errorf("Changes found %d rules and %d flags, want %d and %d: %+v %v", len(gotStored), len(gotEnabled), len(stored), len(enabled), gotStored, gotEnabled)
	}
	if c := RuleConditions(gotStored[1]); gotStored[1].Kind != "content" || len(c) != 1 || !strings.Contains(string(c[0]), `"content.body"`) {
		t.Errorf("content rule conditions: %s", c)
	}
}
