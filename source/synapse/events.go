package synapse

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

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

func (p *plan) eventArgs() []any { return []any{p.rooms, p.since, p.until} }

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
func (p *plan) eventsStream() source.Stream {
	s := p.s
	args := len(p.eventArgs())
	query := `SELECT e.stream_ordering, e.event_id, e.room_id, e.state_key IS NOT NULL, e.outlier, ` + p.rejectionReason("e") + `,
		j.json, j.internal_metadata, g.state_group, red.id, red.sender, red.meta
		FROM events e JOIN event_json j ON j.event_id = e.event_id
		LEFT JOIN event_to_state_groups g ON g.event_id = e.event_id
		LEFT JOIN (SELECT DISTINCT ON (r.redacts) r.redacts, r.event_id AS id, re.sender, rj.internal_metadata AS meta FROM redactions r
			JOIN events re ON re.event_id = r.event_id JOIN event_json rj ON rj.event_id = r.event_id
			WHERE ` + p.notRejected("re") + ` ORDER BY r.redacts, re.stream_ordering) red ON red.redacts = e.event_id
		WHERE ` + p.eventCond() + ` AND e.stream_ordering > $` + strconv.Itoa(args+1) + ` ORDER BY e.stream_ordering`
	return source.Stream{
		Name: "events",
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT count(*) FROM events e WHERE `+p.eventCond(), p.eventArgs()...)
		},
		Run: func(ctx context.Context, cursor []byte, sink source.Sink) error {
			c := eventCursor{After: -1 << 62}
			if err := source.DecodeCursor(cursor, &c); err != nil {
				return err
			}
			var uncheckable []string
			err := s.each(ctx, query, append(p.eventArgs(), c.After), func(rows pgx.Rows) error {
				var so int64
				var ev archive.Event
				var isState bool
				var js, meta string
				var group *int64
				var redID, redSender, redMeta *string
				if err := rows.Scan(&so, &ev.EventID, &ev.RoomID, &isState, &ev.Outlier, &ev.Rejected, &js, &meta, &group,
					&redID, &redSender, &redMeta); err != nil {
					return err
				}
				ev.StreamOrdering = so
				ev.JSON = []byte(js)
				var im struct {
					SoftFailed bool `json:"soft_failed"`
				}
				if meta != "" {
					_ = json.Unmarshal([]byte(meta), &im) // unknown metadata shapes only lose the flag
				}
				ev.SoftFailed = im.SoftFailed
				switch {
				case ev.Outlier || group == nil:
					ev.StateBefore = 0
				case isState && ev.Rejected == "":
					ev.StateBefore = beforeSnapshotID(so)
				default:
					ev.StateBefore = uint64(*group)
				}
				if redID != nil && redactionApplies(ev.JSON, *redSender, redMeta) {
					ok, err := p.redact(&ev)
					if err != nil {
						return err
					}
					if !ok {
						uncheckable = append(uncheckable, ev.EventID)
						return nil
					}
				}
				if err := sink.Record(archive.SectionEvents, &ev); err != nil {
					return err
				}
				return sink.Checkpoint(source.EncodeCursor(eventCursor{After: so}))
			})
			if err != nil {
				return err
			}
			for _, id := range uncheckable {
				if err := omit(sink, "source_corrupt", archive.SectionEvents, id,
					"redacted event in a room version this Ferry cannot redact: left out rather than exported unredacted"); err != nil {
					return err
				}
			}
			return nil
		},
	}
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
		Name: "redactions",
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
