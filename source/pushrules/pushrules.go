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
