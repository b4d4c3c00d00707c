package exporter

import (
	"fmt"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
)

// The history visibility rules of personal exports, one room at a time:
// a snapshot holds the user's membership and the visibility in force;
// each case asks whether a message (or state event) sent then is shown.
func TestPersonalVisibilityRules(t *testing.T) {
	const me = "@me:x"
	type visibilityCase struct {
		name       string
		visibility string // in force before the event ("" = never set: shared)
		membership string // mine before the event ("" = none)
		current    string // mine now
		event      string // JSON of the event
		want       bool
	}
	check := func(t *testing.T, synapse bool, cases []visibilityCase) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				v := &visibility{user: me, rooms: map[string]string{"!r:x": tc.current}, snapshots: map[uint64]snapshotVis{},
					values: map[string]string{}, redacted: map[string]bool{}, synapse: synapse, left: map[string]string{}, closed: map[string]bool{}}
				sv := snapshotVis{}
				if tc.visibility != "" {
					sv.historyVisibility, v.values["$hv"] = "$hv", tc.visibility
				}
				if tc.membership != "" {
					sv.member, v.values["$m"] = "$m", tc.membership
				}
				v.snapshots[7] = sv
				got := v.visible(&archive.Event{EventID: "$e", RoomID: "!r:x", JSON: []byte(tc.event), StateBefore: 7})
				if got != tc.want {
					t.Errorf("visible = %v, want %v", got, tc.want)
				}
			})
		}
	}
	t.Run("dendrite", func(t *testing.T) {
		check(t, false, []visibilityCase{
			{"joined then, joined-only room", "joined", "join", "leave", msg, true},
			{"left then, joined-only room", "joined", "leave", "join", msg, false},
			{"invited then, joined-only room", "joined", "invite", "join", msg, false},
			{"invited then, invited room", "invited", "invite", "leave", msg, true},
			{"before joining, shared room, joined now", "shared", "", "join", msg, true},
			{"before joining, shared room, left since", "shared", "", "leave", msg, false},
			{"default visibility is shared", "", "", "join", msg, true},
			{"world readable, never a member", "world_readable", "", "leave", msg, true},
			{"banned then", "shared", "ban", "ban", msg, false},
			{"my own membership, whatever the rules", "joined", "", "leave", member(me, "invite"), true},
			{"someone else's membership follows the rules", "joined", "", "leave", member("@other:x", "join"), false},
			{"a change to joined is judged by the looser old setting", "shared", "", "join", visibilityEvent("joined"), true},
			{"a change to world_readable is judged by the looser new setting", "joined", "", "leave", visibilityEvent("world_readable"), true},
			{"an unknown visibility shows nothing, as in Dendrite", "secret", "join", "join", msg, false},
		})
	})
	t.Run("synapse", func(t *testing.T) {
		check(t, true, []visibilityCase{
			{"joined then, joined-only room", "joined", "join", "leave", msg, true},
			{"invited then, joined-only room", "joined", "invite", "join", msg, false},
			{"invited then, invited room", "invited", "invite", "leave", msg, true},
			{"before joining, shared room, joined now", "shared", "", "join", msg, true},
			{"before joining, shared room, left since: shown to a former member", "shared", "", "leave", msg, true},
			{"shared room, invited now: peeking", "shared", "", "invite", msg, false},
			{"shared room, banned now: peeking", "shared", "", "ban", msg, false},
			{"banned now, joined then", "shared", "join", "ban", msg, true},
			{"world readable, never a member", "world_readable", "", "invite", msg, true},
			{"my leave after an invite (a rejection)", "joined", "invite", "leave", member(me, "leave"), true},
			{"my invite in a joined-only room", "joined", "", "join", member(me, "invite"), false},
			{"my join in a joined-only room", "joined", "invite", "join", member(me, "join"), true},
			{"my ban after a join: judged as joined", "joined", "join", "ban", member(me, "ban"), true},
			{"a change to joined is judged by the looser old setting", "shared", "", "join", visibilityEvent("joined"), true},
			{"an unknown visibility, joined then", "secret", "join", "join", msg, true},
			{"an unknown visibility, not joined then", "secret", "", "join", msg, false},
		})
	})
	// Synapse: nothing after the leave of a user who has left.
	v := &visibility{user: me, rooms: map[string]string{"!r:x": "leave"}, snapshots: map[uint64]snapshotVis{7: {member: "$join"}},
		values: map[string]string{"$join": "join"}, synapse: true, left: map[string]string{"!r:x": "$leave"}, closed: map[string]bool{}}
	for _, e := range []struct {
		id, json string
		want     bool
	}{{"$before", msg, true}, {"$leave", member(me, "leave"), true}, {"$after", msg, false}} {
		if got := v.visible(&archive.Event{EventID: e.id, RoomID: "!r:x", JSON: []byte(e.json), StateBefore: 7}); got != e.want {
			t.Errorf("synapse, %s: visible = %v, want %v", e.id, got, e.want)
		}
	}
	// Never in a timeline: outliers, rejected and soft-failed events.
	v = &visibility{user: me, rooms: map[string]string{"!r:x": "join"}, snapshots: map[uint64]snapshotVis{}, values: map[string]string{}}
	for _, e := range []archive.Event{{Outlier: true}, {Rejected: "auth"}, {SoftFailed: true}} {
		e.RoomID, e.JSON = "!r:x", []byte(msg)
		if v.visible(&e) {
			t.Errorf("%+v is visible", e)
		}
	}
}

const msg = `{"type":"m.room.message","sender":"@other:x","content":{"body":"hi"}}`

func member(who, membership string) string {
	return fmt.Sprintf(`{"type":"m.room.member","state_key":%q,"sender":%q,"content":{"membership":%q}}`, who, who, membership)
}

func visibilityEvent(v string) string {
	return fmt.Sprintf(`{"type":"m.room.history_visibility","state_key":"","sender":"@other:x","content":{"history_visibility":%q}}`, v)
}
