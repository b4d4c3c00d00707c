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
