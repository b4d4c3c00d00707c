package synapse

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
)

// A restore killed in its events pass, after the bulk tables' indexes,
// constraints and triggers were dropped and the tables truncated, has
// saved their definitions and left the tables empty; its rerun completes
// and leaves every index, constraint and trigger of a fresh Synapse
// database in place, also those an earlier run had dropped for good
// (dropped here by hand, as a run whose drops were committed would leave
// them), with what depends on them; and the rerun, truncating again, has
// loaded the tables frozen.
func TestDeferredIndexesAfterInterruption(t *testing.T) {
	ctx := context.Background()
	r := exportFixture(t, "synapse-1.67", source.Options{})
	want := schemaObjects(t, testenv.NewSynapse(t, "fixture.test").DB)
	s := testenv.NewSynapse(t, "fixture.test")
	target := NewTarget(Config{Database: s.DB, HomeserverConfig: s.Config, MediaStore: s.MediaStore, SigningKey: s.SigningKey})

	killed, cancel := context.WithCancel(ctx)
	defer cancel()
	at := &cancelAt{phase: "events", after: 100, cancel: cancel}
	_, err := importer.Run(killed, target, r, importer.Options{}, at)
	if !at.fired || err == nil {
		t.Fatalf("the restore was not cancelled in its events pass (cancelled: %v; it returned %v)", at.fired, err)
	}
	conn, err := pgx.Connect(ctx, s.DB)
	if err != nil {
		t.Fatal(err)
	}
	var saved int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM ferry_restore_deferred`).Scan(&saved); err != nil || saved < 40 {
		t.Fatalf("the killed restore saved %d definitions (%v), want those of every deferred index, constraint and trigger", saved, err)
	}
	if diff := compareObjects(want, schemaObjects(t, s.DB)); diff != nil {
		t.Errorf("after the kill (its drops rolled back): %v", diff)
	}
	var rows int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM state_groups) + (SELECT count(*) FROM event_json)`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("after the kill: %d rows in events, state_groups and event_json (%v), want none", rows, err)
	}
	// CASCADE: the foreign keys of other tables that hang on events' unique
	// indexes go too.
	for _, sql := range []string{`DROP TRIGGER check_event_stream_ordering ON room_memberships`,
		`ALTER TABLE events DROP CONSTRAINT events_event_id_key CASCADE`, `DROP INDEX events_stream_ordering CASCADE`,
		`DROP INDEX state_groups_state_type_idx`} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}

	conn.Close(ctx) // Check refuses a database with other sessions
	res, err := importer.Run(ctx, target, r, importer.Options{}, nil)
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if !res.Target.Resuming {
		t.Error("the rerun was not recognised as one")
	}
	if diff := compareObjects(want, schemaObjects(t, s.DB)); diff != nil {
		t.Errorf("after the rerun: %v", diff)
	}
	if conn, err = pgx.Connect(ctx, s.DB); err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM ferry_restore_deferred`).Scan(&saved); err != nil || saved != 0 {
		t.Errorf("%d definitions still saved after the restore completed (%v)", saved, err)
	}
	for table, n := range frozenBulkTables(t, conn) {
		if n != 0 {
			t.Errorf("%s: %d rows not frozen after the rerun", table, n)
		}
	}
	s.Start(t)
}

// cancelAt is an importer.Progress that cancels the import once a phase
// has counted enough items.
type cancelAt struct {
	phase   string
	after   int64
	cancel  func()
	current string
	done    int64
	fired   bool
}

func (c *cancelAt) Phase(name string, _ int64) { c.current, c.done = name, 0 }

func (c *cancelAt) Add(n int64) {
	if c.done += n; c.current == c.phase && c.done >= c.after && !c.fired {
		c.fired = true
		c.cancel()
	}
}

// schemaObjects lists a Synapse database's indexes, constraints and
// triggers with their definitions (Ferry's own tables left out).
func schemaObjects(t *testing.T, db string) []string {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, db)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE 'ferry\_%'
		UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' validated ' || convalidated
			FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT LIKE 'ferry\_%'
		UNION ALL SELECT 'trigger ' || pg_get_triggerdef(oid) || ' enabled ' || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	objects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return objects
}

// compareObjects names what got lacks of want, and what it has besides;
// nil when they are the same.
func compareObjects(want, got []string) map[string][]string {
	diff := map[string][]string{}
	for _, o := range want {
		if !slices.Contains(got, o) {
			diff["missing"] = append(diff["missing"], o)
		}
	}
	for _, o := range got {
		if !slices.Contains(want, o) {
			diff["extra"] = append(diff["extra"], o)
		}
	}
	if len(diff) == 0 {
		return nil
	}
	return diff
}
