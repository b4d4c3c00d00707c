package synapse

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// eventsOf collects the exported events (ID and exact JSON) in order.
func eventsOf(t *testing.T, cfg Config) []string {
	t.Helper()
	src, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var out []string
	for _, r := range sourcetest.Collect(t, src, source.Filter{}, source.Options{Encrypted: true})[archive.SectionEvents] {
		e := r.(*archive.Event)
		out = append(out, e.EventID+" "+string(e.JSON))
	}
	return out
}

// The two-stream read gives exactly what the joined query gives, also when
// event_json's physical order is shuffled, and when its look-ahead bound
// is hit midway and it hands over to the joined query.
func TestMergedEventReadMatchesJoined(t *testing.T) {
	ctx := context.Background()
	cfg := fixture(t, "synapse-1.67")
	conn, err := pgx.Connect(ctx, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{`CREATE TABLE shuffled AS SELECT * FROM event_json ORDER BY md5(event_id)`,
		`DELETE FROM event_json`, `INSERT INTO event_json SELECT * FROM shuffled`, `DROP TABLE shuffled`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	merged := eventsOf(t, cfg)
	if len(merged) != 1630 {
		t.Fatalf("%d events", len(merged))
	}
	defer func(rows, bytes int) { maxAheadRows, maxAheadBytes = rows, bytes }(maxAheadRows, maxAheadBytes)
	maxAheadRows = 20 // hits the bound early: the rest comes from the joined query
	handedOver := eventsOf(t, cfg)
	if !slices.Equal(merged, handedOver) {
		t.Fatal("hand-over from the merged read to the joined query changed the events")
	}
	maxAheadRows = 0 // no look-ahead allowed at all
	if joined := eventsOf(t, cfg); !slices.Equal(merged, joined) {
		t.Fatal("merged and joined reads differ")
	}
}
