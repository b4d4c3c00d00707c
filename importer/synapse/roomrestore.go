package synapse

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/matrixevent"
	ssource "github.com/ferry-matrix/ferry/source/synapse"
)

// The deleted-room restore (Options.Rooms): rooms deleted from a running
// server with Synapse's delete-room admin API come back from a full archive
// into the same, stopped Synapse. docs/SYNAPSE-RESTORE.md gives the rules:
// refuse unless each room is wholly absent, no scheduled task would purge
// it again, it is not blocked (or --unblock), and no other server has
// joined members; never merge; new stream orderings above the target's;
// members' room account data, tags and matching key backups come back;
// aliases now pointing elsewhere stay there.

// checkRooms refuses a room restore that breaks a rule, reading only.
func (t *RestoreTarget) checkRooms(ctx context.Context, r *archive.Reader, opts importer.Options) error {
	rooms, skipped, err := readRooms(ctx, r, opts.Rooms)
	if err != nil {
		return err
	}
	for _, id := range opts.Rooms {
		if why, ok := skipped[id]; ok {
			return importer.Refuse("room %s: %s", id, why)
		}
		if rooms[id] == nil {
			return importer.Refuse("room %s is not in the archive: restore a room from a full archive that holds it (bot archive inspect lists its rooms)", id)
		}
	}
	// The archive alone decides whether a room lives on elsewhere.
	remote, local, err := currentMembers(ctx, r, rooms)
	if err != nil {
		return err
	}
	for _, id := range opts.Rooms {
		if servers := remote[id]; len(servers) > 0 {
			return importer.Refuse("room %s has joined members on other servers (%s): it lives on there, and a copy restored here alone would fork it; rejoin it from those servers instead", id, strings.Join(servers, ", "))
		}
	}
	conn, err := connectReadOnly(ctx, t.cfg.Database)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if unfinished, err := unfinishedRestore(ctx, conn); err != nil {
		return importer.Refuse("read the target's ferry_restore: %v", err)
	} else if unfinished != "" {
		return importer.Refuse("the target holds the unfinished restore of archive %s (its events are loaded, their indexes not all rebuilt): run that restore again to finish it before restoring rooms into this server", unfinished)
	}
	for _, id := range opts.Rooms {
		// The server the room was deleted from still has its members'
		// accounts (Synapse keeps a deactivated user's row).
		var missing []string
		if err := conn.QueryRow(ctx, `SELECT COALESCE(array_agg(m ORDER BY m), '{}') FROM unnest($1::text[]) AS m
			WHERE NOT EXISTS (SELECT 1 FROM users WHERE name = m)`, local[id]).Scan(&missing); err != nil {
			return importer.Refuse("read the target's users: %v", err)
		}
		if len(missing) > 0 {
			return importer.Refuse("room %s: %d of its joined or invited members have no account on this server (%s): a room restore goes into the Synapse the room was deleted from; restore the whole archive into a fresh database instead", id, len(missing), strings.Join(firstN(missing, 5), ", "))
		}
		for _, table := range []string{"rooms", "events", "state_groups", "current_state_events"} {
			var n int64
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE room_id = $1`, id).Scan(&n); err != nil {
				return importer.Refuse("read the target's %s: %v", table, err)
			}
			if n > 0 {
				return importer.Refuse("room %s is still in the target (%d rows in %s): a restore never merges into a room the server holds (that needs state resolution); delete the room first, or restore into another server", id, n, table)
			}
		}
		var task, action, status string
		err := conn.QueryRow(ctx, `SELECT id, action, status FROM scheduled_tasks WHERE resource_id = $1 AND status IN ('scheduled', 'active') LIMIT 1`, id).Scan(&task, &action, &status)
		if err == nil {
			return importer.Refuse("room %s has a %s scheduled task %s (%s) that would purge it again: let it finish (start Synapse, wait, stop it), then restore", id, status, task, action)
		} else if err != pgx.ErrNoRows {
			return importer.Refuse("read the target's scheduled_tasks: %v", err)
		}
		var blocker string
		err = conn.QueryRow(ctx, `SELECT user_id FROM blocked_rooms WHERE room_id = $1`, id).Scan(&blocker)
		if err == nil && !opts.Unblock {
			return importer.Refuse("room %s is blocked on the target (by %s): pass --unblock to lift the block and restore it", id, blocker)
		} else if err != nil && err != pgx.ErrNoRows {
			return importer.Refuse("read the target's blocked_rooms: %v", err)
		}
	}
	return nil
}

// currentMembers reads the archive's current membership of rooms: per
// room, the other servers with joined members, and the local users joined
// or invited.
func currentMembers(ctx context.Context, r *archive.Reader, rooms map[string]*roomPlan) (remote, local map[string][]string, err error) {
	remote, local = map[string][]string{}, map[string][]string{}
	seen := map[string]bool{}
	own := r.Core().ServerName
	err = archive.ReadSection(ctx, r, archive.SectionMemberships, func(m *archive.Membership) error {
		if rooms[m.RoomID] == nil {
			return nil
		}
		server := matrixevent.ServerOf(m.UserID)
		switch {
		case server == own && (m.Membership == "join" || m.Membership == "invite"):
			local[m.RoomID] = append(local[m.RoomID], m.UserID)
		case server != own && m.Membership == "join" && !seen[m.RoomID+" "+server]:
			seen[m.RoomID+" "+server] = true
			remote[m.RoomID] = append(remote[m.RoomID], server)
		}
		return nil
	})
	return remote, local, err
}

// firstN is at most the first n of list.
func firstN(list []string, n int) []string { return list[:min(n, len(list))] }

// connectReadOnly connects to the target for a check: read-only, named so
// that its session is recognised as Ferry's.
func connectReadOnly(ctx context.Context, database string) (*pgx.Conn, error) {
	cfg, err := ssource.ParseDatabaseURL(database)
	if err != nil {
		return nil, importer.Refuse("the target database: %v", err)
	}
	cfg.RuntimeParams["application_name"] = "ferry-restore-check"
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, importer.Refuse("cannot reach the target database on %s: %v", cfg.Host, err)
	}
	return conn, nil
}

// restoreDeletedRooms is the one phase of a room restore: the rooms, their
// state and events with new stream orderings above the target's, what
// Synapse derives beside them, the state deltas that bring stats, the user
// directory and sliding sync up to date, and the members' per-room data.
func restoreDeletedRooms(ctx context.Context, tx pgx.Tx, r *archive.Reader, rooms map[string]*roomPlan, opts importer.Options, p importer.Progress, res *importer.Result) error {
	serverName := r.Core().ServerName
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return err
	}
	if opts.Unblock {
		rows, err := tx.Query(ctx, `DELETE FROM blocked_rooms WHERE room_id = ANY($1) RETURNING room_id, COALESCE(user_id, '')`, sortedKeys(rooms))
		if err != nil {
			return err
		}
		unblocked, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
			var room, by string
			err := row.Scan(&room, &by)
			return fmt.Sprintf("%s: unblocked (--unblock; %s had blocked it)", room, cmp.Or(by, "an admin")), err
		})
		if err != nil {
			return fmt.Errorf("unblock the rooms: %w", err)
		}
		res.Notes = append(res.Notes, unblocked...)
		for id := range rooms {
			rooms[id].room.Blocked = false
		}
	}
	// Aliases that now point at another room stay there.
	for _, id := range sortedKeys(rooms) {
		rp := rooms[id]
		var kept []string
		for _, alias := range rp.room.Aliases {
			var other string
			err := tx.QueryRow(ctx, `SELECT room_id FROM room_aliases WHERE room_alias = $1`, alias).Scan(&other)
			if err == nil {
				res.Notes = append(res.Notes, fmt.Sprintf("alias %s of %s now points at %s: left there", alias, id, other))
				continue
			} else if err != pgx.ErrNoRows {
				return err
			}
			kept = append(kept, alias)
		}
		rp.room.Aliases = kept
	}
	// New orderings above everything the server holds, so /sync delivers
	// the room again.
	ord := &orderings{}
	if err := tx.QueryRow(ctx, `SELECT GREATEST(COALESCE((SELECT max(stream_ordering) FROM events), 0), (SELECT last_value FROM events_stream_seq))`).Scan(&ord.next); err != nil {
		return err
	}
	ord.min, ord.max = ord.next+1, ord.next
	// The rooms' tables hold the rest of the server: no truncation, no
	// frozen load.
	if err := stageCurrentState(ctx, tx, true); err != nil {
		return err
	}
	alloc, err := loadRooms(ctx, tx, r, readEvents(r), rooms, serverName, ord, nil, p, res.InArchive[archive.SectionEvents], nil)
	if err != nil {
		return err
	}
	if err := deriveRoomTables(ctx, tx, r, rooms, serverName); err != nil {
		return err
	}
	if _, err := restoreReceipts(ctx, tx, r, rooms); err != nil {
		return err
	}
	// The current state as deltas of the event stream: what stats, the
	// user directory and sliding sync follow.
	if _, err := tx.Exec(ctx, `INSERT INTO current_state_delta_stream (stream_id, room_id, type, state_key, event_id, prev_event_id, instance_name)
		SELECT c.event_stream_ordering, c.room_id, c.type, c.state_key, c.event_id, NULL, 'master' FROM current_state_events c WHERE c.room_id = ANY($1)`, sortedKeys(rooms)); err != nil {
		return fmt.Errorf("write current_state_delta_stream: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO sliding_sync_joined_rooms_to_recalculate (room_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, sortedKeys(rooms)); err != nil {
		return fmt.Errorf("queue the rooms for sliding sync: %w", err)
	}
	if err := restoreRoomUserData(ctx, tx, r, rooms, res); err != nil {
		return err
	}
	if err := setPositions(ctx, tx, ord, alloc); err != nil {
		return err
	}
	// Nobody is notified of the restored history.
	if _, err := tx.Exec(ctx, `UPDATE pushers SET last_stream_ordering = GREATEST(last_stream_ordering, $1)`, ord.max); err != nil {
		return err
	}
	if err := queueRebuilds(ctx, tx, ord, false); err != nil {
		return err
	}
	indexed, err := indexSearch(ctx, tx, ord, sortedKeys(searchTypes))
	if err != nil {
		return err
	}
	note := fmt.Sprintf("%d messages, names and topics of the restored rooms indexed for search", indexed)
	var searchPending bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM background_updates WHERE update_name = 'event_search')`).Scan(&searchPending); err != nil {
		return fmt.Errorf("read the pending search update: %w", err)
	}
	if searchPending {
		note += " (the search update still pending for the rest of the server is left as it was)"
	}
	res.Notes = append(res.Notes, note)
	for _, id := range sortedKeys(rooms) {
		res.Notes = append(res.Notes, fmt.Sprintf("%s: restored with new stream orderings %d..%d; members who had forgotten it see it again (archives carry no forgotten flag); deactivated members stay deactivated", id, ord.min, ord.max))
	}
	return nil
}

// restoreRoomUserData brings back the members' room account data and tags
// for the restored rooms (users the target still has), and their backed-up
// room keys into the same backup version with the same auth_data only.
func restoreRoomUserData(ctx context.Context, tx pgx.Tx, r *archive.Reader, rooms map[string]*roomPlan, res *importer.Result) error {
	exists := map[string]bool{}
	known := func(user string) (bool, error) {
		if ok, seen := exists[user]; seen {
			return ok, nil
		}
		var ok bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE name = $1)`, user).Scan(&ok)
		exists[user] = ok
		return ok, err
	}
	// Synapse's purge deletes a room's room_account_data and room_tags but
	// leaves its room_tags_revisions rows (purge_events.py): a revision
	// without tags is the deleted room's, and goes, so that the archive's
	// tags come back (the account data sequence keeps its stream IDs from
	// being handed out again). What the target still has for the rooms,
	// set after the deletion, is newer than the archive and stays.
	if _, err := tx.Exec(ctx, `DELETE FROM room_tags_revisions r WHERE r.room_id = ANY($1)
		AND NOT EXISTS (SELECT 1 FROM room_tags t WHERE t.user_id = r.user_id AND t.room_id = r.room_id)`, sortedKeys(rooms)); err != nil {
		return fmt.Errorf("clear the deleted rooms' tag revisions: %w", err)
	}
	var kept int64
	keep := func(a *archive.AccountData) (bool, error) {
		if a.RoomID == "" || rooms[a.RoomID] == nil {
			return false, nil
		}
		if ok, err := known(a.UserID); err != nil || !ok {
			return false, err
		}
		query := `SELECT EXISTS (SELECT 1 FROM room_account_data WHERE user_id = $1 AND room_id = $2 AND account_data_type = $3)`
		if a.Type == "m.tag" {
			query = `SELECT EXISTS (SELECT 1 FROM room_tags WHERE user_id = $1 AND room_id = $2 AND $3 <> '')`
		}
		var has bool
		if err := tx.QueryRow(ctx, query, a.UserID, a.RoomID, a.Type).Scan(&has); err != nil {
			return false, err
		}
		if has {
			kept++
		}
		return !has, nil
	}
	if _, err := writeAccountData(ctx, tx, r, keep); err != nil {
		return err
	}
	if kept > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("room account data the target still had for the rooms (set since their deletion) was kept as it is, not replaced by the archive's: %d items, tags among them", kept))
	}
	versions := map[string]string{} // user + version -> auth_data in the archive
	if err := readSection(ctx, r, archive.SectionBackupVersions, func(v *archive.KeyBackupVersion) error {
		versions[v.UserID+" "+v.Version] = string(v.AuthData)
		return nil
	}); err != nil {
		return err
	}
	var restored, skipped int64
	err := readSection(ctx, r, archive.SectionBackupSessions, func(s *archive.KeyBackupSession) error {
		if rooms[s.RoomID] == nil {
			return nil
		}
		n, err := strconv.ParseInt(s.Version, 10, 64)
		if err != nil {
			return fmt.Errorf("key backup version %q of %s: Synapse keeps numeric versions", s.Version, s.UserID)
		}
		var authData string
		err = tx.QueryRow(ctx, `SELECT auth_data FROM e2e_room_keys_versions WHERE user_id = $1 AND version = $2 AND deleted = 0`, s.UserID, n).Scan(&authData)
		if err == pgx.ErrNoRows || err == nil && !sameJSON(authData, versions[s.UserID+" "+s.Version]) {
			skipped++
			return nil
		} else if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO e2e_room_keys (user_id, room_id, session_id, version, first_message_index, forwarded_count, is_verified, session_data)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			s.UserID, s.RoomID, s.SessionID, n, s.FirstMessageIndex, s.ForwardedCount, s.IsVerified, string(s.SessionData))
		restored += tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("restore the rooms' backed-up keys: %w", err)
	}
	if restored+skipped > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("backed-up room keys: %d restored; %d not, their backup version is gone or has another auth_data (the user made a new backup)", restored, skipped))
	}
	return nil
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}
