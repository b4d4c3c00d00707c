package fidelity_test

import (
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/fidelity"
)

// The excluded_by_default line names what was left out, not every option
// that can leave things out: a migration's report (access tokens carried)
// must not list access tokens.
func TestExcludedByDefaultNamesWhatWasLeftOut(t *testing.T) {
	var rep fidelity.Report
	rep.Add(fidelity.ExcludedByDefault, "m.e2ee/keys#one_time", "@nina:fixture.test NINAPHONE", "4 unclaimed one-time keys; the device uploads new ones")
	text := rep.String()
	if strings.Contains(text, "access tokens") || !strings.Contains(text, "left out unless an export option asks for it: m.e2ee/keys#one_time") {
		t.Errorf("report:\n%s", text)
	}
}

// A target's note says how it comes by a section it rebuilds, instead of
// the generic "derives these itself" (clients register pushers again).
func TestCountNote(t *testing.T) {
	tgt := &fidelity.Target{Name: "T", Sections: map[string]fidelity.Handling{"m.users/pushers": fidelity.Rebuilds, "m.rooms/memberships": fidelity.Rebuilds},
		Notes: map[string]string{"m.users/pushers": "clients register their pushers again"}}
	for section, want := range map[string]string{"m.users/pushers": "clients register their pushers again", "m.rooms/memberships": "derived by the target", "m.users/users": ""} {
		if got := tgt.CountNote(section); got != want {
			t.Errorf("CountNote(%s) = %q, want %q", section, got, want)
		}
	}
}
