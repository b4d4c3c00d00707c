package synapse

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// eventKeys collects what must be unique of the events a load writes: a
// 64-bit hash of each event ID and each stream ordering, 16 bytes an
// event. Validation passes an archive that holds an event twice, or gives
// two events one stream ordering; the events' unique constraints would
// then fail when they are built again after the load commits, leaving a
// target to initialise again. Sorting these finds such an archive before
// the commit, without building the constraints in the load's transaction
// (2-3 s at 1M events, with nothing else to do meanwhile); the rebuild
// builds them beside the others.
type eventKeys struct {
	seed   maphash.Seed
	ids    []uint64
	orders []int64
}

func newEventKeys() *eventKeys { return &eventKeys{seed: maphash.MakeSeed()} }

func (k *eventKeys) add(eventID string, streamOrdering int64) {
	k.ids = append(k.ids, maphash.String(k.seed, eventID))
	k.orders = append(k.orders, streamOrdering)
}

// check refuses, with the load rolled back, an archive whose events
// repeat a stream ordering, naming the events. When two event IDs share a
// hash (one event twice, or, about once in 10^7 archives of a million
// events, two IDs whose hashes collide) it builds the unique constraints
// of events in tx (guards), which says which.
func (k *eventKeys) check(ctx context.Context, tx pgx.Tx, guards func(context.Context, pgx.Tx) error) error {
	slices.Sort(k.orders)
	for i := 1; i < len(k.orders); i++ {
		if so := k.orders[i]; so == k.orders[i-1] {
			rows, _ := tx.Query(ctx, `SELECT event_id FROM events WHERE stream_ordering = $1 ORDER BY event_id`, so)
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("the archive is damaged: two of its events have stream ordering %d; the load was rolled back", so)
			}
			if ids = slices.Compact(ids); len(ids) == 1 {
				return fmt.Errorf("the archive is damaged: it holds event %s twice; the load was rolled back", ids[0])
			}
			return fmt.Errorf("the archive is damaged: its events %s have one stream ordering, %d; the load was rolled back", strings.Join(ids, ", "), so)
		}
	}
	slices.Sort(k.ids)
	for i := 1; i < len(k.ids); i++ {
		if k.ids[i] == k.ids[i-1] {
			return guards(ctx, tx)
		}
	}
	return nil
}
