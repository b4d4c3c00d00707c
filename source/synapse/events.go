package synapse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/matrixevent"
	"github.com/ferry-matrix/ferry/source"
)

// eventCond selects the export's events (alias e): the selected rooms;
// within the time range for timeline events, while state events are always
// included so that every exported snapshot refers to events in the archive.
// It uses parameters $1..$3 (see eventArgs). Unused filters become
// constant conditions, so that the planner sees plain predicates and uses
// Synapse's (room_id, stream_ordering) index for a room selection.
func (p *plan) eventCond() string {
	rooms := `$1::text[] IS NULL`
	if p.rooms != nil {
		rooms = `e.room_id = ANY($1::text[])`
	}
	times := `($2::bigint = 0 AND $3::bigint = 0)`
	if p.since != 0 || p.until != 0 {
		times = `(e.state_key IS NOT NULL OR (($2::bigint = 0 OR e.origin_server_ts >= $2) AND ($3::bigint = 0 OR e.origin_server_ts < $3)))`
	}
	return rooms + ` AND ` + times
}

// exported is the SQL condition that the event named by SQL expression id
// is one the export writes, given that it belongs to room (an expression
// naming a selected room): Synapse stored it (events and event_json), in
// that room, and a time range does not leave it out. It takes no
// parameters, so it fits into any query.
func (p *plan) exported(id, room string) string {
	times := ``
	if p.since != 0 || p.until != 0 {
		times = fmt.Sprintf(` AND (x.state_key IS NOT NULL OR ((%d = 0 OR x.origin_server_ts >= %[1]d) AND (%d = 0 OR x.origin_server_ts < %[2]d)))`, p.since, p.until)
	}
	return `EXISTS (SELECT 1 FROM events x JOIN event_json xj ON xj.event_id = x.event_id
		WHERE x.event_id = ` + id + ` AND x.room_id = ` + room + times + `)`
}

func (p *plan) eventArgs() []any { return []any{p.rooms, p.since, p.until} }

// roomCond is eventCond without the time range (parameter $1 only).
func (p *plan) roomCond() string {
	if p.rooms != nil {
		return `e.room_id = ANY($1::text[])`
	}
	return `$1::text[] IS NULL`
}

// inTimeRange is eventCond's time range, in Go.
func (p *plan) inTimeRange(isState bool, ts int64) bool {
	return isState || ((p.since == 0 || ts >= p.since) && (p.until == 0 || ts < p.until))
}

// notRejected is the SQL condition that event alias a was not rejected.
func (p *plan) notRejected(a string) string {
	if p.s.has("events", "rejection_reason") {
		return a + ".rejection_reason IS NULL"
	}
	return "NOT EXISTS (SELECT 1 FROM rejections rj WHERE rj.event_id = " + a + ".event_id)"
}

func (p *plan) rejectionReason(a string) string {
	if p.s.has("events", "rejection_reason") {
		return "COALESCE(" + a + ".rejection_reason, '')"
	}
	return "COALESCE((SELECT rj.reason FROM rejections rj WHERE rj.event_id = " + a + ".event_id), '')"
}

type eventCursor struct {
	After int64 `json:"after"` // stream ordering
}

// eventsStream emits events in stream order with their exact stored JSON;
// redacted events in redacted form (Synapse keeps the original until
// redaction_retention_period has passed, so the room version's redaction
// algorithm is applied here).
//
// A whole-server export, or a selection of a large share of it (p.scan),
// reads two streams at once, on two connections sharing the snapshot:
// event metadata in stream order, and event_json in its physical order
// (which is Synapse's insert order, close to stream order), matched by
// event ID with a bounded look-ahead. That spares PostgreSQL joining and
// sorting every event's JSON before the first row (docs/SYNAPSE.md,
// Performance). When the look-ahead outgrows its bound, or for small
// selections and resumed exports, one joined query is used.
func (p *plan) eventsStream() source.Stream {
	s := p.s
	return source.Stream{
		Name: source.StreamEvents,
		Count: func(ctx context.Context) (int64, error) {
			if p.selected >= 0 {
				return p.selected, nil
			}
			return s.count(ctx, `SELECT count(*) FROM events e WHERE `+p.eventCond(), p.eventArgs()...)
		},
		Run: func(ctx context.Context, cursor []byte, sink source.Sink) error {
			c := eventCursor{After: -1 << 62}
			if err := source.DecodeCursor(cursor, &c); err != nil {
				return err
			}
			em := &eventEmitter{p: p, sink: sink, after: c.After}
			if len(cursor) == 0 && p.scan {
				done, err := p.mergedEvents(ctx, em)
				if err != nil {
					return err
				}
				if done {
					return em.finish()
				}
			}
			if err := p.joinedEvents(ctx, em); err != nil {
				return err
			}
			return em.finish()
		},
	}
}

// eventEmitter turns event rows into records.
type eventEmitter struct {
	p           *plan
	sink        source.Sink
	after       int64 // stream ordering of the last event emitted
	uncheckable []string
}

type eventMeta struct {
	so                        int64
	ev                        archive.Event
	isState                   bool
	group                     pgtype.Int8
	redID, redSender, redMeta *string
}

// eventBody is an event's stored JSON and internal metadata.
type eventBody struct {
	json, meta []byte
}

// emit writes the event. js and meta need only last the call: the sink
// encodes the record before it returns (source.Sink), so callers may pass
// the driver's memory of the row (pgtype.DriverBytes) instead of a copy
// of every event's JSON (converting a string instead would make a second
// one: 7 µs an event in CPU profiles of a 1% room's export).
func (em *eventEmitter) emit(m *eventMeta, js, meta []byte) error {
	ev := &m.ev
	ev.StreamOrdering = m.so
	ev.JSON = js
	ev.SoftFailed = softFailed(meta)
	switch {
	case ev.Outlier || !m.group.Valid:
		ev.StateBefore = 0
	case m.isState && ev.Rejected == "":
		ev.StateBefore = beforeSnapshotID(m.so)
	default:
		ev.StateBefore = uint64(m.group.Int64)
	}
	em.after = m.so
	if m.redID != nil && redactionApplies(ev.JSON, *m.redSender, m.redMeta) {
		ok, err := em.p.redact(ev)
		if err != nil {
			return err
		}
		if !ok {
			em.uncheckable = append(em.uncheckable, ev.EventID)
			return nil
		}
	}
	if err := em.sink.Record(archive.SectionEvents, ev); err != nil {
		return err
	}
	return em.sink.Checkpoint(source.EncodeCursor(eventCursor{After: m.so}))
}

func (em *eventEmitter) finish() error {
	for _, id := range em.uncheckable {
		if err := omit(em.sink, "source_corrupt", archive.SectionEvents, id,
			"redacted event in a room version this Ferry cannot redact: left out rather than exported unredacted"); err != nil {
			return err
		}
	}
	return nil
}

// redactionJoin joins each event's first valid redaction (alias red).
// A whole server, and a large time-range selection, get one pass over all
// redactions. A room selection looks for the rooms' redaction events
// through the rooms' events (a redaction applies only within its room),
// which PostgreSQL reads for the selection anyway; a small time-range
// selection looks up each event's redactions by index. Either way the
// cost follows the selection.
func (p *plan) redactionJoin() string {
	switch {
	case p.rooms != nil:
		return `LEFT JOIN (SELECT DISTINCT ON (r.redacts) r.redacts, r.event_id AS id, re.sender, rj.internal_metadata AS meta
			FROM events re JOIN redactions r ON r.event_id = re.event_id JOIN event_json rj ON rj.event_id = r.event_id
			WHERE re.room_id = ANY($1::text[]) AND re.type = 'm.room.redaction' AND ` + p.notRejected("re") + `
			ORDER BY r.redacts, re.stream_ordering) red ON red.redacts = e.event_id`
	case !p.scan:
		return `LEFT JOIN LATERAL (SELECT r.event_id AS id, re.sender, rj.internal_metadata AS meta FROM redactions r
			JOIN events re ON re.event_id = r.event_id JOIN event_json rj ON rj.event_id = r.event_id
			WHERE r.redacts = e.event_id AND ` + p.notRejected("re") + ` ORDER BY re.stream_ordering LIMIT 1) red ON true`
	}
	return `LEFT JOIN (SELECT DISTINCT ON (r.redacts) r.redacts, r.event_id AS id, re.sender, rj.internal_metadata AS meta FROM redactions r
			JOIN events re ON re.event_id = r.event_id JOIN event_json rj ON rj.event_id = r.event_id
			WHERE ` + p.notRejected("re") + ` ORDER BY r.redacts, re.stream_ordering) red ON red.redacts = e.event_id`
}

// stateGroup is the select expression of event e's state group, for a
// query reading all events of the selected rooms (wholeRooms) or only
// the selected ones. Its cost follows the selection rather than the
// table. Rooms read whole get the events of each of the rooms' state
// groups (adjacent entries of one index: 0.65 buffers an event, where a
// lookup by event ID descends the index for each, and a hash join reads
// the whole table: 4.1 s against 0.2 s for the 5% room of 1M events, on a
// loaded machine). A whole server, or another large selection, joins the
// table (one hash join); a small one looks each event's group up.
func (p *plan) stateGroup(wholeRooms bool) (expr, join string) {
	switch {
	case p.rooms != nil && wholeRooms:
		return `g.state_group`, `LEFT JOIN (SELECT eg.event_id, eg.state_group FROM state_groups sg
			CROSS JOIN LATERAL (SELECT eg.event_id, eg.state_group FROM event_to_state_groups eg WHERE eg.state_group = sg.id OFFSET 0) eg
			WHERE sg.room_id = ANY($1::text[])) g ON g.event_id = e.event_id`
	case p.scan:
		return `g.state_group`, `LEFT JOIN event_to_state_groups g ON g.event_id = e.event_id`
	}
	return `(SELECT g.state_group FROM event_to_state_groups g WHERE g.event_id = e.event_id)`, ``
}

// joinedEvents reads events after em.after with one joined query.
func (p *plan) joinedEvents(ctx context.Context, em *eventEmitter) error {
	args := len(p.eventArgs())
	group, groupJoin := p.stateGroup(p.since == 0 && p.until == 0)
	cols := `e.stream_ordering, e.event_id, e.room_id, e.state_key IS NOT NULL AS is_state, e.outlier, ` + p.rejectionReason("e") + ` AS rejected,
		` + group + ` AS state_group, red.id, red.sender, red.meta`
	from := func(jsonJoin string) string {
		return `FROM events e ` + jsonJoin + `
		` + groupJoin + `
		` + p.redactionJoin() + `
		WHERE ` + p.eventCond() + ` AND e.stream_ordering > $` + strconv.Itoa(args+1) + ` ORDER BY e.stream_ordering`
	}
	query := `SELECT ` + cols + `, j.json, j.internal_metadata ` + from(`JOIN event_json j ON j.event_id = e.event_id`)
	if !p.scan {
		// Index lookups, as the plan chose, made after the sort by stream
		// order (OFFSET 0 fences both): the rows stream out as each
		// event's JSON is looked up, while Ferry writes the ones before.
		// Looked up before the sort (where PostgreSQL puts them), every
		// event waited for the last lookup: 0.2 s for a 1% room of a
		// 1M-event server. Left to itself, near the threshold the planner
		// would also scan all of event_json and sort the joined rows (for
		// the 5% room of 1M events, 9.9 s against 8.2 s for the lookups,
		// on a loaded machine).
		query = `SELECT m.*, j.json, j.internal_metadata FROM (SELECT ` + cols + ` ` + from(``) + ` OFFSET 0) m
			CROSS JOIN LATERAL (SELECT j.json, j.internal_metadata FROM event_json j WHERE j.event_id = m.event_id OFFSET 0) j
			ORDER BY m.stream_ordering`
	}
	// The row's JSON, metadata and room ID are read in place (valid until
	// the next row: emit is done with them by then); a copy of each was
	// garbage that grew a small selection's heap, and on this VM every
	// first touch of a page costs 15-17 µs (docs/SYNAPSE.md).
	// So is the row's record: one eventMeta serves every row (a new one
	// per row was 1.2 µs an event of a 1% room's export, mostly for pages
	// the heap had not touched yet).
	var js, meta, room pgtype.DriverBytes
	var m eventMeta
	return p.s.each(ctx, query, append(p.eventArgs(), em.after), func(rows pgx.Rows) error {
		m = eventMeta{}
		if err := rows.Scan(&m.so, &m.ev.EventID, &room, &m.isState, &m.ev.Outlier, &m.ev.Rejected, &m.group,
			&m.redID, &m.redSender, &m.redMeta, &js, &meta); err != nil {
			return err
		}
		m.ev.RoomID = p.roomID(room)
		return em.emit(&m, js, meta)
	})
}

// Look-ahead bounds of mergedEvents (variables for tests).
var (
	maxAheadRows  = 200_000
	maxAheadBytes = 96 << 20
)

// mergedEvents reads the selected events by matching metadata in stream
// order with event_json in physical order. Both read the selected rooms
// whole (event_json has no other column to select by); a time range is
// applied here. It returns false (having emitted a prefix) when it gave
// up: no shared snapshot, or a look-ahead past its bounds.
func (p *plan) mergedEvents(ctx context.Context, em *eventEmitter) (bool, error) {
	s := p.s
	hconn, htx, err := s.helper(ctx)
	if err != nil || htx == nil {
		return false, nil // fall back to the joined query
	}
	defer func() {
		htx.Rollback(context.Background())
		hconn.Close(context.Background())
	}()
	jquery, jargs := `SELECT event_id, json, internal_metadata FROM event_json`, []any(nil)
	if p.rooms != nil {
		// A sequential scan in physical order: parallel workers would
		// return the rows out of it.
		if _, err := htx.Exec(ctx, `SET LOCAL max_parallel_workers_per_gather = 0`); err != nil {
			return false, err
		}
		jquery, jargs = jquery+` WHERE room_id = ANY($1::text[])`, []any{p.rooms}
	}
	jrows, err := htx.Query(ctx, jquery, jargs...)
	if err != nil {
		return false, err
	}
	defer jrows.Close()
	ahead := map[string]eventBody{}
	var aheadBytes int
	next := func(want string) (eventBody, bool, error) {
		if b, ok := ahead[want]; ok {
			delete(ahead, want)
			aheadBytes -= len(b.json) + len(b.meta)
			return b, true, nil
		}
		for jrows.Next() {
			var id string
			var b eventBody
			if err := jrows.Scan(&id, &b.json, &b.meta); err != nil {
				return eventBody{}, false, err
			}
			if id == want {
				return b, true, nil
			}
			ahead[id] = b
			aheadBytes += len(b.json) + len(b.meta)
			if len(ahead) > maxAheadRows || aheadBytes > maxAheadBytes {
				return eventBody{}, false, errTooFarAhead
			}
		}
		return eventBody{}, false, jrows.Err()
	}
	group, groupJoin := p.stateGroup(true)
	query := `SELECT e.stream_ordering, e.event_id, e.room_id, e.state_key IS NOT NULL, e.outlier, ` + p.rejectionReason("e") + `,
		` + group + `, red.id, red.sender, red.meta, COALESCE(e.origin_server_ts, 0)
		FROM events e ` + groupJoin + `
		` + p.redactionJoin() + `
		WHERE ` + p.roomCond() + ` ORDER BY e.stream_ordering`
	var m eventMeta // one for every row, as in joinedEvents
	err = s.each(ctx, query, []any{p.rooms}, func(rows pgx.Rows) error {
		m = eventMeta{}
		var ts int64
		if err := rows.Scan(&m.so, &m.ev.EventID, &m.ev.RoomID, &m.isState, &m.ev.Outlier, &m.ev.Rejected, &m.group,
			&m.redID, &m.redSender, &m.redMeta, &ts); err != nil {
			return err
		}
		b, found, err := next(m.ev.EventID)
		if err != nil {
			return err
		}
		if !found || !p.inTimeRange(m.isState, ts) {
			return nil // no stored JSON (the joined query would not return it either), or outside the time range
		}
		return em.emit(&m, b.json, b.meta)
	})
	if errors.Is(err, errTooFarAhead) {
		return false, nil // continue after em.after with the joined query
	}
	return err == nil, err
}

var errTooFarAhead = errors.New("event_json is far from stream order")

// softFailed reads the flag from Synapse's internal metadata; unknown
// shapes only lose the flag.
func softFailed(meta []byte) bool {
	if !bytes.Contains(meta, []byte("soft_failed")) {
		return false
	}
	var im struct {
		SoftFailed bool `json:"soft_failed"`
	}
	_ = json.Unmarshal(meta, &im)
	return im.SoftFailed
}

// redactionApplies follows Synapse: a redaction by the original sender's
// server applies; one from another server only once it passed the power
// level check (its internal metadata has recheck_redaction false).
func redactionApplies(original []byte, redactionSender string, redactionMeta *string) bool {
	var ev struct {
		Sender string `json:"sender"`
	}
	if json.Unmarshal(original, &ev) == nil && matrixevent.ServerOf(ev.Sender) == matrixevent.ServerOf(redactionSender) {
		return true
	}
	if redactionMeta == nil {
		return false
	}
	var m struct {
		Recheck *bool `json:"recheck_redaction"`
	}
	return json.Unmarshal([]byte(*redactionMeta), &m) == nil && m.Recheck != nil && !*m.Recheck
}

// redact replaces the event's JSON by its redacted form; false when the
// room version is unknown.
func (p *plan) redact(ev *archive.Event) (bool, error) {
	v, err := matrixevent.LookupRoomVersion(p.roomVersion[ev.RoomID])
	if err != nil {
		return false, nil
	}
	red, err := matrixevent.Redact(v, ev.JSON)
	if err != nil {
		return false, fmt.Errorf("redact %s: %w", ev.EventID, err)
	}
	if p.o.RedactedOriginals && p.o.Encrypted {
		ev.OriginalJSON = ev.JSON
	}
	ev.JSON, ev.Redacted = red, true
	return true, nil
}

// redactionsStream emits a record per applied redaction of an exported event.
func (p *plan) redactionsStream() source.Stream {
	s := p.s
	query := `SELECT r.redacts, r.event_id, e.room_id, re.sender, rj.internal_metadata, oj.json FROM redactions r
		JOIN events e ON e.event_id = r.redacts JOIN event_json oj ON oj.event_id = r.redacts
		JOIN events re ON re.event_id = r.event_id JOIN event_json rj ON rj.event_id = r.event_id
		WHERE ` + p.eventCond() + ` AND ` + p.notRejected("re") + ` ORDER BY re.stream_ordering`
	return source.Stream{
		Name: source.StreamRedactions,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT count(*) FROM redactions r JOIN events e ON e.event_id = r.redacts WHERE `+p.eventCond(), p.eventArgs()...)
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			seen := map[string]bool{}
			return s.each(ctx, query, p.eventArgs(), func(rows pgx.Rows) error {
				var r archive.Redaction
				var sender, meta, original string
				if err := rows.Scan(&r.EventID, &r.RedactedBy, &r.RoomID, &sender, &meta, &original); err != nil {
					return err
				}
				if seen[r.EventID] || !redactionApplies([]byte(original), sender, &meta) {
					return nil
				}
				seen[r.EventID] = true
				return sink.Record(archive.SectionRedactions, &r)
			})
		},
	}
}
