package synapse

import (
	"context"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/source"
)

// The size estimate is within ±30% of the archive an export writes,
// from the events' JSON (a database never analysed) or from PostgreSQL's
// statistics of it.
func TestSizeEstimate(t *testing.T) {
	for _, name := range []string{"synapse-1.67", "synapse-latest-schema"} {
		cfg := fixture(t, name)
		for i, f := range []source.Filter{{}, {Media: source.MediaNone}, {Rooms: []string{roomSquare}},
			{}, {Media: source.MediaNone}, {Rooms: []string{roomSquare}}} {
			if i == 3 {
				analyze(t, cfg.Database)
			}
			src, err := Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			est, err := src.EstimateSize(context.Background(), f, source.Options{})
			src.Close()
			if err != nil {
				t.Fatal(err)
			}
			r, _ := export(t, cfg, f, source.Options{})
			var size int64 // the archive's bytes as stored
			for i := 0; i < r.Source().NumParts(); i++ {
				rc, err := r.Source().OpenPart(context.Background(), i)
				if err != nil {
					t.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, rc)
				rc.Close()
				size += n
			}
			ratio := float64(est) / float64(size)
			t.Logf("%s %+v: estimate %d, archive content %d (%.2fx)", name, f, est, size, ratio)
			if ratio < 0.7 || ratio > 1.3 {
				t.Errorf("%s %+v: estimate %d is %.2fx the archive's %d bytes", name, f, est, ratio, size)
			}
		}
	}
}

// analyze gives the database's tables their planner statistics.
func analyze(t *testing.T, db string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `ANALYZE`); err != nil {
		t.Fatal(err)
	}
}

// A selection's events are counted once per export: the size estimate
// counts them (from statistics), and the plan takes that count rather
// than reading the rooms' index again (the snapshot has not changed).
func TestSelectionIsCountedOnce(t *testing.T) {
	ctx := context.Background()
	cfg := fixture(t, "synapse-1.67")
	analyze(t, cfg.Database) // with statistics, the estimate counts the events instead of summing their JSON
	src, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f := source.Filter{Rooms: []string{roomSquare}}
	if _, err := src.EstimateSize(ctx, f, source.Options{}); err != nil {
		t.Fatal(err)
	}
	if len(src.selectedEvents) != 1 {
		t.Fatalf("the estimate counted %d selections, not 1", len(src.selectedEvents))
	}
	for k := range src.selectedEvents {
		src.selectedEvents[k] = 12345 // planted: the plan must take it
	}
	streams, err := src.Streams(ctx, f, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		if s.Name != source.StreamEvents {
			continue
		}
		if n, err := s.Count(ctx); err != nil || n != 12345 {
			t.Fatalf("the events stream counts %d (%v), not the estimate's 12345", n, err)
		}
		return
	}
	t.Fatal("no events stream")
}
