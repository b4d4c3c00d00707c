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
	for _, tc := range []struct {
		name       string
		visibility string // in force before the event ("" = never set: shared)
		membership string // mine before the event ("" = none)
		current    string // mine now
		event      string // JSON of the event
		want       bool
	}{
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &visibility{user: me, rooms: map[string]string{"!r:x": tc.current}, snapshots: map[uint64]snapshotVis{},
				values: map[string]string{}, redacted: map[string]bool{}}
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
	// Never in a timeline: outliers, rejected and soft-failed events.
	v := &visibility{user: me, rooms: map[string]string{"!r:x": "join"}, snapshots: map[uint64]snapshotVis{}, values: map[string]string{}}
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
