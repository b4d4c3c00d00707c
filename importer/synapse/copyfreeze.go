package synapse

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// COPY ... FREEZE writes rows already frozen and their pages all-visible,
// as VACUUM FREEZE would leave them. A row loaded plainly carries its
// inserting transaction's ID: the first scan after the commit (the
// read-back's count, Synapse's background updates, autovacuum) looks that
// transaction up for every row and sets the row's hint bits, dirtying
// every page of the table once more; PostgreSQL's own index builds of
// pg_restore pay the same. A fresh target's bulk tables are empty, so the
// rooms phase truncates them (deferIndexes) and loads them frozen.
//
// PostgreSQL allows FREEZE only into a table created or truncated in the
// current subtransaction, with no older snapshot held: the rooms phase is
// one transaction without savepoints, at READ COMMITTED (canFreeze).
// Frozen rows are visible to other sessions' snapshots taken before the
// commit, which breaks MVCC for them; nobody else may be connected to the
// target anyway (Check), and the truncation holds an ACCESS EXCLUSIVE
// lock on each table until the commit. A rollback (a kill) drops the
// truncated tables' new files with everything copied into them: the
// tables are as they were.

// canFreeze says whether tx may COPY ... FREEZE into a table it
// truncates: PostgreSQL refuses FREEZE when the transaction holds an
// older snapshot, which every transaction of REPEATABLE READ or
// SERIALIZABLE does (a server whose default_transaction_isolation says
// so).
func canFreeze(ctx context.Context, tx pgx.Tx) (bool, error) {
	var isolation string
	err := tx.QueryRow(ctx, `SELECT current_setting('transaction_isolation')`).Scan(&isolation)
	return isolation == "read committed", err
}

// copyFrozen is tx.CopyFrom with FREEZE, for a table truncated (or
// created) in tx's current subtransaction. pgx's CopyFrom writes its own
// COPY statement, without options; this one encodes the rows as pgx does
// (binary, each value by the column's type, a string parsed as the
// column's text form when it has no binary encoding), with types the
// caller looked up once per table (columnTypes).
func copyFrozen(ctx context.Context, tx pgx.Tx, table string, columns []string, oids []uint32, rows [][]any) (int64, error) {
	sql := fmt.Sprintf("COPY %s (%s) FROM STDIN WITH (FORMAT binary, FREEZE)", pgx.Identifier{table}.Sanitize(), columnList(columns))
	enc := &copyEncoder{m: tx.Conn().TypeMap(), oids: oids, rows: rows}
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, enc, sql)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// columnTypes looks up the type OIDs of table's columns, in order.
func columnTypes(ctx context.Context, tx pgx.Tx, table string, columns []string) ([]uint32, error) {
	sd, err := tx.Conn().PgConn().Prepare(ctx, "", fmt.Sprintf("SELECT %s FROM %s", columnList(columns), pgx.Identifier{table}.Sanitize()), nil)
	if err != nil {
		return nil, fmt.Errorf("the columns of %s: %w", table, err)
	}
	oids := make([]uint32, len(sd.Fields))
	for i, f := range sd.Fields {
		oids[i] = f.DataTypeOID
	}
	return oids, nil
}

// columnList is columns quoted and joined for a column list.
func columnList(columns []string) string {
	quoted := make([]string, len(columns))
	for i, c := range columns {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(quoted, ", ")
}

// copyEncoder reads as PostgreSQL's binary COPY format of rows: the
// header, each row (a field count, then each field's length, -1 for NULL,
// and bytes), the trailer. It encodes about 64 KiB at a time.
type copyEncoder struct {
	m       *pgtype.Map
	oids    []uint32
	rows    [][]any
	next    int
	started bool
	done    bool
	buf     []byte
	off     int
}

func (e *copyEncoder) Read(p []byte) (int, error) {
	for e.off == len(e.buf) {
		if e.done {
			return 0, io.EOF
		}
		if err := e.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, e.buf[e.off:])
	e.off += n
	return n, nil
}

func (e *copyEncoder) fill() error {
	e.buf, e.off = e.buf[:0], 0
	if !e.started {
		e.buf = append(e.buf, "PGCOPY\n\377\r\n\000"...)
		e.buf = appendInt32(appendInt32(e.buf, 0), 0) // flags, header extension length
		e.started = true
	}
	for len(e.buf) < 64<<10 && e.next < len(e.rows) {
		row := e.rows[e.next]
		if len(row) != len(e.oids) {
			return fmt.Errorf("row %d has %d values for %d columns", e.next, len(row), len(e.oids))
		}
		e.buf = appendInt16(e.buf, int16(len(row)))
		for i, v := range row {
			var err error
			if e.buf, err = e.appendValue(e.buf, e.oids[i], v); err != nil {
				return fmt.Errorf("row %d, column %d: %w", e.next, i+1, err)
			}
		}
		e.next++
	}
	if e.next == len(e.rows) {
		e.buf = appendInt16(e.buf, -1)
		e.done = true
	}
	return nil
}

// appendValue appends one field: its length (-1 for NULL) and its binary
// encoding.
func (e *copyEncoder) appendValue(buf []byte, oid uint32, v any) ([]byte, error) {
	if out, ok := appendCommon(buf, oid, v); ok {
		return out, nil
	}
	start := len(buf)
	buf = appendInt32(buf, -1)
	out, err := e.m.Encode(oid, pgtype.BinaryFormatCode, v, buf)
	if err != nil {
		// As pgx's CopyFrom: a string in the column's text form.
		s, ok := v.(string)
		if !ok {
			return nil, err
		}
		var parsed any
		if serr := e.m.Scan(oid, pgtype.TextFormatCode, []byte(s), &parsed); serr != nil {
			return nil, err
		}
		if out, err = e.m.Encode(oid, pgtype.BinaryFormatCode, parsed, buf); err != nil {
			return nil, err
		}
	}
	if out == nil { // NULL
		return buf, nil
	}
	n := len(out) - start - 4
	out[start], out[start+1], out[start+2], out[start+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return out, nil
}

// appendCommon is appendValue for the values the restore's bulk tables
// take nearly always (NULL, a string into text, an integer, a boolean),
// without pgx's look-up of an encoding plan for each: the same bytes
// (TestAppendCommonAgreesWithPgx). ok is false for anything else.
func appendCommon(buf []byte, oid uint32, v any) (out []byte, ok bool) {
	switch x := v.(type) {
	case nil:
		return appendInt32(buf, -1), true
	case string:
		if (oid == pgtype.TextOID || oid == pgtype.VarcharOID) && len(x) <= math.MaxInt32 {
			return append(appendInt32(buf, int32(len(x))), x...), true
		}
	case int64:
		switch {
		case oid == pgtype.Int8OID:
			return appendInt32(appendInt32(appendInt32(buf, 8), int32(x>>32)), int32(x)), true
		case oid == pgtype.Int4OID && x >= math.MinInt32 && x <= math.MaxInt32:
			return appendInt32(appendInt32(buf, 4), int32(x)), true
		case oid == pgtype.Int2OID && x >= math.MinInt16 && x <= math.MaxInt16:
			return appendInt16(appendInt32(buf, 2), int16(x)), true
		}
	case int:
		return appendCommon(buf, oid, int64(x))
	case bool:
		if oid == pgtype.BoolOID {
			b := byte(0)
			if x {
				b = 1
			}
			return append(appendInt32(buf, 1), b), true
		}
	}
	return buf, false
}

func appendInt16(b []byte, v int16) []byte { return append(b, byte(uint16(v)>>8), byte(v)) }

func appendInt32(b []byte, v int32) []byte {
	return append(b, byte(uint32(v)>>24), byte(uint32(v)>>16), byte(uint32(v)>>8), byte(v))
}
