package synapse

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/matrixevent"
)

// formatVersions maps a room version to the event format Synapse stores in
// event_json.format_version. Synapse drops an event whose format does not
// match its room's version without a word, so an unknown version is an
// error, never a guess.
var formatVersions = map[string]int{
	"1": 1, "2": 1, "3": 2,
	"4": 3, "5": 3, "6": 3, "7": 3, "8": 3, "9": 3, "10": 3, "11": 3,
	"12": 4,
}

// roomPlan is what the restore knows of one room before writing its events.
type roomPlan struct {
	room          archive.Room
	formatVersion int
	redaction     matrixevent.RoomVersion
}

// readRooms reads the archive's rooms (few: they stay in memory) and keeps
// those selected and of a room version Synapse 1.160 stores. The others are
// returned as skipped, with why.
func readRooms(ctx context.Context, r *archive.Reader, only []string) (map[string]*roomPlan, map[string]string, error) {
	rooms, skipped := map[string]*roomPlan{}, map[string]string{}
	err := readSection(ctx, r, archive.SectionRooms, func(room *archive.Room) error {
		if len(only) > 0 && !slices.Contains(only, room.RoomID) {
			return nil
		}
		fv, ok := formatVersions[room.Version]
		if !ok {
			skipped[room.RoomID] = fmt.Sprintf("room version %q is not one Synapse 1.160 stores", room.Version)
			return nil
		}
		rv, _ := matrixevent.LookupRoomVersion(room.Version)
		rooms[room.RoomID] = &roomPlan{room: *room, formatVersion: fv, redaction: rv}
		return nil
	})
	return rooms, skipped, err
}

var (
	roomsColumns        = []string{"room_id", "is_public", "creator", "room_version", "has_auth_chain_index"}
	roomAliasesColumns  = []string{"room_alias", "room_id", "creator"}
	aliasServersColumns = []string{"room_alias", "server"}
)

// restoreRooms writes rooms (has_auth_chain_index false: the chain cover
// update computes the chains), their local aliases with the server that
// serves each, and blocks. Directory visibility is rooms.is_public.
func restoreRooms(ctx context.Context, tx pgx.Tx, rooms map[string]*roomPlan, serverName string) (int64, error) {
	b := newBatcher(tx)
	for _, id := range sortedKeys(rooms) {
		room := rooms[id].room
		if err := b.add(ctx, "rooms", roomsColumns, room.RoomID, room.Public, nullable(room.Creator), room.Version, false); err != nil {
			return 0, err
		}
		for _, alias := range room.Aliases {
			if err := b.add(ctx, "room_aliases", roomAliasesColumns, alias, room.RoomID, nullable(room.Creator)); err != nil {
				return 0, err
			}
			if err := b.add(ctx, "room_alias_servers", aliasServersColumns, alias, serverName); err != nil {
				return 0, err
			}
		}
		if room.Blocked {
			// The archive does not say which admin blocked the room.
			if err := b.add(ctx, "blocked_rooms", []string{"room_id", "user_id"}, room.RoomID, "@ferry-restore:"+serverName); err != nil {
				return 0, err
			}
		}
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("restore rooms: %w", err)
	}
	return b.copied("rooms"), nil
}

var (
	receiptsLinearizedColumns = []string{"stream_id", "room_id", "receipt_type", "user_id", "event_id", "data", "instance_name", "event_stream_ordering", "thread_id"}
	receiptsGraphColumns      = []string{"room_id", "receipt_type", "user_id", "event_ids", "data", "thread_id"}
)

// restoreReceipts writes each receipt into receipts_linearized (a stream
// ID from receipts_sequence, the event's stream ordering) and
// receipts_graph, as Synapse's receipt handler does. It runs after the
// events.
func restoreReceipts(ctx context.Context, tx pgx.Tx, r *archive.Reader, rooms map[string]*roomPlan) (int64, error) {
	var next int64
	if err := tx.QueryRow(ctx, `SELECT GREATEST((SELECT last_value FROM receipts_sequence), COALESCE((SELECT max(stream_id) FROM receipts_linearized), 0))`).Scan(&next); err != nil {
		return 0, fmt.Errorf("read receipts_sequence: %w", err)
	}
	b := newBatcher(tx)
	err := readSection(ctx, r, archive.SectionReceipts, func(rc *archive.Receipt) error {
		if rooms[rc.RoomID] == nil {
			return nil
		}
		data := rc.Data
		if len(data) == 0 {
			data, _ = json.Marshal(map[string]int64{"ts": rc.TS})
		}
		ids, _ := json.Marshal([]string{rc.EventID})
		next++
		if err := b.add(ctx, "receipts_linearized", receiptsLinearizedColumns, next, rc.RoomID, rc.Type, rc.UserID, rc.EventID,
			string(data), "master", nil, nullable(rc.ThreadID)); err != nil {
			return err
		}
		return b.add(ctx, "receipts_graph", receiptsGraphColumns, rc.RoomID, rc.Type, rc.UserID, string(ids), string(data), nullable(rc.ThreadID))
	})
	if err == nil {
		err = b.flush(ctx)
	}
	if err != nil {
		return 0, fmt.Errorf("restore receipts: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE receipts_linearized l SET event_stream_ordering = e.stream_ordering FROM events e
		WHERE e.event_id = l.event_id AND l.event_stream_ordering IS NULL`); err != nil {
		return 0, fmt.Errorf("restore receipts: %w", err)
	}
	if err := advanceSequence(ctx, tx, "receipts_sequence", next); err != nil {
		return 0, err
	}
	return b.copied("receipts_linearized"), nil
}

// advanceSequence moves seq to at least value, never lowering it.
func advanceSequence(ctx context.Context, tx pgx.Tx, seq string, value int64) error {
	if value <= 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT setval('%s', GREATEST((SELECT last_value FROM %[1]s), $1))`, seq), value); err != nil {
		return fmt.Errorf("advance %s: %w", seq, err)
	}
	return nil
}
