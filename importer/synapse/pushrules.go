package synapse

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ferry-matrix/ferry/source/pushrules"
)

// priorityClass is Synapse's PRIORITY_CLASS_MAP; -1 marks a server-default
// rule whose actions the user changed.
var priorityClass = map[string]int{"underride": 1, "sender": 2, "room": 3, "content": 4, "override": 5}

// pushRuleWriter turns each user's effective rule set (the archive's global
// m.push_rules) back into what Synapse stores: the user's own rules and
// changed defaults in push_rules, flags differing from the defaults in
// push_rules_enable. IDs continue the target's highest, as Synapse's own
// ID generator does.
type pushRuleWriter struct {
	b                  *batcher
	nextRule, nextFlag int64
}

func newPushRuleWriter(ctx context.Context, b *batcher) (*pushRuleWriter, error) {
	w := &pushRuleWriter{b: b}
	err := b.tx.QueryRow(ctx, `SELECT (SELECT COALESCE(max(id), 0) FROM push_rules), (SELECT COALESCE(max(id), 0) FROM push_rules_enable)`).Scan(&w.nextRule, &w.nextFlag)
	if err != nil {
		return nil, fmt.Errorf("read push rule IDs: %w", err)
	}
	return w, nil
}

func (w *pushRuleWriter) write(ctx context.Context, userID string, content []byte) error {
	var rs pushrules.Ruleset
	if err := json.Unmarshal(content, &rs); err != nil {
		return fmt.Errorf("m.push_rules of %s: %w", userID, err)
	}
	stored, enabled, err := pushrules.Changes(userID, rs)
	if err != nil {
		return err
	}
	for _, s := range stored {
		class, prio := priorityClass[s.Kind], s.Priority
		if s.Default {
			class, prio = -1, 1
		}
		conds, _ := json.Marshal(pushrules.RuleConditions(s))
		actions, _ := json.Marshal(s.Actions)
		w.nextRule++
		if err := w.b.add(ctx, "push_rules", []string{"id", "user_name", "rule_id", "priority_class", "priority", "conditions", "actions"},
			w.nextRule, userID, "global/"+s.Kind+"/"+s.RuleID, class, prio, string(conds), string(actions)); err != nil {
			return err
		}
	}
	for _, key := range sortedKeys(enabled) {
		w.nextFlag++
		if err := w.b.add(ctx, "push_rules_enable", []string{"id", "user_name", "rule_id", "enabled"},
			w.nextFlag, userID, "global/"+key, smallint(enabled[key])); err != nil {
			return err
		}
	}
	return nil
}
