package synapse

import (
	"reflect"
	"testing"
)

// A table's pending rows are copies of what add was given, in one array
// per batch; once a batch is copied its arrays, cleared, take the next
// batch's rows, and the rows handed over before are untouched until then.
func TestPendingRowsRecycleTheirArrays(t *testing.T) {
	var p pendingRows
	row := []any{"$a", int64(1)}
	p.add(row)
	row[0] = "changed by the caller" // add copied the values
	for i := range 99 {
		p.add([]any{"$b", int64(i)})
	}
	if len(p.rows) != 100 || !reflect.DeepEqual(p.rows[0], []any{"$a", int64(1)}) || !reflect.DeepEqual(p.rows[99], []any{"$b", int64(98)}) {
		t.Fatalf("rows %d, first %v, last %v", len(p.rows), p.rows[0], p.rows[99])
	}
	if cap(p.rows[0]) != 2 {
		t.Fatalf("a row's capacity is %d: an append to it would write into the next row", cap(p.rows[0]))
	}

	// Handed over (as handOff does), then copied and recycled (as wait does).
	copiedRows, copiedVals := p.rows, p.vals
	p.rows, p.vals = p.spareRows, p.spareVals
	p.add([]any{"$c", int64(7)}) // the next batch, in arrays of its own
	if !reflect.DeepEqual(copiedRows[0], []any{"$a", int64(1)}) {
		t.Fatalf("the batch in flight changed: %v", copiedRows[0])
	}
	first := &copiedVals[:1][0]
	p.spareRows, p.spareVals = cleared(copiedRows, copiedVals) // as wait does
	if copiedVals[0] != nil || copiedRows[0] != nil {
		t.Fatal("a recycled array still holds the copied values")
	}
	rows, vals := p.rows, p.vals
	p.rows, p.vals = p.spareRows, p.spareVals
	p.add([]any{"$d", int64(8)})
	if &p.vals[0] != first || !reflect.DeepEqual(p.rows, [][]any{{"$d", int64(8)}}) {
		t.Fatalf("the recycled arrays were not reused: %v", p.rows)
	}
	if !reflect.DeepEqual(rows, [][]any{{"$c", int64(7)}}) || len(vals) != 2 {
		t.Fatalf("the batch before changed: %v", rows)
	}
}
