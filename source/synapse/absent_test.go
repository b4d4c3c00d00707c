package synapse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/source"
)

// Events that Synapse's state tables name but never stored, added to a
// fixture by addAbsentEvents.
const (
	absentOrphan  = "$absentOrphanGroupEvent0000000000000000000"
	absentDelta   = "$absentDeltaEntryEvent00000000000000000000"
	absentCurrent = "$absentCurrentStateEvent000000000000000000"
	absentReplace = "$absentReplacedStateEvent00000000000000000"
)

// addAbsentEvents gives room roomMod of a restored fixture what older
// Synapse versions leave behind (a state event's group stored while its
// context was computed, the event then dropped as a duplicate), and what
// follows from it:
//   - an orphan group (no event, no child group) naming its absent event;
//   - a reachable delta group with an entry naming an absent event;
//   - a current-state entry naming an absent event;
//   - a state event whose unsigned.replaces_state names an absent event.
//
// It returns the orphan group's ID.
func addAbsentEvents(t *testing.T, db string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var orphan, parent, delta int64
	if err := conn.QueryRow(ctx, `SELECT max(id) + 1 FROM state_groups`).Scan(&orphan); err != nil {
		t.Fatal(err)
	}
	// The delta group: the latest group of the room that an event has
	// and that has a parent; the orphan hangs off it, as the group of an
	// event computed on top of the current state would.
	if err := conn.QueryRow(ctx, `SELECT g.id FROM state_groups g JOIN state_group_edges e ON e.state_group = g.id
		WHERE g.room_id = $1 AND EXISTS (SELECT 1 FROM event_to_state_groups x WHERE x.state_group = g.id)
		ORDER BY g.id DESC LIMIT 1`, roomMod).Scan(&delta); err != nil {
		t.Fatal(err)
	}
	parent = delta
	var replacing string
	if err := conn.QueryRow(ctx, `SELECT e.event_id FROM events e JOIN event_json j ON j.event_id = e.event_id
		WHERE e.room_id = $1 AND e.type = 'm.room.power_levels' AND NOT e.outlier
		AND j.json::jsonb #>> '{unsigned,replaces_state}' IS NOT NULL ORDER BY e.stream_ordering DESC LIMIT 1`, roomMod).Scan(&replacing); err != nil {
		t.Fatalf("a power levels event replacing another in %s: %v", roomMod, err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO state_groups (id, room_id, event_id) VALUES ($1, $2, $3)`, []any{orphan, roomMod, absentOrphan}},
		{`INSERT INTO state_group_edges (state_group, prev_state_group) VALUES ($1, $2)`, []any{orphan, parent}},
		{`INSERT INTO state_groups_state (state_group, room_id, type, state_key, event_id) VALUES ($1, $2, 'm.room.topic', '', $3)`, []any{orphan, roomMod, absentOrphan}},
		{`INSERT INTO state_groups_state (state_group, room_id, type, state_key, event_id) VALUES ($1, $2, 'org.example.note', 'delta', $3)`, []any{delta, roomMod, absentDelta}},
		{`INSERT INTO current_state_events (event_id, room_id, type, state_key) VALUES ($1, $2, 'org.example.note', 'current')`, []any{absentCurrent, roomMod}},
		{`UPDATE event_json SET json = jsonb_set(json::jsonb, '{unsigned,replaces_state}', to_jsonb($2::text))::text WHERE event_id = $1`, []any{replacing, absentReplace}},
	} {
		if _, err := conn.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	return orphan
}

// The rule: an archive that an export writes from any Synapse database
// passes validation, whole-server and partial, also when Synapse's state
// tables name events it never stored. Those entries are left out and
// reported by event ID in the fidelity report.
func TestExportsValidate(t *testing.T) {
	selections := []struct {
		name string
		f    source.Filter
	}{
		{"full", source.Filter{}},
		{"rooms", source.Filter{Rooms: []string{roomMod, roomDM}}},
		{"users", source.Filter{Users: []string{"@priya:fixture.test"}}},
		{"time range", source.Filter{Rooms: []string{roomMod}, Since: time.UnixMilli(1)}},
	}
	for _, name := range []string{"synapse-1.67", "synapse-latest-schema"} {
		for _, absent := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/absent events %v", name, absent), func(t *testing.T) {
				cfg := fixture(t, name)
				var orphan int64
				if absent {
					orphan = addAbsentEvents(t, cfg.Database)
				}
				for _, sel := range selections {
					t.Run(sel.name, func(t *testing.T) {
						r, _ := export(t, cfg, sel.f, source.Options{})
						rep, err := archive.Validate(context.Background(), r)
						if err != nil {
							t.Fatal(err)
						}
						for _, p := range rep.Problems {
							if p.Severity == archive.SeverityError {
								t.Error(p)
							}
						}
						report := fidelity.Preview(r, rep, nil)
						reported := map[string]bool{}
						for _, e := range report.Entries {
							if e.Code == fidelity.SourceMissing && e.Item == archive.SectionStateSnapshots {
								reported[e.ID] = true
							}
						}
						// The orphan group is reached by no event: left out, nothing to report.
						for _, id := range []string{absentDelta, absentCurrent, absentReplace} {
							if reported[id] != absent {
								t.Errorf("fidelity report names %s: %v, want %v\n%s", id, reported[id], absent, report)
							}
						}
						if reported[absentOrphan] {
							t.Errorf("the orphan group was exported:\n%s", report)
						}
						for _, r := range collect(t, cfg, sel.f)[archive.SectionStateSnapshots] {
							if s := r.(*archive.StateSnapshot); s.ID == uint64(orphan) {
								t.Errorf("the orphan group %d was exported: %+v", orphan, s)
							}
						}
					})
				}
			})
		}
	}
}
