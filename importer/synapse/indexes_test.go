package synapse

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
)

// A restore killed in its events pass, after the bulk tables' indexes,
// constraints and triggers were dropped and the tables truncated, has
// saved their definitions and left the tables empty. Its rerun, killed in
// turn while rebuilding them after its load committed, keeps the loaded
// rows and what it rebuilt. The next rerun continues from there (skipping
// the load), and leaves every index, constraint and trigger of a fresh
// Synapse database in place, also those an earlier run had dropped for
// good (dropped here by hand, as a run whose drops were committed would
// leave them), with what depends on them; the tables were loaded frozen.
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

	killed, cancel = context.WithCancel(ctx)
	defer cancel()
	at = &cancelAt{phase: "indexes, constraints and triggers", after: 3, cancel: cancel}
	if _, err = importer.Run(killed, target, r, importer.Options{}, at); !at.fired || err == nil {
		t.Fatalf("the rerun was not cancelled in its rebuild (cancelled: %v; it returned %v)", at.fired, err)
	}
	conn = connect(t, s.DB)
	var loaded bool
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM events) > 0 AND EXISTS (SELECT 1 FROM ferry_restore WHERE phase = 'rooms loaded')
		AND NOT EXISTS (SELECT 1 FROM ferry_restore WHERE phase = 'rooms')`).Scan(&loaded); err != nil || !loaded {
		t.Errorf("after a kill in the rebuild the load is not kept as committed and the phase unfinished (%v)", err)
	}
	diff := compareObjects(want, schemaObjects(t, s.DB))
	if len(diff["missing"]) == 0 || len(diff["missing"]) > len(want)-3 || len(diff["extra"]) > 0 {
		t.Errorf("after a kill three items into the rebuild: %v, want some of it rebuilt and the rest missing", diff)
	}
	// A room restore is refused until the restore is finished.
	if id, err := unfinishedRestore(ctx, conn); err != nil || id != r.Manifest().ArchiveID {
		t.Errorf("the unfinished restore is %q (%v), want %s", id, err, r.Manifest().ArchiveID)
	}
	conn.Close(ctx)

	res, err := importer.Run(ctx, target, r, importer.Options{}, nil)
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if !res.Target.Resuming {
		t.Error("the rerun was not recognised as one")
	}
	if res.Skipped < res.InArchive["events"] {
		t.Errorf("the last rerun skipped %d records, want at least the %d loaded events", res.Skipped, res.InArchive["events"])
	}
	if diff := compareObjects(want, schemaObjects(t, s.DB)); diff != nil {
		t.Errorf("after the rerun: %v", diff)
	}
	conn = connect(t, s.DB)
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM ferry_restore_deferred`).Scan(&saved); err != nil || saved != 0 {
		t.Errorf("%d definitions still saved after the restore completed (%v)", saved, err)
	}
	if id, err := unfinishedRestore(ctx, conn); err != nil || id != "" {
		t.Errorf("after the restore completed, the unfinished restore is %q (%v)", id, err)
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

// The deferred items are built on several connections at once, the
// biggest table's first and a table's constraints before its indexes, each
// counted once; a failing item stops the rebuild with an error that names
// it.
func TestBuildConcurrently(t *testing.T) {
	ctx := context.Background()
	db := testenv.StartPostgres(t).CreateDatabase(t, "build_concurrently")
	conn := connect(t, db)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE big (a int, b int); CREATE TABLE small (c int); CREATE TABLE dup (d int);
		INSERT INTO big SELECT i, i % 7 FROM generate_series(1, 200000) i; INSERT INTO small SELECT generate_series(1, 10);
		INSERT INTO dup VALUES (1), (1)`); err != nil {
		t.Fatal(err)
	}
	items := []deferredItem{
		{kindIndex, "small", "small_c", "CREATE INDEX small_c ON small (c)"},
		{kindIndex, "big", "big_b", "CREATE INDEX big_b ON big (b)"},
		{kindConstraint, "big", "big_a_key", "UNIQUE (a)"},
		{kindIndex, "big", "big_ab", "CREATE INDEX big_ab ON big (a, b)"},
		{kindConstraint, "small", "small_pkey", "PRIMARY KEY (c)"},
	}
	if err := biggestTablesFirst(ctx, conn, items); err != nil {
		t.Fatal(err)
	}
	if got := []string{items[0].name, items[1].name, items[2].name, items[3].name, items[4].name}; !slices.Equal(got,
		[]string{"big_a_key", "big_b", "big_ab", "small_pkey", "small_c"}) {
		t.Errorf("build order %v, want the big table's first, each table's constraint before its indexes", got)
	}
	other := connect(t, db)
	defer other.Close(ctx)
	var progress countingProgress
	if err := buildConcurrently(ctx, []*pgx.Conn{conn, other}, items, &progress); err != nil {
		t.Fatal(err)
	}
	if progress.n != int64(len(items)) {
		t.Errorf("%d items counted, want %d", progress.n, len(items))
	}
	for _, it := range items {
		var exists bool
		if err := conn.QueryRow(ctx, it.existsSQL(), it.table, it.name).Scan(&exists); err != nil || !exists {
			t.Errorf("%s %s not built (%v)", it.kind, it.name, err)
		}
	}

	bad := []deferredItem{{kindConstraint, "dup", "dup_d_key", "UNIQUE (d)"}, {kindIndex, "dup", "dup_d", "CREATE INDEX dup_d ON dup (d)"}}
	err := buildConcurrently(ctx, []*pgx.Conn{conn, other}, bad, &countingProgress{})
	if err == nil || !strings.Contains(err.Error(), "constraint dup_d_key of dup") {
		t.Fatalf("a unique constraint the rows break: %v, want an error naming it", err)
	}
}

// countingProgress counts what a step reports done.
type countingProgress struct{ n int64 }

func (c *countingProgress) Phase(string, int64) {}
func (c *countingProgress) Add(n int64)         { c.n += n }

// nextItem starts every constraint whose table is free before any index
// (a constraint left for last would run alone), a foreign key once
// neither of its tables has anything left to build, and an index where no
// constraint or foreign key is being added.
func TestNextItemSchedulesConstraintsFirst(t *testing.T) {
	fk := deferredItem{kindForeignKey, "event_edges", "event_edges_event_id_fkey", "FOREIGN KEY (event_id) REFERENCES events(event_id)"}
	pending := []deferredItem{
		{kindConstraint, "events", "events_event_id_key", "UNIQUE (event_id)"},
		{kindIndex, "events", "events_ts", "CREATE INDEX events_ts ON events (origin_server_ts)"},
		{kindIndex, "event_edges", "ev_edges_prev_id", "CREATE INDEX ev_edges_prev_id ON event_edges (prev_event_id)"},
		{kindConstraint, "event_to_state_groups", "event_to_state_groups_event_id_key", "UNIQUE (event_id)"},
		{kindIndex, "event_to_state_groups", "event_to_state_groups_sg_index", "CREATE INDEX ... (state_group)"},
		fk,
	}
	byName := map[string]deferredItem{}
	for _, it := range pending {
		byName[it.name] = it
	}
	locks := newTableLocks()
	next := func() string {
		t.Helper()
		i := nextItem(pending, locks)
		if i < 0 {
			return ""
		}
		it := pending[i]
		pending = slices.Delete(pending, i, i+1)
		locks.take(it)
		return it.name
	}
	done := func(name string) { locks.release(byName[name]) }
	for _, want := range []string{"events_event_id_key", "event_to_state_groups_event_id_key", "ev_edges_prev_id"} {
		if got := next(); got != want {
			t.Fatalf("next %q, want %q", got, want)
		}
	}
	if got := next(); got != "" {
		t.Fatalf("next %q while constraints hold events and event_to_state_groups, want none", got)
	}
	done("event_to_state_groups_event_id_key")
	if got := next(); got != "event_to_state_groups_sg_index" {
		t.Fatalf("next %q, want the index of the table now free", got)
	}
	done("events_event_id_key")
	if got := next(); got != "events_ts" {
		t.Fatalf("next %q, want events' index (the foreign key waits for events and event_edges)", got)
	}
	done("ev_edges_prev_id")
	if got := next(); got != "" {
		t.Fatalf("next %q while events_ts is being built, want none: the foreign key reads events", got)
	}
	done("events_ts")
	if got := next(); got != fk.name {
		t.Fatalf("next %q, want the foreign key", got)
	}

	// A foreign key whose referenced table cannot be read waits for every
	// other build.
	odd := deferredItem{kindForeignKey, "a", "a_fkey", "FOREIGN KEY (x) REFERENCES"}
	pending = []deferredItem{{kindIndex, "b", "b_x", "CREATE INDEX b_x ON b (x)"}, odd}
	locks = newTableLocks()
	if got := next(); got != "b_x" {
		t.Fatalf("next %q, want b's index first", got)
	}
	if got := next(); got != "" {
		t.Fatalf("next %q while b_x is built, want none", got)
	}
	locks.release(deferredItem{kindIndex, "b", "b_x", ""})
	pending = append(pending, deferredItem{kindForeignKey, "c", "c_fkey", "FOREIGN KEY (y) REFERENCES b(x)"})
	if got := next(); got != "c_fkey" {
		t.Fatalf("next %q, want the foreign key of known tables before the other", got)
	}
	locks.release(deferredItem{kindForeignKey, "c", "c_fkey", "FOREIGN KEY (y) REFERENCES b(x)"})
	if got := next(); got != "a_fkey" {
		t.Fatalf("next %q, want the foreign key last", got)
	}
	pending = append(pending, deferredItem{kindIndex, "d", "d_x", "CREATE INDEX d_x ON d (x)"})
	if got := next(); got != "" {
		t.Fatalf("next %q beside the foreign key of an unknown table, want none", got)
	}
}
