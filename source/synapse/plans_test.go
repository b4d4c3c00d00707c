package synapse

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

// A selection exports the same records whichever plan reads it: per-event
// index lookups (a small share of the server), or passes over whole tables
// (a large share), merging event_json in its physical order or, when its
// look-ahead is exceeded at once, in one joined query, with a time range
// applied in SQL or while merging, and with state tables naming events
// Synapse never stored.
func TestSelectionPlansAgree(t *testing.T) {
	cfg := fixture(t, "synapse-1.67")
	addAbsentEvents(t, cfg.Database)
	ts := eventTimes(t, cfg.Database, roomSquare)
	since, until := time.UnixMilli(ts[len(ts)/3]), time.UnixMilli(ts[2*len(ts)/3])
	defer func(s float64, rows int) { scanShare, maxAheadRows = s, rows }(scanShare, maxAheadRows)
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
			if len(lookups[archive.SectionEvents]) == 0 {
				t.Fatal("no events exported")
			}
			scanShare = 0 // always: whole-table passes
			same(t, "index lookups", lookups, "table passes", collect(t, cfg, sel.f))
			rows := maxAheadRows
			maxAheadRows = 0 // passes handing over to the joined query at once
			same(t, "index lookups", lookups, "one joined query", collect(t, cfg, sel.f))
			maxAheadRows = rows
		})
	}
}

// same reports the sections where two plans' records differ.
func same(t *testing.T, aName string, a map[string][]any, bName string, b map[string][]any) {
	t.Helper()
	for section, want := range a {
		x, _ := json.Marshal(want)
		y, _ := json.Marshal(b[section])
		if string(x) != string(y) {
			t.Errorf("%s: %d records by %s, %d by %s, and they differ", section, len(want), aName, len(b[section]), bName)
		}
	}
	if len(a) != len(b) {
		t.Errorf("sections: %d by %s, %d by %s", len(a), aName, len(b), bName)
	}
}
