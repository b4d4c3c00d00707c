package synapse

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/ferry-matrix/ferry/importer"
)

// A fresh target's bulk tables are loaded without their secondary indexes,
// unique constraints, foreign keys and triggers, which are rebuilt once
// the events are in: maintaining them row by row costs more than the COPY
// itself (check_event_stream_ordering alone looks up the event of every
// room_memberships row), and one sorted build each is what pg_restore
// does.
//
// The drops happen inside the load's transaction (restoreRoomData), so a
// restore killed during the load rolls them back with the rows. Their
// definitions (pg_get_indexdef, pg_get_constraintdef, pg_get_triggerdef)
// are also saved, committed, before the first drop, in
// ferry_restore_deferred: a rerun first creates again any saved item the
// database lacks, and only then defers again. Once the load committed,
// rebuildSaved creates them, several at once; a rebuild killed there keeps
// what it built and its rerun creates the rest. The saved rows go when the
// rooms phase's last step commits.
//
// Primary keys are deferred too: no step of the load relies on one (it
// uses no ON CONFLICT on these tables). Check constraints stay (cheap).

// deferredTables are the tables the events pass fills in bulk. Foreign keys
// of other tables that reference them are deferred with them (they hang on
// the unique indexes that are dropped). The tables the derived-data steps
// write afterwards (current_state_events, local_current_membership,
// threads, extremities, receipts...) keep theirs: those steps join the
// loaded tables through their indexes, which are back by then, and write
// a row per room, per current state entry or per receipt, not per event.
var deferredTables = []string{"events", "event_json", "state_events", "event_edges", "event_auth", "event_to_state_groups",
	"state_groups", "state_group_edges", "state_groups_state", "rejections", "room_memberships", "redactions", "event_relations"}

// deferredSchema is where the definitions of a restore's dropped items are
// kept until their rebuild commits.
const deferredSchema = `CREATE TABLE IF NOT EXISTS ferry_restore_deferred (archive_id text NOT NULL, position int NOT NULL,
	kind text NOT NULL, table_name text NOT NULL, name text NOT NULL, definition text NOT NULL,
	PRIMARY KEY (archive_id, position))`

// Kinds of deferred items, in the order they are dropped (the reverse of
// the order they are created in).
const (
	kindTrigger    = "trigger"
	kindForeignKey = "foreign key"
	kindConstraint = "constraint" // primary key, unique or exclusion: its index comes with it
	kindIndex      = "index"
)

// querier is a connection or a transaction.
type querier interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}

// deferredItem is one index, constraint or trigger of a bulk table.
type deferredItem struct {
	kind, table, name, definition string
}

// catalogItems lists the deferred tables' items, in drop order. table is
// as regclass prints it (quoted where needed); name is the bare name.
const catalogItems = `WITH t AS (SELECT unnest($1::text[])::regclass AS oid)
	SELECT 'trigger', g.tgrelid::regclass::text, g.tgname::text, pg_get_triggerdef(g.oid)
		FROM pg_trigger g WHERE NOT g.tgisinternal AND g.tgrelid IN (SELECT oid FROM t)
	UNION ALL
	SELECT 'foreign key', c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid)
		FROM pg_constraint c WHERE c.contype = 'f' AND (c.conrelid IN (SELECT oid FROM t) OR c.confrelid IN (SELECT oid FROM t))
	UNION ALL
	SELECT 'constraint', c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid)
		FROM pg_constraint c WHERE c.contype IN ('p', 'u', 'x') AND c.conrelid IN (SELECT oid FROM t)
	UNION ALL
	SELECT 'index', i.indrelid::regclass::text, x.relname::text, pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE i.indrelid IN (SELECT oid FROM t)
		AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = i.indrelid AND c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))`

// deferral is what one restore dropped, to be created again.
type deferral struct {
	archiveID string
	items     []deferredItem // in drop order
	// truncated are the deferred tables the rooms phase truncated (they
	// were empty) for the load to copy into them frozen (copyFrozen).
	truncated map[string]bool
}

// deferIndexes drops the deferred tables' items when the target holds no
// events (a fresh database, or the rerun of a restore whose rooms phase
// rolled back), after saving their definitions, and then truncates those
// of the tables that are empty (truncateEmpty); otherwise it drops and
// truncates nothing. Either way it first creates again what an earlier
// run saved and the database lacks.
func deferIndexes(ctx context.Context, tx pgx.Tx, archiveID string) (*deferral, error) {
	// The definitions are committed on a connection of their own, so that
	// they outlive the phase's transaction.
	conn, err := pgx.ConnectConfig(ctx, tx.Conn().Config().Copy())
	if err != nil {
		return nil, fmt.Errorf("save the deferred indexes: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, deferredSchema); err != nil {
		return nil, fmt.Errorf("create ferry_restore_deferred: %w", err)
	}
	if err := restoreSaved(ctx, tx, archiveID); err != nil {
		return nil, err
	}
	d := &deferral{archiveID: archiveID}
	var fresh bool
	if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM events)`).Scan(&fresh); err != nil || !fresh {
		return d, err
	}
	rows, err := tx.Query(ctx, catalogItems, deferredTables)
	if err != nil {
		return nil, fmt.Errorf("read the bulk tables' indexes: %w", err)
	}
	if d.items, err = pgx.CollectRows(rows, scanItem); err != nil {
		return nil, fmt.Errorf("read the bulk tables' indexes: %w", err)
	}
	err = pgx.BeginFunc(ctx, conn, func(s pgx.Tx) error {
		if _, err := s.Exec(ctx, `DELETE FROM ferry_restore_deferred WHERE archive_id = $1`, archiveID); err != nil {
			return err
		}
		var b pgx.Batch
		for i, it := range d.items {
			b.Queue(`INSERT INTO ferry_restore_deferred (archive_id, position, kind, table_name, name, definition) VALUES ($1, $2, $3, $4, $5, $6)`,
				archiveID, i, it.kind, it.table, it.name, it.definition)
		}
		return s.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return nil, fmt.Errorf("save the deferred indexes: %w", err)
	}
	for _, it := range d.items {
		if _, err := tx.Exec(ctx, it.dropSQL()); err != nil {
			return nil, fmt.Errorf("defer %s %s of %s: %w", it.kind, it.name, it.table, err)
		}
	}
	if d.truncated, err = truncateEmpty(ctx, tx); err != nil {
		return nil, err
	}
	return d, nil
}

// truncateEmpty truncates, in tx, those of the deferred tables that hold
// no row, when tx may then copy into them frozen (canFreeze), and returns
// them. Nothing is lost: they are empty. It runs once their foreign keys
// (those of other tables that reference them too) and triggers are
// dropped: TRUNCATE refuses a table that another table's foreign key
// references, and fires ON TRUNCATE triggers. A rollback undoes it.
func truncateEmpty(ctx context.Context, tx pgx.Tx) (map[string]bool, error) {
	if ok, err := canFreeze(ctx, tx); err != nil || !ok {
		return nil, err
	}
	probes := make([]string, len(deferredTables))
	for i, table := range deferredTables {
		probes[i] = fmt.Sprintf("NOT EXISTS (SELECT 1 FROM %s)", pgx.Identifier{table}.Sanitize())
	}
	var empty []bool
	if err := tx.QueryRow(ctx, "SELECT ARRAY["+strings.Join(probes, ", ")+"]").Scan(&empty); err != nil {
		return nil, fmt.Errorf("look for rows in the bulk tables: %w", err)
	}
	truncated := map[string]bool{}
	var names []string
	for i, table := range deferredTables {
		if empty[i] {
			truncated[table] = true
			names = append(names, pgx.Identifier{table}.Sanitize())
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(names, ", ")); err != nil {
		return nil, fmt.Errorf("truncate the empty bulk tables: %w", err)
	}
	return truncated, nil
}

func scanItem(row pgx.CollectableRow) (deferredItem, error) {
	var it deferredItem
	err := row.Scan(&it.kind, &it.table, &it.name, &it.definition)
	return it, err
}

// rebuildWorkers is how many connections rebuild the deferred indexes at
// once, each build in one process (max_parallel_maintenance_workers 0).
// PostgreSQL's parallel index builds keep one core busy but not two
// (their final merge runs in one process): at 1M events one connection
// building one index after the other used 1.24-1.36 of 2 cores (16.3 s);
// two connections with parallel builds 1.65 cores, for more CPU in all
// (15.3 s); two with one process each 1.62 cores, for less CPU (10.9 s).
const rebuildWorkers = 2

// rebuildSaved creates again the saved items of archiveID that the
// database lacks, after the load that deferred them committed: the
// indexes, the primary key, unique and exclusion constraints and the
// foreign keys on rebuildWorkers connections at once (connectRebuilder's,
// as buildConcurrently schedules them), then the triggers on the first of
// them, in their order. Each item is its own statement: a killed rebuild
// keeps what it built and its rerun builds the rest.
func rebuildSaved(ctx context.Context, conn *pgx.Conn, archiveID string, p importer.Progress) error {
	items, err := missingSaved(ctx, conn, archiveID)
	if err != nil {
		return err
	}
	p.Phase("indexes, constraints and triggers", int64(len(items)))
	if len(items) == 0 {
		return nil
	}
	var indexes, after []deferredItem
	for _, it := range items {
		if it.kind == kindTrigger {
			after = append(after, it)
		} else {
			indexes = append(indexes, it)
		}
	}
	if err := biggestTablesFirst(ctx, conn, indexes); err != nil {
		return err
	}
	// One sorted build per index, in memory (256MB each: together the
	// 512MB one connection took before), in one process (see
	// rebuildWorkers), on these connections only. The triggers run on the
	// first of them too, so that a cancelled rebuild leaves no statement
	// running.
	//
	// The first is conn, the load's: its backend has mapped the shared
	// buffers the load wrote, which a new backend maps page by page as
	// its scans first touch them, each a page fault (about 9 us on this
	// VM; some 190,000 a new connection at 1M events).
	const settings = `SET maintenance_work_mem = '256MB'; SET max_parallel_maintenance_workers = 0`
	conns := []*pgx.Conn{conn}
	defer func() {
		for _, c := range conns[1:] {
			c.Close(context.WithoutCancel(ctx))
		}
	}()
	for range max(1, min(rebuildWorkers, len(indexes))) - 1 {
		c, err := connectRebuilder(ctx, conn.Config())
		if err != nil {
			return fmt.Errorf("connect to rebuild the deferred indexes: %w", err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		if _, err := c.Exec(ctx, settings); err != nil {
			return err
		}
	}
	defer conn.Exec(context.WithoutCancel(ctx), `RESET maintenance_work_mem; RESET max_parallel_maintenance_workers`)
	if err := buildConcurrently(ctx, conns, indexes, p); err != nil {
		return err
	}
	for _, it := range after {
		if _, err := conns[0].Exec(ctx, it.createSQL()); err != nil {
			return createError(it, err)
		}
		p.Add(1)
	}
	return nil
}

// connectRebuilder opens a connection like cfg's for the rebuild (see
// connectRestorer), named as the rebuild's.
func connectRebuilder(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	cfg = cfg.Copy()
	cfg.RuntimeParams["application_name"] = "ferry restore (rebuilding indexes)"
	return pgx.ConnectConfig(ctx, cfg)
}

// connectRestorer opens the restore's connection to the database at url:
// it names itself to other sessions (Check lists them when it refuses a
// target in use) and, when its context ends, asks PostgreSQL to cancel
// the statement running, instead of only closing the socket as pgx does
// by default: each index build of the rebuild, on this connection and on
// connectRebuilder's copies of it, is a statement of its own that would
// otherwise run to its end, and commit, after Ferry stopped waiting.
func connectRestorer(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "ferry restore"
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 10 * time.Second}
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// missingSaved lists, in creation order, the saved items of archiveID
// that the database lacks.
func missingSaved(ctx context.Context, q querier, archiveID string) ([]deferredItem, error) {
	rows, err := q.Query(ctx, `SELECT kind, table_name, name, definition FROM ferry_restore_deferred
		WHERE archive_id = $1 ORDER BY position DESC`, archiveID)
	if err != nil {
		return nil, fmt.Errorf("read ferry_restore_deferred: %w", err)
	}
	saved, err := pgx.CollectRows(rows, scanItem)
	if err != nil {
		return nil, fmt.Errorf("read ferry_restore_deferred: %w", err)
	}
	var missing []deferredItem
	for _, it := range saved {
		var exists bool
		if err := q.QueryRow(ctx, it.existsSQL(), it.table, it.name).Scan(&exists); err != nil {
			return nil, fmt.Errorf("look for %s %s of %s: %w", it.kind, it.name, it.table, err)
		}
		if !exists {
			missing = append(missing, it)
		}
	}
	return missing, nil
}

// biggestTablesFirst orders items by their table's size, biggest first
// (a long build started last would run alone), keeping their order within
// a table (a table's constraints before its other indexes).
func biggestTablesFirst(ctx context.Context, conn *pgx.Conn, items []deferredItem) error {
	size := map[string]int64{}
	for _, it := range items {
		if _, ok := size[it.table]; ok {
			continue
		}
		var n int64
		if err := conn.QueryRow(ctx, `SELECT pg_relation_size($1::regclass)`, it.table).Scan(&n); err != nil {
			return fmt.Errorf("size of %s: %w", it.table, err)
		}
		size[it.table] = n
	}
	slices.SortStableFunc(items, func(a, b deferredItem) int {
		if c := cmp.Compare(size[b.table], size[a.table]); c != 0 {
			return c
		}
		if c := strings.Compare(a.table, b.table); c != 0 {
			return c
		}
		return cmp.Compare(kindRank(a.kind), kindRank(b.kind))
	})
	return nil
}

// kindRank puts a table's constraints before its plain indexes.
func kindRank(kind string) int {
	if kind == kindConstraint {
		return 0
	}
	return 1
}

// buildConcurrently creates items (indexes, constraints and foreign keys,
// in biggestTablesFirst's order), one statement per connection at a time,
// taking for each free connection the item nextItem chooses. The first
// failure stops the others (their contexts end: connectRebuilder's
// connections then cancel their statements) and is returned.
func buildConcurrently(ctx context.Context, conns []*pgx.Conn, items []deferredItem, p importer.Progress) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		worker int
		item   deferredItem
		err    error
	}
	results := make(chan result)
	work := make([]chan deferredItem, len(conns))
	for i, c := range conns {
		work[i] = make(chan deferredItem)
		go func() {
			for it := range work[i] {
				_, err := c.Exec(ctx, it.createSQL())
				results <- result{i, it, err}
			}
		}()
	}
	defer func() {
		for _, w := range work {
			close(w)
		}
	}()
	locks := newTableLocks()
	idle := make([]int, len(conns))
	for i := range idle {
		idle[i] = i
	}
	pending := slices.Clone(items)
	var failed error
	for {
		for failed == nil && len(idle) > 0 {
			i := nextItem(pending, locks)
			if i < 0 {
				break
			}
			it := pending[i]
			pending = slices.Delete(pending, i, i+1)
			locks.take(it)
			w := idle[len(idle)-1]
			idle = idle[:len(idle)-1]
			work[w] <- it
		}
		if len(idle) == len(conns) {
			if failed == nil && len(pending) > 0 {
				return fmt.Errorf("the rebuild cannot schedule %s %s of %s (a scheduler error)", pending[0].kind, pending[0].name, pending[0].table)
			}
			return failed // nothing running: all built, or stopped by a failure
		}
		res := <-results
		idle = append(idle, res.worker)
		locks.release(res.item)
		switch {
		case res.err != nil && failed == nil:
			failed = createError(res.item, res.err)
			cancel()
		case res.err == nil:
			p.Add(1)
		}
	}
}

// tableLocks is what the items being built hold of their tables, as the
// scheduler sees it: how many items are being built on each table, and
// whether one of them needs it to itself.
type tableLocks struct {
	building  map[string]int
	exclusive map[string]bool
	// alone: an item whose tables are not all known (a foreign key whose
	// referenced table its definition does not show) is being built, and
	// nothing may start beside it.
	alone bool
}

// newTableLocks returns locks of nothing.
func newTableLocks() *tableLocks {
	return &tableLocks{building: map[string]int{}, exclusive: map[string]bool{}}
}

// tables are the tables an item's statement locks: its own, and the one a
// foreign key references (both locked against CREATE INDEX while the keys
// are checked). ok is false for a foreign key whose referenced table
// cannot be read from its definition.
func (it deferredItem) tables() (tables []string, ok bool) {
	if it.kind != kindForeignKey {
		return []string{it.table}, true
	}
	m := referencesPattern.FindStringSubmatch(it.definition)
	if m == nil {
		return []string{it.table}, false
	}
	if m[1] == it.table {
		return []string{it.table}, true
	}
	return []string{it.table, m[1]}, true
}

// referencesPattern finds the referenced table in pg_get_constraintdef's
// text of a foreign key, as regclass prints it (quoted, and qualified, as
// needed): "FOREIGN KEY (event_id) REFERENCES events(event_id)".
var referencesPattern = regexp.MustCompile(`REFERENCES ((?:"(?:[^"]|"")+"|[^\s("]+)(?:\.(?:"(?:[^"]|"")+"|[^\s("]+))?)\(`)

// any says whether anything is being built.
func (l *tableLocks) any() bool {
	for _, n := range l.building {
		if n > 0 {
			return true
		}
	}
	return false
}

func (l *tableLocks) take(it deferredItem) {
	tables, ok := it.tables()
	l.alone = !ok
	for _, t := range tables {
		l.building[t]++
		l.exclusive[t] = it.kind != kindIndex
	}
}

func (l *tableLocks) release(it deferredItem) {
	tables, ok := it.tables()
	if !ok {
		l.alone = false
	}
	for _, t := range tables {
		l.building[t]--
		l.exclusive[t] = false
	}
}

// nextItem chooses, among pending (in biggestTablesFirst's order), the
// item to build next on a free connection: -1 when none can start without
// waiting on another's lock. A constraint (ALTER TABLE ... ADD CONSTRAINT
// locks the table for itself) needs its table free; a foreign key needs
// both its tables free and no index or constraint of either still to
// build (its check reads the referenced table through its unique index);
// an index needs only that no constraint or foreign key is being added
// to its table (CREATE INDEX locks only against writes). Constraints go
// first, wherever their table is free: a constraint left for last runs
// alone, the other connections idle. Then foreign keys, then indexes.
func nextItem(pending []deferredItem, l *tableLocks) int {
	if l.alone {
		return -1
	}
	waiting := map[string]bool{} // tables with an index or constraint still to build
	others := false              // an item other than a foreign key of unknown tables is pending
	for _, it := range pending {
		if it.kind != kindForeignKey {
			waiting[it.table] = true
		}
		if _, ok := it.tables(); ok {
			others = true
		}
	}
	free := func(t string) bool { return l.building[t] == 0 }
	if i := slices.IndexFunc(pending, func(it deferredItem) bool { return it.kind == kindConstraint && free(it.table) }); i >= 0 {
		return i
	}
	if i := slices.IndexFunc(pending, func(it deferredItem) bool {
		if it.kind != kindForeignKey {
			return false
		}
		tables, ok := it.tables()
		if !ok && (others || l.any()) {
			return false // which table it reads is unknown: alone, after every other build
		}
		for _, t := range tables {
			if !free(t) || waiting[t] {
				return false
			}
		}
		return true
	}); i >= 0 {
		return i
	}
	return slices.IndexFunc(pending, func(it deferredItem) bool { return it.kind == kindIndex && !l.exclusive[it.table] })
}

// createError says which deferred item could not be created again.
func createError(it deferredItem, err error) error {
	return fmt.Errorf("create %s %s of %s again: %w", it.kind, it.name, it.table, err)
}

// createGuards creates again, in tx, the deferred unique constraints and
// indexes of events: the unique event IDs and stream orderings. They are
// what a damaged or hostile archive could break (an event twice, one
// stream ordering for two events). The load's eventKeys find such an
// archive before the commit and call this when event IDs may repeat, so
// that it is refused with the load rolled back, as before any write, and
// the event named. The other deferred unique items cannot fail once these
// hold: the other bulk tables take at most one row per event (event_json,
// state_events, event_to_state_groups, rejections, redactions,
// room_memberships, event_relations), an edge once per event and previous
// event (writeEvent), and state groups with IDs Ferry allocates.
func (d *deferral) createGuards(ctx context.Context, tx pgx.Tx) error {
	// In drop order: the unique event IDs first, so that an event twice
	// is named as such rather than by its stream ordering.
	memory := false
	for _, it := range d.items {
		if it.table != "events" || (it.kind != kindConstraint && !strings.HasPrefix(it.definition, "CREATE UNIQUE INDEX ")) {
			continue
		}
		if !memory {
			if _, err := tx.Exec(ctx, `SET LOCAL maintenance_work_mem = '512MB'`); err != nil {
				return err
			}
			memory = true
		}
		if _, err := tx.Exec(ctx, it.createSQL()); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
				return fmt.Errorf("the archive is damaged: %s (%s of events); the load was rolled back", pgErr.Detail, it.name)
			}
			return createError(it, err)
		}
	}
	return nil
}

// uniqueViolation is PostgreSQL's SQLSTATE unique_violation.
const uniqueViolation = "23505"

// restoreSaved creates again, in tx, the saved items of an earlier run
// that the database lacks.
func restoreSaved(ctx context.Context, tx pgx.Tx, archiveID string) error {
	missing, err := missingSaved(ctx, tx, archiveID)
	if err != nil {
		return err
	}
	for _, it := range missing {
		if _, err := tx.Exec(ctx, it.createSQL()); err != nil {
			return fmt.Errorf("create %s %s of %s again (dropped by an earlier, interrupted restore): %w", it.kind, it.name, it.table, err)
		}
	}
	return nil
}

func (it deferredItem) dropSQL() string {
	name := pgx.Identifier{it.name}.Sanitize()
	switch it.kind {
	case kindTrigger:
		return fmt.Sprintf("DROP TRIGGER %s ON %s", name, it.table)
	case kindIndex:
		return "DROP INDEX " + name
	default:
		return fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", it.table, name)
	}
}

func (it deferredItem) createSQL() string {
	switch it.kind {
	case kindTrigger, kindIndex:
		return it.definition
	default:
		return fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", it.table, pgx.Identifier{it.name}.Sanitize(), it.definition)
	}
}

// existsSQL asks whether the item is in the catalog ($1 table, $2 name).
func (it deferredItem) existsSQL() string {
	switch it.kind {
	case kindTrigger:
		return `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)`
	case kindIndex:
		return `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE i.indrelid = $1::regclass AND x.relname = $2)`
	default:
		return `SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2)`
	}
}
