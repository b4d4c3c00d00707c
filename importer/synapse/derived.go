package synapse

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
)

// stageCurrentState creates the tables writeGroups stages each room's
// current state in (ferry_restore_current_state) and writeEvents the state
// events whose unsigned.replaces_state is to be set
// (ferry_restore_replaces); deriveRoomTables turns them into
// current_state_events and that field once the events (and their stream
// orderings) are in, and dropStaging drops them. temporary: they go with
// tx (a room restore, one transaction); otherwise they are tables of the
// target, so that a whole restore's load can commit before its last step
// (restoreRoomData), created afresh by the load.
func stageCurrentState(ctx context.Context, tx pgx.Tx, temporary bool) error {
	create := `CREATE TEMP TABLE %s (%s) ON COMMIT DROP`
	if !temporary {
		create = `DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (%[2]s)`
	}
	for _, t := range []struct{ name, columns string }{
		{"ferry_restore_current_state", "room_id text, type text, state_key text, event_id text"},
		{"ferry_restore_replaces", "event_id text, before_group bigint, type text, state_key text"},
	} {
		if _, err := tx.Exec(ctx, fmt.Sprintf(create, t.name, t.columns)); err != nil {
			return fmt.Errorf("create %s: %w", t.name, err)
		}
	}
	return nil
}

// dropStaging drops the tables stageCurrentState created for a whole
// restore.
func dropStaging(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS ferry_restore_current_state, ferry_restore_replaces`)
	return err
}

// setReplacesState adds unsigned.replaces_state to the staged state events
// (ferry_restore_replaces): the event that held the key in the state before, found
// along the before-group's delta chain. Events that set a key for the
// first time get none, as Synapse writes them.
func setReplacesState(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `WITH RECURSIVE walk (event_id, g, type, state_key, depth) AS (
			SELECT event_id, before_group, type, state_key, 0 FROM ferry_restore_replaces
			UNION ALL
			SELECT w.event_id, e.prev_state_group, w.type, w.state_key, w.depth + 1 FROM walk w
			JOIN state_group_edges e ON e.state_group = w.g
			WHERE NOT EXISTS (SELECT 1 FROM state_groups_state s WHERE s.state_group = w.g AND s.type = w.type AND s.state_key = w.state_key)
		), prev AS (
			SELECT DISTINCT ON (w.event_id) w.event_id, s.event_id AS replaces FROM walk w
			JOIN state_groups_state s ON s.state_group = w.g AND s.type = w.type AND s.state_key = w.state_key
			ORDER BY w.event_id, w.depth
		)
		UPDATE event_json j SET json = jsonb_set(j.json::jsonb, '{unsigned}',
			COALESCE(j.json::jsonb -> 'unsigned', '{}'::jsonb) || jsonb_build_object('replaces_state', p.replaces))::text
		FROM prev p WHERE j.event_id = p.event_id`)
	if err != nil {
		return fmt.Errorf("set unsigned.replaces_state: %w", err)
	}
	return nil
}

// deriveRoomTables writes, from what the events pass loaded, the tables
// Synapse keeps beside the events and no background update fills:
// current_state_events and local_current_membership (stream orderings
// equal to the events'), participation, threads, censored redactions,
// extremities and room depth. All of it is SQL over the loaded rows, so
// memory stays flat.
func deriveRoomTables(ctx context.Context, tx pgx.Tx, r *archive.Reader, rooms map[string]*roomPlan, serverName string) error {
	ids := sortedKeys(rooms)
	// withoutSort: the statement runs with sorting disabled (see
	// participantSQL).
	steps := []struct {
		what, sql   string
		args        []any
		withoutSort bool
	}{
		{"current_state_events", `INSERT INTO current_state_events (event_id, room_id, type, state_key, membership, event_stream_ordering)
			SELECT c.event_id, c.room_id, c.type, c.state_key, m.membership, e.stream_ordering
			FROM ferry_restore_current_state c JOIN events e ON e.event_id = c.event_id LEFT JOIN room_memberships m ON m.event_id = c.event_id`, nil, false},
		{"local_current_membership", `INSERT INTO local_current_membership (room_id, user_id, event_id, membership, event_stream_ordering)
			SELECT c.room_id, c.state_key, c.event_id, c.membership, c.event_stream_ordering FROM current_state_events c
			WHERE c.type = 'm.room.member' AND c.room_id = ANY($1) AND c.state_key LIKE '%:' || $2 AND c.membership IS NOT NULL`, []any{ids, serverName}, false},
		{"room_memberships.participant", participantSQL, []any{ids}, true},
		{"threads", `INSERT INTO threads (room_id, thread_id, latest_event_id, topological_ordering, stream_ordering)
			SELECT DISTINCT ON (e.room_id, r.relates_to_id) e.room_id, r.relates_to_id, e.event_id, e.topological_ordering, e.stream_ordering
			FROM event_relations r JOIN events e ON e.event_id = r.event_id
			WHERE r.relation_type = 'm.thread' AND e.room_id = ANY($1) AND NOT e.outlier
			ORDER BY e.room_id, r.relates_to_id, e.topological_ordering DESC, e.stream_ordering DESC`, []any{ids}, false},
		{"room_depth", `INSERT INTO room_depth (room_id, min_depth) SELECT room_id, min(depth) FROM events
			WHERE room_id = ANY($1) AND NOT outlier GROUP BY room_id`, []any{ids}, false},
	}
	for _, s := range steps {
		if s.withoutSort {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_sort = off`); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
			return fmt.Errorf("derive %s: %w", s.what, err)
		}
		if s.withoutSort {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_sort = DEFAULT`); err != nil {
				return err
			}
		}
	}
	if err := setReplacesState(ctx, tx); err != nil {
		return err
	}
	if err := markCensored(ctx, tx, r, rooms); err != nil {
		return err
	}
	return writeExtremities(ctx, tx, rooms)
}

// participantSQL marks as participant every membership ($1: the rooms)
// of a user who sent an accepted m.room.message or m.room.encrypted event
// in the room: one pass over the events for the (room, sender) pairs,
// joined to the memberships, instead of a lookup of the events per
// membership. It runs with sorting disabled: a fresh target's tables have
// no statistics yet (autovacuum analyzes them once the phase has
// committed), so the planner takes the loaded events for a handful of
// rows and would sort them, on disk, to find the distinct (room, sender)
// pairs, where hashing them (few pairs, however many events) is what it
// does once it knows their number. At 1M events the sort took seconds.
// Sorting is allowed again right after.
const participantSQL = `UPDATE room_memberships m SET participant = true
	FROM (SELECT DISTINCT room_id, sender FROM events WHERE room_id = ANY($1) AND type IN ('m.room.message', 'm.room.encrypted')
		AND rejection_reason IS NULL) s
	WHERE m.room_id = s.room_id AND m.user_id = s.sender`

// markCensored sets have_censored on the redactions whose target the
// archive holds in its pruned form: Synapse would otherwise look for the
// original to censor.
func markCensored(ctx context.Context, tx pgx.Tx, r *archive.Reader, rooms map[string]*roomPlan) error {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE ferry_redacted (event_id text, redacted_by text) ON COMMIT DROP`); err != nil {
		return err
	}
	b := newBatcher(tx)
	err := readSection(ctx, r, archive.SectionRedactions, func(rd *archive.Redaction) error {
		if rooms[rd.RoomID] == nil {
			return nil
		}
		return b.add(ctx, "ferry_redacted", []string{"event_id", "redacted_by"}, rd.EventID, rd.RedactedBy)
	})
	if err == nil {
		err = b.flush(ctx)
	}
	if err != nil {
		return fmt.Errorf("read redactions: %w", err)
	}
	_, err = tx.Exec(ctx, `UPDATE redactions r SET have_censored = true FROM ferry_redacted x
		JOIN event_json j ON j.event_id = x.event_id
		WHERE r.redacts = x.event_id AND r.event_id = x.redacted_by`)
	if err != nil {
		return fmt.Errorf("mark censored redactions: %w", err)
	}
	return nil
}

// writeExtremities writes the rooms' forward and backward extremities as
// the archive has them, and stream_ordering_to_exterm rows for the forward
// ones at the room's highest stream ordering.
func writeExtremities(ctx context.Context, tx pgx.Tx, rooms map[string]*roomPlan) error {
	b := newBatcher(tx)
	for _, id := range sortedKeys(rooms) {
		room := rooms[id].room
		for _, e := range room.ForwardExtremities {
			if err := b.add(ctx, "event_forward_extremities", []string{"event_id", "room_id"}, e, id); err != nil {
				return err
			}
		}
		for _, e := range room.BackwardExtremities {
			if err := b.add(ctx, "event_backward_extremities", []string{"event_id", "room_id"}, e, id); err != nil {
				return err
			}
		}
	}
	if err := b.flush(ctx); err != nil {
		return fmt.Errorf("restore extremities: %w", err)
	}
	_, err := tx.Exec(ctx, `INSERT INTO stream_ordering_to_exterm (stream_ordering, room_id, event_id)
		SELECT (SELECT max(e.stream_ordering) FROM events e WHERE e.room_id = x.room_id), x.room_id, x.event_id
		FROM event_forward_extremities x WHERE x.room_id = ANY($1)`, sortedKeys(rooms))
	if err != nil {
		return fmt.Errorf("restore stream_ordering_to_exterm: %w", err)
	}
	return nil
}

// setPositions moves Synapse's event streams past the restored events:
// the sequences (never lowered, never stream_positions by hand), and the
// positions from which Synapse sends events to appservices and over
// federation, so that the first new event does not push the whole
// restored history to every bridge and every other server.
func setPositions(ctx context.Context, tx pgx.Tx, ord *orderings, groups *groupAllocator) error {
	if err := advanceSequence(ctx, tx, "events_stream_seq", ord.max); err != nil {
		return err
	}
	if err := advanceSequence(ctx, tx, "events_backfill_stream_seq", -ord.min); err != nil {
		return err
	}
	if err := advanceSequence(ctx, tx, "state_group_id_seq", groups.next); err != nil {
		return err
	}
	if ord.max <= 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE appservice_stream_position SET stream_ordering = GREATEST(COALESCE(stream_ordering, 0), $1)`, ord.max); err != nil {
		return fmt.Errorf("set appservice_stream_position: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE federation_stream_position SET stream_id = GREATEST(stream_id, $1) WHERE type = 'events'`, ord.max); err != nil {
		return fmt.Errorf("set federation_stream_position: %w", err)
	}
	return nil
}

// backgroundUpdate is a rebuild Synapse runs itself after a restore.
type backgroundUpdate struct {
	name, dependsOn string
	progress        any
}

// rebuilds are the background updates every restore queues, in the order
// they run.
var rebuilds = []backgroundUpdate{
	{name: "chain_cover"},
	{name: "populate_user_directory_createtables"},
	{name: "populate_user_directory_process_rooms", dependsOn: "populate_user_directory_createtables"},
	{name: "populate_user_directory_process_users", dependsOn: "populate_user_directory_process_rooms"},
	{name: "populate_user_directory_cleanup", dependsOn: "populate_user_directory_process_users"},
	{name: "populate_stats_process_rooms"},
	{name: "populate_stats_process_users"},
	{name: "sliding_sync_prefill_joined_rooms_to_recalculate_table_bg_update"},
	{name: "sliding_sync_joined_rooms_bg_update", dependsOn: "sliding_sync_prefill_joined_rooms_to_recalculate_table_bg_update"},
	{name: "sliding_sync_membership_snapshots_bg_update"},
}

// pendingRebuilds names the background updates a restore queues
// (rebuilds, and event_search) that Synapse has not finished yet.
func pendingRebuilds(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	names := []string{"event_search"}
	for _, u := range rebuilds {
		names = append(names, u.name)
	}
	rows, err := conn.Query(ctx, `SELECT update_name FROM background_updates WHERE update_name = ANY($1) ORDER BY update_name`, names)
	if err != nil {
		return nil, fmt.Errorf("read the pending background updates: %w", err)
	}
	pending, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the pending background updates: %w", err)
	}
	return pending, nil
}

// queueRebuilds queues the background updates that rebuild what Synapse
// can derive (the auth chain cover, the user directory, room stats, the
// sliding-sync tables, and with searchRange the search index of ord's
// stream range, topics aside: see topicsOnly), re-queueing any this
// database had finished, in dependency order. It also drops the update that would mark restored
// state groups unreferenced, as synapse_port_db does.
//
// Synapse keeps one event_search update with one stream range, which it
// works down from the top. A room restore must not queue its own range:
// that would replace a range still pending (say, the whole restore's, when
// Synapse has not finished indexing it), and those events would never be
// searchable. It indexes its events itself instead (indexSearch).
func queueRebuilds(ctx context.Context, tx pgx.Tx, ord *orderings, searchRange bool) error {
	var updates []backgroundUpdate
	if searchRange {
		updates = append(updates, backgroundUpdate{name: "event_search",
			progress: map[string]int64{"target_min_stream_id_inclusive": ord.min, "max_stream_id_exclusive": ord.max + 1, "rows_inserted": 0}})
	}
	updates = append(updates, rebuilds...)
	for i, u := range updates {
		progress := "{}"
		if u.progress != nil {
			data, _ := json.Marshal(u.progress)
			progress = string(data)
		}
		var dep any
		if u.dependsOn != "" {
			dep = u.dependsOn
		}
		if _, err := tx.Exec(ctx, `INSERT INTO background_updates (update_name, progress_json, depends_on, ordering) VALUES ($1, $2, $3, $4)
			ON CONFLICT (update_name) DO UPDATE SET progress_json = EXCLUDED.progress_json`, u.name, progress, dep, 9000+i); err != nil {
			return fmt.Errorf("queue background update %s: %w", u.name, err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM background_updates WHERE update_name = 'mark_unreferenced_state_groups_for_deletion_bg_update'`); err != nil {
		return fmt.Errorf("drop mark_unreferenced_state_groups_for_deletion_bg_update: %w", err)
	}
	return nil
}

// searchTypes are the events Synapse indexes for search, with the content
// key each is found by (events.py, _store_room_{message,name,topic}_txn).
var searchTypes = map[string]string{"m.room.message": "content.body", "m.room.name": "content.name", "m.room.topic": "content.topic"}

// topicsOnly is the search index a whole restore writes itself: Synapse
// 1.160's event_search background update (search.py,
// _background_reindex_search) indexes no topic at all. It takes the
// plain-text topic as a one-element tuple, which its isinstance(value,
// str) check then drops, so after the update a /search for a room's topic
// found nothing. The update indexes the messages and names.
//
// A Synapse that fixed this would insert the topics' rows again, fail on
// event_search's unique event_id index, and after five failures stop
// every background update: the round trip on the pinned Synapse
// (TestLiveSynapseRoundTrip) runs the updates and fails then. Recheck when
// SupportedSchema moves.
var topicsOnly = []string{"m.room.topic"}

// indexSearch writes the search index rows of the accepted events of the
// given types (searchTypes' keys) in ord's stream range as Synapse writes
// them when it persists an event: the message body, room name or
// plain-text topic, as an English tsvector ("\x00" replaced by a space).
// It reads and writes 1,000 events at a time.
func indexSearch(ctx context.Context, tx pgx.Tx, ord *orderings, types []string) (int64, error) {
	var written int64
	after := ord.min - 1
	for {
		rows, err := tx.Query(ctx, `SELECT e.stream_ordering, e.event_id, e.room_id, e.type, j.json, COALESCE(e.origin_server_ts, 0)
			FROM events e JOIN event_json j USING (event_id)
			WHERE e.stream_ordering > $1 AND e.stream_ordering <= $2 AND e.type = ANY($3) AND e.rejection_reason IS NULL
			ORDER BY e.stream_ordering LIMIT 1000`, after, ord.max, types)
		if err != nil {
			return written, fmt.Errorf("read events to index for search: %w", err)
		}
		var ids, roomIDs, keys, values []string
		var orderings, times []int64
		n := 0
		for rows.Next() {
			var so, ts int64
			var id, room, typ, js string
			if err := rows.Scan(&so, &id, &room, &typ, &js, &ts); err != nil {
				rows.Close()
				return written, err
			}
			n, after = n+1, so
			value, ok := searchValue(typ, js)
			if !ok {
				continue
			}
			ids, roomIDs, keys, values = append(ids, id), append(roomIDs, room), append(keys, searchTypes[typ]), append(values, value)
			orderings, times = append(orderings, so), append(times, ts)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return written, fmt.Errorf("read events to index for search: %w", err)
		}
		if len(ids) > 0 {
			tag, err := tx.Exec(ctx, `INSERT INTO event_search (event_id, room_id, key, vector, stream_ordering, origin_server_ts)
				SELECT id, room, key, to_tsvector('english', value), so, ts
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS u(id, room, key, value, so, ts)`,
				ids, roomIDs, keys, values, orderings, times)
			if err != nil {
				return written, fmt.Errorf("write the search index: %w", err)
			}
			written += tag.RowsAffected()
		}
		if n < 1000 {
			return written, nil
		}
	}
}

// searchValue is the text Synapse indexes for an event of one of the
// searchTypes; false when it indexes nothing (the field is missing or not
// a string).
func searchValue(typ, eventJSON string) (string, bool) {
	var ev struct {
		Content struct {
			Body   any             `json:"body"`
			Name   any             `json:"name"`
			Topic  any             `json:"topic"`
			MTopic json.RawMessage `json:"m.topic"` // malformed: the plain topic is indexed
		} `json:"content"`
	}
	if json.Unmarshal([]byte(eventJSON), &ev) != nil {
		return "", false
	}
	var v any
	switch typ {
	case "m.room.message":
		v = ev.Content.Body
	case "m.room.name":
		v = ev.Content.Name
	case "m.room.topic":
		if _, ok := ev.Content.Topic.(string); !ok {
			return "", false
		}
		v = ev.Content.Topic
		var mTopic struct {
			Text []struct {
				Body     string `json:"body"`
				Mimetype string `json:"mimetype"`
			} `json:"m.text"`
		}
		if json.Unmarshal(ev.Content.MTopic, &mTopic) == nil {
			for _, t := range mTopic.Text { // the first plain-text representation wins
				if t.Mimetype == "" || t.Mimetype == "text/plain" {
					v = t.Body
					break
				}
			}
		}
	}
	s, ok := v.(string)
	return strings.ReplaceAll(s, "\x00", " "), ok
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
