package synapse

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

type roomCursor struct {
	Room string `json:"room"`
	Key  string `json:"key,omitempty"`
}

func (p *plan) roomsStream() source.Stream {
	s := p.s
	blocked := s.optional("blocked_rooms", "room_id", "EXISTS (SELECT 1 FROM blocked_rooms b WHERE b.room_id = r.room_id)", "false")
	partial := s.optional("partial_state_rooms", "room_id", "EXISTS (SELECT 1 FROM partial_state_rooms ps WHERE ps.room_id = r.room_id)", "false")
	query := `SELECT r.room_id, COALESCE(r.room_version, '1'), COALESCE(r.creator, ''), COALESCE(r.is_public, false), ` + blocked + `, ` + partial + `,
		ARRAY(SELECT a.room_alias FROM room_aliases a WHERE a.room_id = r.room_id ORDER BY a.room_alias),
		ARRAY(SELECT x.event_id FROM event_forward_extremities x WHERE x.room_id = r.room_id ORDER BY x.event_id),
		ARRAY(SELECT x.event_id FROM event_backward_extremities x WHERE x.room_id = r.room_id ORDER BY x.event_id),
		EXISTS (SELECT 1 FROM current_state_events c WHERE c.room_id = r.room_id)
		FROM rooms r WHERE ($1::text[] IS NULL OR r.room_id = ANY($1)) AND r.room_id > $2 ORDER BY r.room_id`
	return source.Stream{
		Name:  source.StreamRooms,
		Count: func(context.Context) (int64, error) { return int64(len(p.roomVersion)), nil },
		Run: func(ctx context.Context, cursor []byte, sink source.Sink) error {
			var c roomCursor
			if err := source.DecodeCursor(cursor, &c); err != nil {
				return err
			}
			return s.each(ctx, query, []any{p.rooms, c.Room}, func(rows pgx.Rows) error {
				var r archive.Room
				var hasState bool
				if err := rows.Scan(&r.RoomID, &r.Version, &r.Creator, &r.Public, &r.Blocked, &r.PartialState, &r.Aliases,
					&r.ForwardExtremities, &r.BackwardExtremities, &hasState); err != nil {
					return err
				}
				if hasState {
					r.CurrentState = currentSnapshotBase | p.roomOrdinal[r.RoomID]
				}
				if err := sink.Record(archive.SectionRooms, &r); err != nil {
					return err
				}
				return sink.Checkpoint(source.EncodeCursor(roomCursor{Room: r.RoomID}))
			})
		},
	}
}

// membershipsStream emits each member event of the rooms' current state.
func (p *plan) membershipsStream() source.Stream {
	s := p.s
	// A member event Synapse never stored is left out of the current
	// state, where it is reported; its membership goes with it.
	query := `SELECT c.room_id, c.state_key, m.membership, c.event_id, m.sender FROM current_state_events c
		JOIN room_memberships m ON m.event_id = c.event_id
		WHERE c.type = 'm.room.member' AND ($1::text[] IS NULL OR c.room_id = ANY($1)) AND ($2::text[] IS NULL OR c.state_key = ANY($2))
		AND ` + p.exported("c.event_id", "c.room_id") + `
		AND (c.room_id, c.state_key) > ($3, $4) ORDER BY c.room_id, c.state_key`
	return source.Stream{
		Name: source.StreamMemberships,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT count(*) FROM current_state_events c WHERE c.type = 'm.room.member'
				AND ($1::text[] IS NULL OR c.room_id = ANY($1)) AND ($2::text[] IS NULL OR c.state_key = ANY($2))`, p.rooms, p.users)
		},
		Run: func(ctx context.Context, cursor []byte, sink source.Sink) error {
			var c roomCursor
			if err := source.DecodeCursor(cursor, &c); err != nil {
				return err
			}
			return s.each(ctx, query, []any{p.rooms, p.users, c.Room, c.Key}, func(rows pgx.Rows) error {
				var m archive.Membership
				if err := rows.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.Sender); err != nil {
					return err
				}
				if err := sink.Record(archive.SectionMemberships, &m); err != nil {
					return err
				}
				return sink.Checkpoint(source.EncodeCursor(roomCursor{Room: m.RoomID, Key: m.UserID}))
			})
		},
	}
}

// receiptsStream emits read receipts (public, private, threaded).
func (p *plan) receiptsStream() source.Stream {
	s := p.s
	thread := s.optional("receipts_linearized", "thread_id", "COALESCE(thread_id, '')", "''")
	return source.Stream{
		Name: source.StreamReceipts,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT count(*) FROM receipts_linearized WHERE ($1::text[] IS NULL OR room_id = ANY($1))
				AND ($2::text[] IS NULL OR user_id = ANY($2))`, p.rooms, p.users)
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			return s.each(ctx, `SELECT room_id, user_id, receipt_type, `+thread+`, event_id, data FROM receipts_linearized
				WHERE ($1::text[] IS NULL OR room_id = ANY($1)) AND ($2::text[] IS NULL OR user_id = ANY($2))
				ORDER BY room_id, user_id, receipt_type, stream_id`, []any{p.rooms, p.users}, func(rows pgx.Rows) error {
				var r archive.Receipt
				var data string
				if err := rows.Scan(&r.RoomID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &data); err != nil {
					return err
				}
				if data != "" {
					r.Data = []byte(data)
					var d struct {
						TS int64 `json:"ts"`
					}
					if json.Unmarshal(r.Data, &d) == nil {
						r.TS = d.TS
					}
				}
				return sink.Record(archive.SectionReceipts, &r)
			})
		},
	}
}

type snapshotCursor struct {
	Phase int   `json:"phase"` // 0: state groups, 1: before state events, 2: current state
	After int64 `json:"after"`
}

// snapshotsStream emits, in three phases: Synapse's state groups as they
// are (delta chains over earlier groups); for every state event, the state
// before it (a one-key delta over the group after it, from the event's
// unsigned.replaces_state); and each room's current state.
func (p *plan) snapshotsStream() source.Stream {
	s := p.s
	return source.Stream{
		Name: source.StreamState,
		Count: func(ctx context.Context) (int64, error) {
			n, err := s.count(ctx, `SELECT count(*) FROM state_groups WHERE ($1::text[] IS NULL OR room_id = ANY($1))`, p.rooms)
			if err != nil {
				return 0, err
			}
			var m int64
			if p.rooms != nil {
				// Approximate (Count may be): the rooms' current state
				// entries stand for their state events, which no index
				// finds without visiting every event of the rooms.
				m, err = s.count(ctx, `SELECT count(*) FROM current_state_events WHERE room_id = ANY($1)`, p.rooms)
			} else {
				m, err = s.count(ctx, `SELECT count(*) FROM events e WHERE e.state_key IS NOT NULL AND `+p.eventCond(), p.eventArgs()...)
			}
			return n + m + int64(len(p.roomVersion)), err
		},
		Run: func(ctx context.Context, cursor []byte, sink source.Sink) error {
			var c snapshotCursor
			if err := source.DecodeCursor(cursor, &c); err != nil {
				return err
			}
			if c.Phase == 0 {
				if err := p.stateGroups(ctx, c.After, sink); err != nil {
					return err
				}
				c = snapshotCursor{Phase: 1, After: -1 << 62}
			}
			if c.Phase == 1 {
				if err := p.beforeSnapshots(ctx, c.After, sink); err != nil {
					return err
				}
			}
			return p.currentState(ctx, sink)
		},
	}
}

// keptGroups is the WITH clause of the state groups that exported events
// reach: the group of each exported event that is not an outlier (its
// state, or for a state event the state after it: the parent of its
// before-snapshot), and their ancestors along delta chains. It uses the
// parameters of eventCond.
//
// Synapse can leave groups that no event reaches: older versions stored a
// state event's group while computing its context and then dropped the
// event as a duplicate of the current state. Exporting them would only
// carry entries naming events that are nowhere.
func (p *plan) keptGroups() string {
	rooms := `$1::text[] IS NULL`
	if p.rooms != nil {
		rooms = `sg.room_id = ANY($1::text[])`
	}
	// OFFSET 0 keeps the EXISTS a probe per group (its first event
	// usually answers): PostgreSQL would otherwise join all the selected
	// events with event_json's whole index, though there are many fewer
	// groups than events. The inner OFFSET 0 has the group's events found
	// through the group index: planned for the first row only, PostgreSQL
	// took a sequential scan of event_to_state_groups, stopping at the
	// group's first entry, when its statistics put many events in each
	// group (38,800 buffers for the 694 groups of the 5% room of 1M
	// events, against 7,700).
	return `WITH RECURSIVE kept(id) AS (
		SELECT sg.id FROM state_groups sg WHERE ` + rooms + ` AND EXISTS (SELECT 1
			FROM (SELECT eg.event_id FROM event_to_state_groups eg WHERE eg.state_group = sg.id OFFSET 0) eg
			JOIN events e ON e.event_id = eg.event_id JOIN event_json ej ON ej.event_id = eg.event_id
			WHERE NOT e.outlier AND ` + p.eventCond() + ` OFFSET 0)
		UNION
		SELECT ed.prev_state_group FROM state_group_edges ed JOIN kept k ON ed.state_group = k.id)`
}

// stateGroups emits the groups of keptGroups. An entry naming an event the
// export does not hold (one Synapse never stored) is left out, so that the
// key keeps its value from the parent group, and reported.
func (p *plan) stateGroups(ctx context.Context, after int64, sink source.Sink) error {
	var cur *archive.StateSnapshot
	flush := func() error {
		if cur == nil {
			return nil
		}
		if err := sink.Record(archive.SectionStateSnapshots, cur); err != nil {
			return err
		}
		id := int64(cur.ID)
		cur = nil
		return sink.Checkpoint(source.EncodeCursor(snapshotCursor{Phase: 0, After: id}))
	}
	args := append(p.eventArgs(), after)
	// For a room selection, the groups are also found through the rooms'
	// index (a delta chain stays within its room, so this leaves none
	// out): PostgreSQL cannot tell how few groups the recursive kept
	// holds (it guessed 3,535 for the 69 of the 1% room of a 1M-event
	// server) and hashed every state group to join them, 10 ms of 40.
	rooms := ``
	if p.rooms != nil {
		rooms = ` AND g.room_id = ANY($1::text[])`
	}
	err := p.s.each(ctx, p.keptGroups()+`
		SELECT g.id, g.room_id, COALESCE(ed.prev_state_group, 0), s.type, s.state_key, s.event_id, `+p.exported("s.event_id", "g.room_id")+`
		FROM state_groups g LEFT JOIN state_group_edges ed ON ed.state_group = g.id
		LEFT JOIN state_groups_state s ON s.state_group = g.id
		WHERE g.id IN (SELECT id FROM kept)`+rooms+` AND g.id > $`+fmt.Sprint(len(args))+` ORDER BY g.id, s.type, s.state_key`, args, func(rows pgx.Rows) error {
		var id, parent int64
		var room string
		var typ, key, ev *string
		var stored bool
		if err := rows.Scan(&id, &room, &parent, &typ, &key, &ev, &stored); err != nil {
			return err
		}
		if cur == nil || cur.ID != uint64(id) {
			if err := flush(); err != nil {
				return err
			}
			cur = &archive.StateSnapshot{ID: uint64(id), RoomID: room, Parent: uint64(parent)}
		}
		switch {
		case typ == nil:
		case !stored:
			effect := "the key is left out"
			if parent != 0 {
				effect = "the key keeps its value from the group before"
			}
			return p.omitAbsent(sink, *ev, fmt.Sprintf("state group %d of %s names it for (%s, %q); %s", id, room, *typ, *key, effect))
		default:
			cur.Set = append(cur.Set, archive.StateEntry{Type: *typ, StateKey: *key, EventID: *ev})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// maxAbsentReported bounds the event IDs omitAbsent remembers to report
// each absent event once; past it, an event is reported per entry.
const maxAbsentReported = 10_000

// omitAbsent reports a state entry naming an event Synapse never stored,
// once per event ID.
func (p *plan) omitAbsent(sink source.Sink, eventID, where string) error {
	if p.absentReported[eventID] {
		return nil
	}
	if p.absentReported == nil {
		p.absentReported = map[string]bool{}
	}
	if len(p.absentReported) < maxAbsentReported {
		p.absentReported[eventID] = true
	}
	return omit(sink, "source_missing", archive.SectionStateSnapshots, eventID,
		where+": Synapse never stored the event (older versions kept the state group of an event they then dropped as a duplicate), so the entry is left out")
}

func (p *plan) beforeSnapshots(ctx context.Context, after int64, sink source.Sink) error {
	args := append(p.eventArgs(), after)
	// For a room selection, the rooms' state events are found through
	// their state groups (every accepted state event is in the group after
	// it) rather than by visiting every event of the rooms: 12 ms against
	// 155 ms for a 1% room of a 1M-event server.
	byGroups := ""
	if p.rooms != nil {
		byGroups = ` AND e.event_id IN (SELECT gs.event_id FROM state_groups sg JOIN state_groups_state gs ON gs.state_group = sg.id
			WHERE sg.room_id = ANY($1::text[]))`
	}
	return p.s.each(ctx, `SELECT e.stream_ordering, e.event_id, e.room_id, e.type, e.state_key, g.state_group, j.json,
		`+p.exported(`(j.json::json -> 'unsigned' ->> 'replaces_state')`, "e.room_id")+`
		FROM events e JOIN event_to_state_groups g ON g.event_id = e.event_id JOIN event_json j ON j.event_id = e.event_id
		WHERE e.state_key IS NOT NULL AND NOT e.outlier AND `+p.notRejected("e")+` AND `+p.eventCond()+byGroups+`
		AND e.stream_ordering > $`+fmt.Sprint(len(args))+` ORDER BY e.stream_ordering`, args, func(rows pgx.Rows) error {
		var so, group int64
		var id, room, typ, key, js string
		var replacedStored bool
		if err := rows.Scan(&so, &id, &room, &typ, &key, &group, &js, &replacedStored); err != nil {
			return err
		}
		var ev struct {
			Unsigned struct {
				ReplacesState string `json:"replaces_state"`
			} `json:"unsigned"`
		}
		if err := json.Unmarshal([]byte(js), &ev); err != nil {
			return fmt.Errorf("state event at stream ordering %d: %w", so, err)
		}
		snap := &archive.StateSnapshot{ID: beforeSnapshotID(so), RoomID: room, Parent: uint64(group)}
		if r := ev.Unsigned.ReplacesState; r != "" && replacedStored {
			snap.Set = []archive.StateEntry{{Type: typ, StateKey: key, EventID: r}}
		} else {
			snap.Remove = []archive.StateKey{{Type: typ, StateKey: key}}
			if r != "" {
				if err := p.omitAbsent(sink, r, fmt.Sprintf("state event %s of %s replaced it as (%s, %q); the state before %[1]s lacks the key", id, room, typ, key)); err != nil {
					return err
				}
			}
		}
		if err := sink.Record(archive.SectionStateSnapshots, snap); err != nil {
			return err
		}
		return sink.Checkpoint(source.EncodeCursor(snapshotCursor{Phase: 1, After: so}))
	})
}

// currentState emits one full snapshot per room. It is written in one
// go (no cursor inside): a resumed export repeats it.
func (p *plan) currentState(ctx context.Context, sink source.Sink) error {
	var cur *archive.StateSnapshot
	flush := func() error {
		if cur == nil {
			return nil
		}
		err := sink.Record(archive.SectionStateSnapshots, cur)
		cur = nil
		return err
	}
	err := p.s.each(ctx, `SELECT c.room_id, c.type, c.state_key, c.event_id, `+p.exported("c.event_id", "c.room_id")+` FROM current_state_events c
		WHERE ($1::text[] IS NULL OR c.room_id = ANY($1)) ORDER BY c.room_id, c.type, c.state_key`, []any{p.rooms}, func(rows pgx.Rows) error {
		var e archive.StateEntry
		var room string
		var stored bool
		if err := rows.Scan(&room, &e.Type, &e.StateKey, &e.EventID, &stored); err != nil {
			return err
		}
		if cur == nil || cur.RoomID != room {
			if err := flush(); err != nil {
				return err
			}
			ord, ok := p.roomOrdinal[room]
			if !ok {
				return nil // state of a room without a rooms row: not exported
			}
			cur = &archive.StateSnapshot{ID: currentSnapshotBase | ord, RoomID: room}
		}
		if !stored {
			return p.omitAbsent(sink, e.EventID, fmt.Sprintf("the current state of %s names it for (%s, %q); the key is left out", room, e.Type, e.StateKey))
		}
		cur.Set = append(cur.Set, e)
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
