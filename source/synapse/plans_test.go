package synapse

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/source"
)

// A selection exports the same records whichever plan reads it: per-event
// index lookups (a small share of the server) or passes over whole tables
// (a large one), with a time range applied in SQL or while merging, and
// with state tables naming events Synapse never stored.
func TestSelectionPlansAgree(t *testing.T) {
	cfg := fixture(t, "synapse-1.67")
	addAbsentEvents(t, cfg.Database)
	ts := eventTimes(t, cfg.Database, roomSquare)
	since, until := time.UnixMilli(ts[len(ts)/3]), time.UnixMilli(ts[2*len(ts)/3])
	defer func(s float64) { scanShare = s }(scanShare)
	for _, sel := range []struct {
		name string
		f    source.Filter
	}{
		{"rooms", source.Filter{Rooms: []string{roomMod, roomSquare}}},
		{"rooms and time range", source.Filter{Rooms: []string{roomSquare, roomMod}, Since: since, Until: until}},
		{"time range", source.Filter{Since: since}},
		{"users", source.Filter{Users: []string{"@priya:fixture.test"}}},
	} {
		t.Run(sel.name, func(t *testing.T) {
			scanShare = 2 // never: index lookups
			lookups := collect(t, cfg, sel.f)
			scanShare = 0 // always: whole-table passes
			scans := collect(t, cfg, sel.f)
			if len(lookups) == 0 {
				t.Fatal("nothing exported")
			}
			for section, want := range lookups {
				a, _ := json.Marshal(want)
				b, _ := json.Marshal(scans[section])
				if string(a) != string(b) {
					t.Errorf("%s: %d records by index lookups, %d by table passes, and they differ", section, len(want), len(scans[section]))
				}
			}
			if len(scans) != len(lookups) {
				t.Errorf("sections: %d by index lookups, %d by table passes", len(lookups), len(scans))
			}
		})
	}
}
