package synapse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

// plan is one export's selection, shared by its streams.
type plan struct {
	s *Source
	f source.Filter
	o source.Options
	// users selects per-user data; nil: all users.
	users []string
	// rooms selects rooms; nil: all rooms.
	rooms []string
	// roomVersion of every selected room; roomOrdinal numbers them (in
	// room ID order) for the current-state snapshot IDs.
	roomVersion map[string]string
	roomOrdinal map[string]uint64
	// roomIDs maps each selected room's ID to itself: roomID hands out
	// one string per room instead of one per row.
	roomIDs      map[string]string
	since, until int64 // ms; 0: open
	// selected is the number of events a selection exports (counted once
	// by choosePlan); -1 for a whole server, whose Count is its own.
	selected int64
	// scan: the events are read by passes over whole tables (hash joins,
	// event_json in physical order), as for a whole server, rather than
	// by per-event index lookups; see choosePlan.
	scan bool
	// absentReported holds the events Synapse never stored that state
	// entries name and that were reported (omitAbsent).
	absentReported map[string]bool
}

// Snapshot IDs: Synapse's state group IDs are used as they are; two more
// kinds are made up, far above any group ID:
//   - the state before a state event (its group is the state after it),
//     keyed by the event's stream ordering;
//   - each room's current state.
const (
	beforeSnapshotBase  = uint64(1) << 62
	currentSnapshotBase = uint64(1) << 61
)

func beforeSnapshotID(streamOrdering int64) uint64 {
	return beforeSnapshotBase | (uint64(streamOrdering) & (beforeSnapshotBase - 1))
}

// Caps are the Synapse source's capabilities: every part of a filter.
func Caps() source.Capabilities {
	return source.Capabilities{Implementation: "synapse", Rooms: true, Users: true, TimeRange: true, ReferencedMedia: true}
}

// Capabilities implements source.Source (Caps).
func (s *Source) Capabilities() source.Capabilities { return Caps() }

// Streams returns the export's streams in order.
func (s *Source) Streams(ctx context.Context, f source.Filter, o source.Options) ([]source.Stream, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if err := Caps().Check(f); err != nil {
		return nil, err
	}
	if o.PrivateServerKey && (!f.IsFull() || !o.Encrypted) {
		return nil, errors.New("the private signing key goes only into full, encrypted exports")
	}
	p := &plan{s: s, f: f, o: o, users: nilIfEmpty(f.Users), rooms: nilIfEmpty(f.Rooms)}
	if !f.Since.IsZero() {
		p.since = f.Since.UnixMilli()
	}
	if !f.Until.IsZero() {
		p.until = f.Until.UnixMilli()
	}
	if p.users != nil && p.rooms == nil {
		// A user selection without rooms: the rooms those users are in.
		var err error
		p.rooms, err = s.strings(ctx, `SELECT DISTINCT room_id FROM current_state_events
			WHERE type = 'm.room.member' AND state_key = ANY($1) ORDER BY room_id`, p.users)
		if err != nil {
			return nil, err
		}
		if p.rooms == nil {
			p.rooms = []string{}
		}
	}
	if err := p.loadRooms(ctx); err != nil {
		return nil, err
	}
	if err := p.choosePlan(ctx); err != nil {
		return nil, err
	}
	streams := []source.Stream{s.serverKeysStream(o)}
	if len(f.Rooms) == 0 || p.users != nil { // a rooms-only selection carries no accounts
		streams = append(streams, p.usersStream(), p.devicesStream(), p.e2eeStream(), p.backupsStream(),
			p.pushersStream(), p.filtersStream(), p.accountDataStream())
	}
	streams = append(streams, p.roomsStream(), p.membershipsStream(), p.receiptsStream(), p.snapshotsStream(),
		p.eventsStream(), p.redactionsStream(), p.mediaStream())
	if f.IsFull() {
		streams = append(streams, p.vendorStream())
	}
	return streams, nil
}

// selective reports whether the export selects rooms (given, or those
// of the selected users) or a time range, rather than reading every row
// of the tables it reads (a full export, with or without media).
func (p *plan) selective() bool { return p.rooms != nil || p.since != 0 || p.until != 0 }

// scanShare is the share of the server's events from which a selection
// reads its events the way a whole-server export does (event_json in its
// physical order, each table in one pass, hash joins) instead of looking
// each event up by index. Index lookups cost per event several times
// what a pass costs per row, but a pass costs for the whole table; on
// the benchmark servers, with the lookups streaming (joinedEvents), the
// two cost the same PostgreSQL CPU near 10% of the events: at 1M events
// the 5% room took 1.0 s by lookups and 1.7 s by a pass, the 15% room
// 2.7 s and 2.2 s (docs/SYNAPSE.md, Performance).
var scanShare = 0.10 // a variable for tests

// choosePlan counts a selection's events, compares them with the
// server's and picks the plan (p.scan) by that share, and settles the
// transaction's planner settings.
func (p *plan) choosePlan(ctx context.Context) error {
	p.selected, p.scan = -1, true
	if !p.selective() {
		return nil
	}
	var err error
	if p.selected, err = p.countSelected(ctx); err != nil {
		return fmt.Errorf("count the selected events: %w", err)
	}
	var total float64
	if err := p.s.tx.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'events'::regclass`).Scan(&total); err != nil {
		return err
	}
	if total <= 0 { // never analysed: count
		n, err := p.s.count(ctx, `SELECT count(*) FROM events`)
		if err != nil {
			return err
		}
		total = float64(n)
	}
	p.scan = float64(p.selected) >= scanShare*total
	// PostgreSQL's parallel plans for a selection's queries (workers
	// started per query, a Gather Merge over their sorts) cost several
	// times the lookups themselves: 0.83 s against 0.25 s for the events
	// of a 1% room of a 1M-event server. JIT compilation doesn't pay off
	// for them either, and their sorts and hashes fit in memory with a
	// little more than the default 4 MB. SET LOCAL lasts as long as the
	// export's read-only transaction.
	for _, set := range []string{`SET LOCAL max_parallel_workers_per_gather = 0`, `SET LOCAL jit = off`, `SET LOCAL work_mem = '64MB'`} {
		if _, err := p.s.tx.Exec(ctx, set); err != nil {
			return err
		}
	}
	return nil
}

// countSelected counts the events eventCond selects, once per selection:
// the size estimate (EstimateSize) and the plan (choosePlan) both need
// the number, and the export's snapshot does not change in between (a
// second count of the 15% room of a 1M-event server read 150,000 index
// entries again).
func (p *plan) countSelected(ctx context.Context) (int64, error) {
	key := fmt.Sprintf("all %d %d", p.since, p.until)
	if p.rooms != nil {
		rooms := slices.Clone(p.rooms)
		slices.Sort(rooms)
		key = fmt.Sprintf("%q %d %d", rooms, p.since, p.until)
	}
	if n, ok := p.s.selectedEvents[key]; ok {
		return n, nil
	}
	n, err := p.s.count(ctx, `SELECT count(*) FROM events e WHERE `+p.eventCond(), p.eventArgs()...)
	if err != nil {
		return 0, err
	}
	if p.s.selectedEvents == nil {
		p.s.selectedEvents = map[string]int64{}
	}
	p.s.selectedEvents[key] = n
	return n, nil
}

func nilIfEmpty(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	return v
}

// loadRooms reads the selected rooms' versions; a room that does not exist
// is an error naming it.
func (p *plan) loadRooms(ctx context.Context) error {
	p.roomVersion = map[string]string{}
	p.roomOrdinal = map[string]uint64{}
	p.roomIDs = map[string]string{}
	rows, err := p.s.tx.Query(ctx, `SELECT room_id, COALESCE(room_version, '1') FROM rooms
		WHERE ($1::text[] IS NULL OR room_id = ANY($1)) ORDER BY room_id`, p.rooms)
	if err != nil {
		return err
	}
	var ids []string
	for rows.Next() {
		var id, v string
		if err := rows.Scan(&id, &v); err != nil {
			rows.Close()
			return err
		}
		p.roomVersion[id] = v
		p.roomIDs[id] = id
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, want := range p.rooms {
		if _, ok := p.roomVersion[want]; !ok {
			return fmt.Errorf("room %s is not on this server (check the room ID, e.g. with the admin API)", want)
		}
	}
	sort.Strings(ids)
	for i, id := range ids {
		p.roomOrdinal[id] = uint64(i + 1)
	}
	return nil
}

// roomID returns the room ID read into b (memory the driver reuses) as
// a string: the selected room's own, or a new one for a room without a
// rooms row.
func (p *plan) roomID(b []byte) string {
	if id, ok := p.roomIDs[string(b)]; ok {
		return id
	}
	return string(b)
}

// strings runs a query returning one text column.
func (s *Source) strings(ctx context.Context, sql string, args ...any) ([]string, error) {
	rows, err := s.tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// count runs a count(*) query.
func (s *Source) count(ctx context.Context, sql string, args ...any) (int64, error) {
	var n int64
	err := s.tx.QueryRow(ctx, sql, args...).Scan(&n)
	return n, err
}

// each runs a query and calls fn per row; fn must not query.
func (s *Source) each(ctx context.Context, sql string, args []any, fn func(pgx.Rows) error) error {
	rows, err := s.tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// omit is a shorthand for an omission record.
func omit(sink source.Sink, code, item, id, detail string) error {
	return sink.Omit(archive.Omission{Code: code, Item: item, ID: id, Detail: detail})
}

// optional returns column expression expr when table has column, else
// the fallback SQL.
func (s *Source) optional(table, column, expr, fallback string) string {
	if s.has(table, column) {
		return expr
	}
	return fallback
}
