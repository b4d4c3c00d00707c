package dendrite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// Dendrite's roomserver finishes a new event in three transactions: it
// stores the event, then its state before, then (with sent_to_output) moves
// the room's forward extremities and current state and hands the event to
// the sync API. An import killed between the second and the third left an
// event that looked imported; the rerun skipped it, so the room's DAG and
// timelines lacked it. When that event was a room's create event, the room
// stayed a stub and Dendrite rejected every later event of it ("room does
// not exist"): TestInterruptedImportCompletes/event_30 (now
// TestTargetConformance/interrupted/importing_events_29) failed so, now and
// then, under load.
//
// Here the kill is made exact: after a complete import, the last event of
// the busiest room is put back into that state (the third transaction
// undone, and the sync API without it), and the import is run again.
func TestRerunCompletesAnEventKilledBeforeItWasSent(t *testing.T) {
	ctx := context.Background()
	const name = "resume.ferry.test"
	dir, key := seededArchive(t, name)
	to := testenv.NewDendrite(t, name)
	to.Start(t)
	to.Stop()
	if _, err := importInto(ctx, t, to, openArchive(t, dir, key), importer.Options{Migration: true}); err != nil {
		t.Fatal(err)
	}

	rs := openSQLite(t, filepath.Join(to.Dir, "dendrite_roomserver.db"))
	var roomNID, eventNID, stateBefore int64
	var roomID, eventID, eventJSON string
	if err := rs.QueryRow(`SELECT r.room_nid, r.room_id, e.event_nid, e.event_id, e.state_snapshot_nid, j.event_json
		FROM roomserver_rooms r JOIN roomserver_events e ON e.room_nid = r.room_nid JOIN roomserver_event_json j ON j.event_nid = e.event_nid
		WHERE e.event_state_key_nid = 0 AND e.sent_to_output AND r.latest_event_nids = '[' || e.event_nid || ']'
		ORDER BY (SELECT COUNT(*) FROM roomserver_events x WHERE x.room_nid = r.room_nid) DESC LIMIT 1`).
		Scan(&roomNID, &roomID, &eventNID, &eventID, &stateBefore, &eventJSON); err != nil {
		t.Fatalf("no room ending in a timeline event: %v", err)
	}
	var ev struct {
		PrevEvents []string `json:"prev_events"`
	}
	if err := json.Unmarshal([]byte(eventJSON), &ev); err != nil || len(ev.PrevEvents) != 1 {
		t.Fatalf("event %s: prev events %v %v", eventID, ev.PrevEvents, err)
	}
	var prevNID int64
	if err := rs.QueryRow(`SELECT event_nid FROM roomserver_events WHERE event_id = $1`, ev.PrevEvents[0]).Scan(&prevNID); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE roomserver_events SET sent_to_output = 0 WHERE event_nid = $1`,
		`UPDATE roomserver_rooms SET latest_event_nids = '[' || $2 || ']', last_event_sent_nid = $2, state_snapshot_nid = $3 WHERE room_nid = $4`,
	} {
		if _, err := rs.Exec(q, eventNID, prevNID, stateBefore, roomNID); err != nil {
			t.Fatal(err)
		}
	}
	syncDB := openSQLite(t, filepath.Join(to.Dir, "dendrite_syncapi.db"))
	if _, err := syncDB.Exec(`DELETE FROM syncapi_output_room_events WHERE event_id = $1`, eventID); err != nil {
		t.Fatal(err)
	}
	t.Logf("event %s of room %s: stored with its state, not sent", eventID, roomID)

	res, err := importInto(ctx, t, to, openArchive(t, dir, key), importer.Options{Migration: true})
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if res.Skipped == 0 {
		t.Error("the rerun found nothing of the first run")
	}
	assertSameContent(t, to.Config(), dir, key)
	var n int
	if err := syncDB.QueryRow(`SELECT COUNT(*) FROM syncapi_output_room_events WHERE event_id = $1`, eventID).Scan(&n); err != nil || n != 1 {
		t.Errorf("the sync API has %d copies of %s after the rerun (%v): timelines lack it", n, eventID, err)
	}
}

// openSQLite opens one of a stopped Dendrite's SQLite files for writing.
func openSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}
