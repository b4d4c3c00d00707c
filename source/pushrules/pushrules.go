// Package pushrules builds the push rule set a client sees (GET
// /_matrix/client/v3/pushrules/) from the server's default rules and a
// user's stored changes: the portable form of push rules in an archive
// (global account data of type m.push_rules), whatever the source stores.
package pushrules

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
)

//go:embed defaults.json
var defaultsJSON []byte

// Rule is one push rule as the client-server API shows it.
type Rule struct {
	RuleID     string            `json:"rule_id"`
	Default    bool              `json:"default"`
	Enabled    bool              `json:"enabled"`
	Conditions []json.RawMessage `json:"conditions,omitempty"`
	Actions    []json.RawMessage `json:"actions"`
	Pattern    string            `json:"pattern,omitempty"`
}

// Kinds in the order a server evaluates them.
var Kinds = []string{"override", "content", "room", "sender", "underride"}

// Ruleset is {"global": {"override": [...], ...}}.
type Ruleset struct {
	Global map[string][]Rule `json:"global"`
}

// Stored is a rule a user changed or added, in a neutral form: Kind is one
// of Kinds; for a changed server-default rule, Default is true and only
// Actions (when not nil) and Enabled (when set) apply.
type Stored struct {
	Kind       string
	RuleID     string // without the "global/<kind>/" prefix
	Priority   int    // order within the kind: higher first
	Conditions []json.RawMessage
	Actions    []json.RawMessage
	Pattern    string
	Default    bool
}

// Defaults returns the server-default rules for a user (the spec's base
// rule set, v1.13), with the user's ID and localpart filled in.
func Defaults(userID string) (map[string][]Rule, error) {
	localpart := strings.TrimPrefix(strings.SplitN(userID, ":", 2)[0], "@")
	text := strings.NewReplacer("USER_ID", userID, "USER_LOCALPART", localpart).Replace(string(defaultsJSON))
	var out map[string][]Rule
	if err := json.Unmarshal([]byte(text), &out); err != nil {
		return nil, fmt.Errorf("built-in default push rules: %w", err)
	}
	for kind, rules := range out {
		for i := range rules {
			rules[i].Default = true
			if rules[i].RuleID != ".m.rule.master" {
				rules[i].Enabled = true
			}
		}
		out[kind] = rules
	}
	return out, nil
}

// Effective merges a user's stored rules and enabled flags (keyed by
// "<kind>/<rule_id>") into the defaults, ordered as Synapse orders them:
// the master rule, then the user's override rules, then the other default
// override rules; in every other kind the user's rules come first.
func Effective(userID string, stored []Stored, enabled map[string]bool) (Ruleset, error) {
	defaults, err := Defaults(userID)
	if err != nil {
		return Ruleset{}, err
	}
	changedDefault := map[string]Stored{}
	user := map[string][]Stored{}
	for _, s := range stored {
		if s.Default {
			changedDefault[s.Kind+"/"+s.RuleID] = s
			continue
		}
		user[s.Kind] = append(user[s.Kind], s)
	}
	rs := Ruleset{Global: map[string][]Rule{}}
	for _, kind := range Kinds {
		var base []Rule
		for _, r := range defaults[kind] {
			if c, ok := changedDefault[kind+"/"+r.RuleID]; ok && c.Actions != nil {
				r.Actions = c.Actions
			}
			base = append(base, r)
		}
		var mine []Rule
		for _, s := range sortByPriority(user[kind]) {
			r := Rule{RuleID: s.RuleID, Enabled: true, Actions: s.Actions}
			switch kind {
			case "override", "underride":
				r.Conditions = s.Conditions
			case "content":
				r.Pattern = s.Pattern
			}
			mine = append(mine, r)
		}
		var out []Rule
		if kind == "override" && len(base) > 0 && base[0].RuleID == ".m.rule.master" {
			out = append(out, base[0])
			base = base[1:]
		}
		out = append(out, mine...)
		out = append(out, base...)
		for i := range out {
			if on, ok := enabled[kind+"/"+out[i].RuleID]; ok {
				out[i].Enabled = on
			}
			if out[i].Actions == nil {
				out[i].Actions = []json.RawMessage{}
			}
		}
		if out == nil {
			out = []Rule{}
		}
		rs.Global[kind] = out
	}
	return rs, nil
}

func sortByPriority(in []Stored) []Stored {
	out := append([]Stored(nil), in...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Priority > out[j-1].Priority; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Changes is Effective's inverse: from the rule set a client sees, it
// returns the user's own rules (Priority from the order within each kind,
// the first highest), the server-default rules whose actions differ from
// the defaults (Default set), and the enabled flags that differ from the
// defaults (a user's own rules are enabled unless a flag says otherwise).
// Effective(userID, Changes(rs)) is rs again. The conditions of content,
// room and sender rules are not in rs: RuleConditions rebuilds them.
func Changes(userID string, rs Ruleset) ([]Stored, map[string]bool, error) {
	defaults, err := Defaults(userID)
	if err != nil {
		return nil, nil, err
	}
	var stored []Stored
	enabled := map[string]bool{}
	for _, kind := range Kinds {
		base := map[string]Rule{}
		for _, r := range defaults[kind] {
			base[r.RuleID] = r
		}
		rules := rs.Global[kind]
		for i, r := range rules {
			key := kind + "/" + r.RuleID
			if d, ok := base[r.RuleID]; ok {
				if !sameActions(d.Actions, r.Actions) {
					stored = append(stored, Stored{Kind: kind, RuleID: r.RuleID, Actions: r.Actions, Default: true})
				}
				if d.Enabled != r.Enabled {
					enabled[key] = r.Enabled
				}
				continue
			}
			if strings.HasPrefix(r.RuleID, ".") {
				continue // a default rule of another server version: not ours to keep
			}
			stored = append(stored, Stored{Kind: kind, RuleID: r.RuleID, Priority: len(rules) - i,
				Conditions: r.Conditions, Actions: r.Actions, Pattern: r.Pattern})
			if !r.Enabled {
				enabled[key] = false
			}
		}
	}
	return stored, enabled, nil
}

// RuleConditions returns the conditions a server keeps for a user's rule
// of a kind whose conditions the client-server API does not show (content:
// the pattern on the body; room and sender: the rule ID), or the rule's
// own conditions.
func RuleConditions(s Stored) []json.RawMessage {
	cond := func(key, pattern string) []json.RawMessage {
		data, _ := json.Marshal(map[string]string{"kind": "event_match", "key": key, "pattern": pattern})
		return []json.RawMessage{data}
	}
	switch s.Kind {
	case "content":
		return cond("content.body", s.Pattern)
	case "room":
		return cond("room_id", s.RuleID)
	case "sender":
		return cond("user_id", s.RuleID)
	}
	if s.Conditions == nil {
		return []json.RawMessage{}
	}
	return s.Conditions
}

func sameActions(a, b []json.RawMessage) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	var u, v any
	if json.Unmarshal(x, &u) != nil || json.Unmarshal(y, &v) != nil {
		return false
	}
	x, _ = json.Marshal(u)
	y, _ = json.Marshal(v)
	return string(x) == string(y)
}
