package dendrite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/matrixevent"
	"github.com/ferry-matrix/ferry/source"
)

// roomSet selects rooms by ID (nil: all).
type roomSet map[string]bool

// newRoomSet selects rooms (nil: all; empty: none).
func newRoomSet(rooms []string) roomSet {
	if rooms == nil {
		return nil
	}
	m := roomSet{}
	for _, r := range rooms {
		m[r] = true
	}
	return m
}

func (r roomSet) has(id string) bool { return r == nil || r[id] }

type roomRow struct {
	nid      int64
	id       string
	version  string
	latest   []int64
	snapshot int64
}

func (s *Source) rooms(ctx context.Context, sel roomSet) ([]roomRow, error) {
	var out []roomRow
	err := s.roomserver.each(ctx, `SELECT room_nid, room_id, room_version, latest_event_nids, state_snapshot_nid FROM roomserver_rooms ORDER BY room_id`, nil,
		func(rows *sql.Rows) error {
			var r roomRow
			var latest string
			if err := rows.Scan(&r.nid, &r.id, &r.version, &latest, &r.snapshot); err != nil {
				return err
			}
			if !sel.has(r.id) {
				return nil
			}
			if err := parseNIDs(latest, &r.latest); err != nil {
				return fmt.Errorf("room %s: latest_event_nids: %w", r.id, err)
			}
			out = append(out, r)
			return nil
		})
	return out, err
}

// eventIDs maps event NIDs to event IDs.
func (s *Source) eventIDs(ctx context.Context, nids []int64) (map[int64]string, error) {
	out := map[int64]string{}
	for start := 0; start < len(nids); start += 500 {
		batch := nids[start:min(start+500, len(nids))]
		ph := strings.TrimSuffix(strings.Repeat("?,", len(batch)), ",")
		args := make([]any, len(batch))
		for i, n := range batch {
			args[i] = n
		}
		err := s.roomserver.each(ctx, `SELECT event_nid, event_id FROM roomserver_events WHERE event_nid IN (`+ph+`)`, args, func(rows *sql.Rows) error {
			var nid int64
			var id string
			if err := rows.Scan(&nid, &id); err != nil {
				return err
			}
			out[nid] = id
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Source) roomsStream(sel roomSet) source.Stream {
	return source.Stream{Name: source.StreamRooms,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			rooms, err := s.rooms(ctx, sel)
			if err != nil {
				return err
			}
			aliases := map[string][]string{}
			if err := s.roomserver.each(ctx, `SELECT alias, room_id FROM roomserver_room_aliases ORDER BY alias`, nil, func(rows *sql.Rows) error {
				var a, r string
				if err := rows.Scan(&a, &r); err != nil {
					return err
				}
				aliases[r] = append(aliases[r], a)
				return nil
			}); err != nil {
				return err
			}
			public := map[string]bool{}
			if err := s.roomserver.each(ctx, `SELECT room_id FROM roomserver_published WHERE published`, nil, func(rows *sql.Rows) error {
				var r string
				if err := rows.Scan(&r); err != nil {
					return err
				}
				public[r] = true
				return nil
			}); err != nil {
				return err
			}
			var latest []int64
			for _, r := range rooms {
				latest = append(latest, r.latest...)
			}
			ids, err := s.eventIDs(ctx, latest)
			if err != nil {
				return err
			}
			creators := map[string]string{}
			if err := s.roomserver.each(ctx, `SELECT r.room_id, j.event_json FROM roomserver_events e JOIN roomserver_rooms r ON r.room_nid = e.room_nid
				JOIN roomserver_event_json j ON j.event_nid = e.event_nid JOIN roomserver_event_types t ON t.event_type_nid = e.event_type_nid
				WHERE t.event_type = 'm.room.create'`, nil, func(rows *sql.Rows) error {
				var room, js string
				if err := rows.Scan(&room, &js); err != nil {
					return err
				}
				var ev struct {
					Sender string `json:"sender"`
				}
				json.Unmarshal([]byte(js), &ev) // a malformed create event only loses the creator
				creators[room] = ev.Sender
				return nil
			}); err != nil {
				return err
			}
			for _, r := range rooms {
				rec := &archive.Room{RoomID: r.id, Version: r.version, Creator: creators[r.id], Public: public[r.id], Aliases: aliases[r.id], CurrentState: uint64(r.snapshot)}
				for _, nid := range r.latest {
					rec.ForwardExtremities = append(rec.ForwardExtremities, ids[nid])
				}
				if err := sink.Record(archive.SectionRooms, rec); err != nil {
					return err
				}
			}
			return nil
		}}
}

type stateEntry struct {
	room    int64
	typ     string
	key     string
	eventID string
}

// stateEvents maps the NIDs of state events to their keys.
func (s *Source) stateEvents(ctx context.Context) (map[int64]stateEntry, error) {
	out := map[int64]stateEntry{}
	err := s.roomserver.each(ctx, `SELECT e.event_nid, e.room_nid, t.event_type, k.event_state_key, e.event_id FROM roomserver_events e
		JOIN roomserver_event_types t ON t.event_type_nid = e.event_type_nid
		JOIN roomserver_event_state_keys k ON k.event_state_key_nid = e.event_state_key_nid
		WHERE e.event_state_key_nid <> 0`, nil, func(rows *sql.Rows) error {
		var nid int64
		var e stateEntry
		if err := rows.Scan(&nid, &e.room, &e.typ, &e.key, &e.eventID); err != nil {
			return err
		}
		out[nid] = e
		return nil
	})
	return out, err
}

// stateIndex is Dendrite's state storage read once: snapshots (lists of
// state blocks), blocks (lists of event NIDs) and the keys of state events.
type stateIndex struct {
	snapshots []snapshotRow
	blocks    map[int64][]int64
	entries   map[int64]stateEntry
}

type snapshotRow struct {
	nid, room int64
	blocks    []int64
}

func (s *Source) loadState(ctx context.Context) (*stateIndex, error) {
	ix := &stateIndex{blocks: map[int64][]int64{}}
	if err := s.roomserver.each(ctx, `SELECT state_block_nid, event_nids FROM roomserver_state_block`, nil, func(rows *sql.Rows) error {
		var nid int64
		var list string
		if err := rows.Scan(&nid, &list); err != nil {
			return err
		}
		var nids []int64
		if err := parseNIDs(list, &nids); err != nil {
			return fmt.Errorf("state block %d: %w", nid, err)
		}
		ix.blocks[nid] = nids
		return nil
	}); err != nil {
		return nil, err
	}
	var err error
	if ix.entries, err = s.stateEvents(ctx); err != nil {
		return nil, err
	}
	err = s.roomserver.each(ctx, `SELECT state_snapshot_nid, room_nid, state_block_nids FROM roomserver_state_snapshots ORDER BY state_snapshot_nid`, nil,
		func(rows *sql.Rows) error {
			var sn snapshotRow
			var list string
			if err := rows.Scan(&sn.nid, &sn.room, &list); err != nil {
				return err
			}
			if err := parseNIDs(list, &sn.blocks); err != nil {
				return fmt.Errorf("state snapshot %d: %w", sn.nid, err)
			}
			ix.snapshots = append(ix.snapshots, sn)
			return nil
		})
	return ix, err
}

// resolve lists the state entries of a snapshot.
func (ix *stateIndex) resolve(sn snapshotRow) ([]stateEntry, error) {
	var out []stateEntry
	for _, b := range sn.blocks {
		for _, nid := range ix.blocks[b] {
			e, ok := ix.entries[nid]
			if !ok {
				return nil, fmt.Errorf("state snapshot %d names event NID %d, which is not a state event", sn.nid, nid)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func (ix *stateIndex) snapshot(nid int64) (snapshotRow, bool) {
	i := sort.Search(len(ix.snapshots), func(i int) bool { return ix.snapshots[i].nid >= nid })
	if i < len(ix.snapshots) && ix.snapshots[i].nid == nid {
		return ix.snapshots[i], true
	}
	return snapshotRow{}, false
}

// snapshotsStream exports Dendrite's state snapshots (sets of state
// blocks, each a set of state events) as full portable snapshots with the
// same IDs.
func (s *Source) snapshotsStream(sel roomSet) source.Stream {
	return source.Stream{Name: source.StreamState,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			// Every room's NID, not only the selected ones': a snapshot of an
			// unselected room must be recognised as such and left out.
			rooms, err := s.rooms(ctx, nil)
			if err != nil {
				return err
			}
			roomID := map[int64]string{}
			for _, r := range rooms {
				roomID[r.nid] = r.id
			}
			ix, err := s.loadState(ctx)
			if err != nil {
				return err
			}
			for _, sn := range ix.snapshots {
				entries, err := ix.resolve(sn)
				if err != nil {
					return err
				}
				rec := &archive.StateSnapshot{ID: uint64(sn.nid), RoomID: roomID[sn.room]}
				for _, e := range entries {
					rec.Set = append(rec.Set, archive.StateEntry{Type: e.typ, StateKey: e.key, EventID: e.eventID})
					if rec.RoomID == "" {
						rec.RoomID = roomID[e.room]
					}
				}
				if rec.RoomID != "" && !sel.has(rec.RoomID) {
					if len(rec.Set) > 0 {
						continue // another room's
					}
					// The empty state (before a create event), which Dendrite
					// shares between rooms: kept, without naming a room that
					// was not selected.
					rec.RoomID = ""
				}
				if err := sink.Record(archive.SectionStateSnapshots, rec); err != nil {
					return err
				}
			}
			return nil
		}}
}

// eventsStream exports events in insertion order (event NID) with their
// stored JSON; Dendrite keeps redacted events in redacted form already,
// so the original of a redacted event cannot be exported.
func (s *Source) eventsStream(sel roomSet, o source.Options) source.Stream {
	return source.Stream{Name: source.StreamEvents,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			if o.RedactedOriginals {
				if err := sink.Omit(archive.Omission{Code: "source_missing", Item: archive.SectionEvents + "#original_json",
					Detail: "Dendrite keeps only the redacted form of redacted events"}); err != nil {
					return err
				}
			}
			// Pages of events up to the high-water mark: short reads that
			// let Dendrite write in between (see component).
			after := int64(0)
			for {
				n := 0
				err := s.roomserver.each(ctx, `SELECT e.event_nid, e.event_id, r.room_id, e.state_snapshot_nid, e.is_rejected, j.event_json,
					EXISTS (SELECT 1 FROM roomserver_redactions x WHERE x.redacts_event_id = e.event_id AND x.validated)
					FROM roomserver_events e JOIN roomserver_rooms r ON r.room_nid = e.room_nid
					JOIN roomserver_event_json j ON j.event_nid = e.event_nid
					WHERE e.event_nid > ? AND e.event_nid <= ? ORDER BY e.event_nid LIMIT 2000`, []any{after, s.maxEventNID}, func(rows *sql.Rows) error {
					var ev archive.Event
					var snapshot int64
					var rejected bool
					var js string
					if err := rows.Scan(&after, &ev.EventID, &ev.RoomID, &snapshot, &rejected, &js, &ev.Redacted); err != nil {
						return err
					}
					n++
					if !sel.has(ev.RoomID) {
						return nil
					}
					// Dendrite keeps server-local annotations in the stored JSON
					// (unsigned.redacted_because, with its own event NIDs); the
					// archive holds the federation form.
					var err error
					if ev.JSON, err = matrixevent.WithoutUnsigned([]byte(js)); err != nil {
						return fmt.Errorf("event %s: %w", ev.EventID, err)
					}
					ev.StateBefore = uint64(snapshot)
					ev.Outlier = snapshot == 0
					if rejected {
						ev.Rejected = "rejected by Dendrite"
					}
					return sink.Record(archive.SectionEvents, &ev)
				})
				if err != nil || n < 2000 {
					return err
				}
			}
		}}
}

// membershipsStream derives memberships from each room's current state
// (with users, only theirs).
func (s *Source) membershipsStream(sel roomSet, users []string) source.Stream {
	return source.Stream{Name: source.StreamMemberships,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			rooms, err := s.rooms(ctx, sel)
			if err != nil {
				return err
			}
			var out []archive.Membership
			for _, r := range rooms {
				err := s.roomserver.each(ctx, `SELECT j.event_json, e.event_id FROM roomserver_events e JOIN roomserver_event_json j ON j.event_nid = e.event_nid
					JOIN roomserver_event_types t ON t.event_type_nid = e.event_type_nid
					WHERE e.room_nid = ? AND t.event_type = 'm.room.member' ORDER BY e.event_nid`, []any{r.nid}, func(rows *sql.Rows) error {
					var js, id string
					if err := rows.Scan(&js, &id); err != nil {
						return err
					}
					var ev struct {
						Sender   string `json:"sender"`
						StateKey string `json:"state_key"`
						Content  struct {
							Membership string `json:"membership"`
						} `json:"content"`
					}
					if err := json.Unmarshal([]byte(js), &ev); err != nil {
						return fmt.Errorf("member event %s: %w", id, err)
					}
					out = append(out, archive.Membership{RoomID: r.id, UserID: ev.StateKey, Membership: ev.Content.Membership, EventID: id, Sender: ev.Sender})
					return nil
				})
				if err != nil {
					return err
				}
			}
			// Keep only the member event each room's current state holds.
			ix, err := s.loadState(ctx)
			if err != nil {
				return err
			}
			current := map[[2]string]string{}
			for _, r := range rooms {
				sn, ok := ix.snapshot(r.snapshot)
				if !ok {
					continue
				}
				entries, err := ix.resolve(sn)
				if err != nil {
					return err
				}
				for _, e := range entries {
					if e.typ == "m.room.member" {
						current[[2]string{r.id, e.key}] = e.eventID
					}
				}
			}
			for _, m := range out {
				if current[[2]string{m.RoomID, m.UserID}] == m.EventID && s.wantUser(users, m.UserID) {
					if err := sink.Record(archive.SectionMemberships, &m); err != nil {
						return err
					}
				}
			}
			return nil
		}}
}

// redactionsStream exports validated redactions.
func (s *Source) redactionsStream(sel roomSet) source.Stream {
	return source.Stream{Name: source.StreamRedactions,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			return s.roomserver.each(ctx, `SELECT x.redacts_event_id, x.redaction_event_id, r.room_id FROM roomserver_redactions x
				JOIN roomserver_events e ON e.event_id = x.redaction_event_id JOIN roomserver_rooms r ON r.room_nid = e.room_nid
				WHERE x.validated ORDER BY e.event_nid`, nil, func(rows *sql.Rows) error {
				var rd archive.Redaction
				if err := rows.Scan(&rd.EventID, &rd.RedactedBy, &rd.RoomID); err != nil {
					return err
				}
				if !sel.has(rd.RoomID) {
					return nil
				}
				return sink.Record(archive.SectionRedactions, &rd)
			})
		}}
}

// parseNIDs reads a list of numeric IDs as Dendrite stores it: a JSON
// array on SQLite ("[1,2]"), a BIGINT[] on PostgreSQL, which arrives in
// its text form ("{1,2}").
func parseNIDs(text string, out *[]int64) error {
	if strings.HasPrefix(text, "{") && strings.HasSuffix(text, "}") {
		text = "[" + text[1:len(text)-1] + "]"
	}
	return json.Unmarshal([]byte(text), out)
}
