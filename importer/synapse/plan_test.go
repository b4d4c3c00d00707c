package synapse

import (
	"context"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
)

// A room the source had joined with partial state (a resync unfinished)
// is restored as a complete room with the state the source had, and the
// plan reports it as degraded by room ID; no partial_state rows are
// written.
func TestPlanReportsPartialStateRooms(t *testing.T) {
	var partial string
	r, _ := archivetest.Rewrite(t, archivetest.OpenSample(t), func(section string, rec any) (bool, error) {
		if room, ok := rec.(*archive.Room); ok && partial == "" {
			room.PartialState = true
			partial = room.RoomID
		}
		return true, nil
	}, nil)
	res := &importer.Result{Report: &fidelity.Report{}}
	if err := NewTarget(Config{}).Plan(context.Background(), r, importer.Options{}, res); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range res.Report.Entries {
		if e.ID == partial && e.Code == fidelity.MissingEvent && strings.Contains(e.Detail, "partial state") {
			found = true
		}
	}
	if partial == "" || !found {
		t.Errorf("the plan does not report partial-state room %q as degraded:\n%s", partial, res.Report)
	}
}
