package synapse

import (
	"bytes"
	"context"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// On a fresh Synapse database, deferring the indexes truncates the empty
// bulk tables, and rows copied frozen into them read back as they were
// given (NULL, and a string in a bigint column's text form, as pgx's
// CopyFrom takes them), frozen. Under REPEATABLE READ, where
// PostgreSQL refuses FREEZE, nothing is truncated and the load copies as
// before.
func TestFrozenLoad(t *testing.T) {
	ctx := context.Background()
	s := testenv.NewSynapse(t, serverName)
	conn, err := pgx.Connect(ctx, s.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pageinspect`); err != nil {
		t.Fatal(err)
	}

	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	d, err := deferIndexes(ctx, tx, "repeatable-read")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.items) == 0 || len(d.truncated) != 0 {
		t.Errorf("under REPEATABLE READ: %d items deferred, tables truncated %v; want the items deferred and nothing truncated", len(d.items), d.truncated)
	}
	tx.Rollback(ctx)

	tx, err = conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if d, err = deferIndexes(ctx, tx, "read-committed"); err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(d.truncated)); !slices.Equal(got, slices.Sorted(slices.Values(deferredTables))) {
		t.Fatalf("truncated %v, want every bulk table of the fresh database (%v)", got, deferredTables)
	}
	b := newPipelinedBatcher(tx, d.truncated)
	for _, row := range [][]any{{"$r1", "$t1", false, int64(5), false}, {"$r2", "$t2", false, "7", true}, {"$r3", "$t3", true, nil, true}} {
		if err := b.add(ctx, "redactions", redactionsColumns, row...); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, `SELECT event_id || ' ' || redacts || ' ' || have_censored || ' ' || COALESCE(received_ts::text, 'NULL') || ' ' || recheck
		FROM redactions ORDER BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"$r1 $t1 false 5 false", "$r2 $t2 false 7 true", "$r3 $t3 true NULL true"}; !slices.Equal(got, want) {
		t.Errorf("read back %q, want %q", got, want)
	}
	if n := unfrozenRows(t, tx, "redactions"); n != 0 {
		t.Errorf("%d rows of redactions not frozen", n)
	}
}

// unfrozenRows counts the rows of table that are not frozen (pageinspect:
// a frozen row's header has both HEAP_XMIN_COMMITTED and
// HEAP_XMIN_INVALID set).
func unfrozenRows(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, table string) int64 {
	t.Helper()
	var n int64
	err := q.QueryRow(context.Background(), `SELECT count(*) FROM generate_series(0, pg_relation_size($1::regclass) / current_setting('block_size')::int - 1) AS b,
		heap_page_items(get_raw_page($1::text, b::int)) AS i WHERE i.lp_flags = 1 AND i.t_infomask & 768 <> 768`, table).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// frozenBulkTables says, for each bulk table the restore does not update
// after loading it, how many of its rows are not frozen (none when the
// load copied it frozen). room_memberships, redactions and event_json get
// updates of the derived steps (participant, have_censored,
// replaces_state): their new row versions are not frozen.
func frozenBulkTables(t *testing.T, conn *pgx.Conn) map[string]int64 {
	t.Helper()
	if _, err := conn.Exec(context.Background(), `CREATE EXTENSION IF NOT EXISTS pageinspect`); err != nil {
		t.Fatal(err)
	}
	notFrozen := map[string]int64{}
	for _, table := range []string{"events", "state_events", "event_edges", "event_auth", "event_to_state_groups",
		"state_groups", "state_group_edges", "state_groups_state", "rejections", "event_relations"} {
		notFrozen[table] = unfrozenRows(t, conn, table)
	}
	return notFrozen
}

// appendCommon writes the bytes pgx's encoding plans write, for every
// value it takes; what it declines (a value out of the column's range,
// another type) goes to pgx.
func TestAppendCommonAgreesWithPgx(t *testing.T) {
	m := pgtype.NewMap()
	cases := []struct {
		oid  uint32
		v    any
		fast bool
	}{
		{pgtype.TextOID, "", true}, {pgtype.TextOID, "$event:example.org", true}, {pgtype.VarcharOID, "é\u2028", true},
		{pgtype.TextOID, nil, true}, {pgtype.Int8OID, nil, true},
		{pgtype.Int8OID, int64(0), true}, {pgtype.Int8OID, int64(-1), true}, {pgtype.Int8OID, int64(math.MaxInt64), true}, {pgtype.Int8OID, int64(math.MinInt64), true},
		{pgtype.Int8OID, 12345, true}, {pgtype.Int4OID, 4, true},
		{pgtype.Int4OID, int64(math.MaxInt32), true}, {pgtype.Int4OID, int64(math.MinInt32), true}, {pgtype.Int4OID, int64(math.MaxInt32) + 1, false},
		{pgtype.Int2OID, int64(-7), true}, {pgtype.Int2OID, int64(math.MaxInt16) + 1, false},
		{pgtype.BoolOID, true, true}, {pgtype.BoolOID, false, true},
		{pgtype.Int8OID, "42", false}, {pgtype.TextOID, 42, false}, {pgtype.Float8OID, 1.5, false},
	}
	for _, c := range cases {
		prefix := []byte{0xaa}
		got, ok := appendCommon(prefix, c.oid, c.v)
		if ok != c.fast {
			t.Errorf("appendCommon(%d, %#v): taken %v, want %v", c.oid, c.v, ok, c.fast)
			continue
		}
		if !ok {
			if !bytes.Equal(got, prefix) {
				t.Errorf("appendCommon(%d, %#v) declined but wrote %x", c.oid, c.v, got)
			}
			continue
		}
		want, err := pgxValue(m, prefix, c.oid, c.v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("appendCommon(%d, %#v) = %x, pgx %x (%v)", c.oid, c.v, got, want, err)
		}
	}
}

// pgxValue is one COPY field as pgx encodes it: its length (-1 for NULL)
// and its binary form.
func pgxValue(m *pgtype.Map, buf []byte, oid uint32, v any) ([]byte, error) {
	start := len(buf)
	out, err := m.Encode(oid, pgtype.BinaryFormatCode, v, appendInt32(buf, 0))
	if err != nil {
		return nil, err
	}
	if out == nil {
		return appendInt32(buf[:start], -1), nil
	}
	n := len(out) - start - 4
	out[start], out[start+1], out[start+2], out[start+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return out, nil
}
