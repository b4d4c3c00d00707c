package synapse

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/source"
	ssource "github.com/ferry-matrix/ferry/source/synapse"
)

// RestoreTarget is a stopped Synapse as an importer.Target.
//
// The restore runs in phases, each recording itself as done in the
// target's ferry_restore table when it commits: rooms (rooms, state
// groups, events and the tables derived from them, receipts, pushers,
// stream positions, queued rebuilds), accounts (users, account data,
// devices, keys, backups), media, and the signing key. The accounts and
// media phases are one transaction each; the rooms phase on a fresh target
// is three steps (restoreRoomData: the load, the rebuild of its deferred
// indexes, the derived tables), each kept when it ends. A killed restore
// leaves its current transaction rolled back; run again, it skips what
// finished and redoes the rest, and only the last step of a phase records
// it, so nothing half-written looks complete. The archive is validated
// beside the rooms phase (importer.ValidatingTarget), whose load commits
// only once the validation passed. Then, when
// Config.RunBackgroundUpdates is set, Synapse's own background updates
// rebuild the search index, auth chains, user directory, room stats and
// sliding-sync tables, as a separately timed phase.
type RestoreTarget struct {
	cfg Config
}

// NewTarget returns the Synapse cfg describes as an import target.
func NewTarget(cfg Config) *RestoreTarget { return &RestoreTarget{cfg: cfg} }

// capabilities: what a Synapse restore does not carry over as it is.
var capabilities = &fidelity.Target{
	Name:         "Synapse " + SupportedVersion,
	RoomVersions: sortedKeys(formatVersions),
	Namespaces:   []string{ssource.VendorItem},
	Notes: map[string]string{
		archive.SectionStateSnapshots: "read back as Synapse keeps state: a group per state change, and the state before each state event and each room's current state",
		archive.SectionE2EEKeys:       "without --migration the users' cross-signing keys and their signatures come back; devices upload their device, one-time and fallback keys again when their users log in",
	},
	// A whole restore keeps the archive's IDs and stream orderings.
	NoMerge: true,
}

// SupportedVersion is the Synapse release a restore writes for.
const SupportedVersion = "1.160.0"

func (t *RestoreTarget) Capabilities() *fidelity.Target { return capabilities }

// progressTable records, in the target, which phases of which archive's
// restore are done.
const progressTable = `CREATE TABLE IF NOT EXISTS ferry_restore (archive_id text NOT NULL, phase text NOT NULL,
	finished_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (archive_id, phase))`

func (t *RestoreTarget) Check(ctx context.Context, r *archive.Reader, opts importer.Options) (*importer.State, error) {
	p, err := Check(ctx, t.cfg, r.Core().ServerName)
	state := &importer.State{Name: fmt.Sprintf("Synapse %s (schema %d)", SupportedVersion, SupportedSchema)}
	if p != nil {
		state.Users, state.Rooms = p.NonEmpty["users"], p.NonEmpty["rooms"]
	}
	if err != nil && (p == nil || !errors.Is(err, ErrRefused)) {
		return nil, err // unreachable, running, another server or schema
	}
	if len(opts.Rooms) > 0 {
		// A room restore goes into a server that holds other data.
		done, derr := t.roomPhaseDone(ctx, r, opts)
		switch {
		case derr != nil:
			return nil, derr
		case done:
			state.Resuming = true
			return state, nil
		}
		return state, t.checkRooms(ctx, r, opts)
	}
	if ferr := t.checkFiles(ctx, r); ferr != nil {
		return nil, ferr
	}
	// A restore started here (even one killed before it wrote a row)
	// recorded its archive in ferry_restore.
	resuming, other, rerr := t.restoreOf(ctx, r.Manifest().ArchiveID)
	switch {
	case rerr != nil:
		return nil, rerr
	case resuming:
		state.Resuming = true
		return state, nil
	case other != "":
		return nil, importer.Refuse("the target holds a restore of another archive (%s): restore into a fresh database", other)
	case err == nil:
		return state, nil
	case opts.AllowNonEmpty && p != nil && len(p.NonEmpty) > 0:
		return nil, importer.Refuse("--force-non-empty cannot apply to a Synapse target: a whole restore writes the archive's IDs and stream orderings and never merges with what a server holds. %s",
			strings.TrimPrefix(err.Error(), importer.ErrRefused.Error()+": "))
	}
	return nil, err
}

// restoreOf says whether the target's ferry_restore table names this
// archive, or else which archive it names.
func (t *RestoreTarget) restoreOf(ctx context.Context, archiveID string) (bool, string, error) {
	conn, err := pgx.Connect(ctx, t.cfg.Database)
	if err != nil {
		return false, "", importer.Refuse("cannot reach the target database: %v", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('ferry_restore') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return false, "", err
	}
	var ids []string
	rows, err := conn.Query(ctx, `SELECT DISTINCT archive_id FROM ferry_restore ORDER BY 1`)
	if err == nil {
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return false, "", err
	}
	for _, id := range ids {
		if id == archiveID {
			return true, "", nil
		}
	}
	return false, strings.Join(ids, ", "), nil
}

// phase is one transaction of the restore, or (own) a phase that runs and
// records its own transactions.
type phase struct {
	name string
	run  func(ctx context.Context, tx pgx.Tx) error
	own  func(ctx context.Context, conn *pgx.Conn) error
	// total is how many items the phase counts to Progress (0: none).
	total int64
	// sections are what the phase writes: a rerun counts them as skipped.
	sections []string
}

func (t *RestoreTarget) Import(ctx context.Context, r *archive.Reader, opts importer.Options, p importer.Progress, res *importer.Result) error {
	return t.ImportValidating(ctx, r, opts, p, res, nil)
}

// ImportValidating is Import while importer.Run validates the archive
// (v nil: it was validated before), taking the events from the validation. The rooms phase, the bulk of
// the restore, comes first and commits only once validated passes; when
// the archive fails validation, the phase is rolled back and what the run
// recorded of itself (its ferry_restore rows, the saved definitions of
// the deferred indexes, the tables it created for them) is removed, so the
// target is left as it was.
func (t *RestoreTarget) ImportValidating(ctx context.Context, r *archive.Reader, opts importer.Options, p importer.Progress, res *importer.Result, v *importer.Validation) error {
	validated := waitFor(v)
	conn, err := connectRestorer(ctx, t.cfg.Database)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if len(opts.Rooms) > 0 {
		if validated != nil {
			if err := validated(ctx); err != nil {
				return err
			}
		}
		return t.importRooms(ctx, conn, r, opts, p, res)
	}
	archiveID := r.Manifest().ArchiveID
	before, err := readRunState(ctx, conn, archiveID)
	if err != nil {
		return err
	}
	// fail returns err, or the refusal of an archive that failed
	// validation, after undoing what this run recorded of itself.
	fail := func(err error) error {
		if validated == nil || ctx.Err() != nil {
			return err // an interruption: a rerun continues
		}
		if verr := validated(ctx); verr != nil {
			before.undo(context.WithoutCancel(ctx), conn, archiveID)
			return verr
		}
		return err
	}
	if _, err := conn.Exec(ctx, progressTable); err != nil {
		return fail(fmt.Errorf("create the restore's progress table: %w", err))
	}
	if _, err := conn.Exec(ctx, `INSERT INTO ferry_restore (archive_id, phase) VALUES ($1, 'started') ON CONFLICT DO NOTHING`, archiveID); err != nil {
		return fail(fmt.Errorf("record the restore: %w", err))
	}
	release, err := keepSmallSections(ctx, r)
	if err != nil {
		return fail(err)
	}
	defer release()
	rooms, err := t.plan(ctx, r, opts, res)
	if err != nil {
		return fail(err)
	}
	steps := func(fns ...func(context.Context, pgx.Tx, *archive.Reader) (int64, error)) func(context.Context, pgx.Tx) error {
		return func(ctx context.Context, tx pgx.Tx) error {
			for _, fn := range fns {
				if _, err := fn(ctx, tx, r); err != nil {
					return err
				}
				p.Add(1)
			}
			return nil
		}
	}
	accounts := []func(context.Context, pgx.Tx, *archive.Reader) (int64, error){restoreUsers, restoreAccountData, restoreFilters, restoreKeyBackups}
	if opts.Migration {
		accounts = append(accounts, restoreDevices, restoreE2EEKeys)
	} else {
		accounts = append(accounts, restoreCrossSigning)
	}
	// The rooms phase reads nothing the accounts phase writes (no table of
	// it refers to users, devices or account data), so it goes first: the
	// validation runs beside it.
	phases := []phase{
		{name: "rooms", own: func(ctx context.Context, conn *pgx.Conn) error {
			return restoreRoomData(ctx, conn, r, rooms, p, res, v)
		}, sections: []string{archive.SectionRooms, archive.SectionEvents, archive.SectionReceipts, archive.SectionPushers}},
		{name: "accounts", run: steps(accounts...), total: int64(len(accounts)), sections: []string{archive.SectionUsers, archive.SectionAccountData, archive.SectionFilters,
			archive.SectionBackupVersions, archive.SectionBackupSessions, archive.SectionDevices, archive.SectionE2EEKeys}},
		{name: "media", run: func(ctx context.Context, tx pgx.Tx) error {
			_, err := restoreMedia(ctx, tx, r, t.cfg.MediaStore, p)
			return err
		}, total: r.Manifest().Records(archive.SectionMedia), sections: []string{archive.SectionMedia}},
	}
	ran := 0
	for _, ph := range phases {
		done, err := phaseDone(ctx, conn, archiveID, ph.name)
		if err != nil {
			return fail(err)
		}
		if done {
			if ph.own != nil {
				v.Release() // the rooms phase takes no events: the validation goes on alone
			}
			p.Phase(ph.name+" (done by an earlier run)", 0)
			for _, section := range ph.sections {
				res.Skipped += res.InArchive[section]
			}
			continue
		}
		ran++
		p.Phase(ph.name, ph.total)
		if ph.own != nil {
			err = ph.own(ctx, conn)
		} else {
			err = runPhase(ctx, conn, archiveID, ph, validated)
		}
		if err != nil {
			return fail(fmt.Errorf("restore phase %s: %w", ph.name, err))
		}
	}
	if ran == 0 {
		res.Notes = append(res.Notes, "Every phase of this restore was done by an earlier run: no data was restored again (where the section table's counts differ, Synapse changed them since: new logins' devices, for instance).")
	}
	if err := t.installSigningKey(ctx, r, res); err != nil {
		return err
	}
	if fromSynapse(r) {
		res.Notes = append(res.Notes, "Stream positions are the source's: clients that synced after the archive was made must clear their cache (log out and in, or Element's \"Clear cache and reload\").")
	} else {
		res.Notes = append(res.Notes, "Clients of the old server must log in again or clear their cache (Element: \"Clear cache and reload\"): their sync positions mean nothing to Synapse.")
	}
	if hs, err := readHomeserverYAML(t.cfg.HomeserverConfig); err == nil && hs.Redis.Enabled {
		res.Notes = append(res.Notes, "Redis is enabled in homeserver.yaml (workers): flush it (FLUSHALL) before starting Synapse and its workers, since its caches are keyed by state group IDs.")
	}
	if t.cfg.RunBackgroundUpdates != nil {
		p.Phase("background updates (search, auth chains, user directory, stats)", 0)
		start := time.Now()
		if err := t.cfg.RunBackgroundUpdates(ctx); err != nil {
			return fmt.Errorf("Synapse's background updates: %w", err)
		}
		res.Notes = append(res.Notes, fmt.Sprintf("Synapse's background updates ran in %s.", time.Since(start).Round(time.Second)))
	}
	pending, err := pendingRebuilds(ctx, conn)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("Synapse rebuilds the search index, auth chains, user directory and room stats in the background when it starts (%d updates pending: %s); rooms of version 12 accept new events only once the auth chains are done.", len(pending), strings.Join(pending, ", ")))
	} else {
		res.Notes = append(res.Notes, "Synapse's background updates are done: the search index, auth chains, user directory and room stats are complete.")
	}
	return nil
}

// roomPhase names a room restore's phase in ferry_restore.
func roomPhase(rooms []string) string { return "rooms " + strings.Join(rooms, ",") }

// roomPhaseDone says whether this room restore of this archive finished
// and its rooms are still on the server (roomRestoreDone).
func (t *RestoreTarget) roomPhaseDone(ctx context.Context, r *archive.Reader, opts importer.Options) (bool, error) {
	conn, err := connectReadOnly(ctx, t.cfg.Database)
	if err != nil {
		return false, err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('ferry_restore') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return false, err
	}
	return roomRestoreDone(ctx, conn, r.Manifest().ArchiveID, opts.Rooms)
}

// roomRestoreDone says whether a room restore of these rooms from this
// archive finished and every one of them is still on the server. A room
// deleted again after its restore is restored again: its record in
// ferry_restore is stale, and the new restore's commit replaces it.
func roomRestoreDone(ctx context.Context, conn *pgx.Conn, archiveID string, rooms []string) (bool, error) {
	var done bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ferry_restore WHERE archive_id = $1 AND phase = $2)
		AND (SELECT count(*) FROM rooms WHERE room_id = ANY($3)) = cardinality($3::text[])`, archiveID, roomPhase(rooms), rooms).Scan(&done)
	if err != nil {
		return false, fmt.Errorf("read the target's ferry_restore: %w", err)
	}
	return done, nil
}

// importRooms runs a room restore as one phase.
func (t *RestoreTarget) importRooms(ctx context.Context, conn *pgx.Conn, r *archive.Reader, opts importer.Options, p importer.Progress, res *importer.Result) error {
	release, err := keepSmallSections(ctx, r)
	if err != nil {
		return err
	}
	defer release()
	rooms, err := t.plan(ctx, r, opts, res)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, progressTable); err != nil {
		return fmt.Errorf("create the restore's progress table: %w", err)
	}
	ph := phase{name: roomPhase(opts.Rooms), run: func(ctx context.Context, tx pgx.Tx) error {
		return restoreDeletedRooms(ctx, tx, r, rooms, opts, p, res)
	}, sections: []string{archive.SectionRooms, archive.SectionEvents, archive.SectionReceipts}}
	archiveID := r.Manifest().ArchiveID
	done, err := roomRestoreDone(ctx, conn, archiveID, opts.Rooms)
	if err != nil {
		return err
	}
	if done {
		p.Phase(ph.name+" (done by an earlier run)", 0)
		res.Notes = append(res.Notes, "This room restore was done by an earlier run and its rooms are on the server: nothing was written.")
		for _, section := range ph.sections {
			res.Skipped += res.InArchive[section]
		}
		return nil
	}
	p.Phase(ph.name, 0)
	if err := runPhase(ctx, conn, archiveID, ph, nil); err != nil {
		return fmt.Errorf("restore %s: %w", ph.name, err)
	}
	res.Notes = append(res.Notes, "Synapse brings the restored rooms' stats, user directory and search index up to date in the background when it starts.")
	return nil
}

// Plan says what a restore would write (a dry run), writing nothing.
func (t *RestoreTarget) Plan(ctx context.Context, r *archive.Reader, opts importer.Options, res *importer.Result) error {
	if _, err := t.plan(ctx, r, opts, res); err != nil {
		return err
	}
	if len(opts.Rooms) > 0 {
		return nil // a room restore leaves the signing key alone
	}
	return t.planSigningKey(ctx, r, res)
}

// plan reads the rooms to restore, counts what the archive holds, and
// reports what the restore will not carry over as it is.
func (t *RestoreTarget) plan(ctx context.Context, r *archive.Reader, opts importer.Options, res *importer.Result) (map[string]*roomPlan, error) {
	// Rooms of versions Synapse does not store are skipped; the preview
	// reports them (capabilities.RoomVersions).
	rooms, _, err := readRooms(ctx, r, opts.Rooms)
	if err != nil {
		return nil, err
	}
	res.InArchive = map[string]int64{archive.SectionRooms: int64(len(rooms))}
	for _, id := range sortedKeys(rooms) {
		if rooms[id].room.PartialState {
			res.Report.Add(fidelity.MissingEvent, archive.SectionRooms+"#partial_state", id,
				"the source had joined this room over federation with partial state and not finished resyncing; the archive lacks what the resync needs, so the room is restored with the state the source had, as a complete room, and Synapse does not resync it")
		}
	}
	if len(opts.Rooms) > 0 {
		// A room restore: what the archive holds of these rooms.
		err := archive.ReadSection(ctx, r, archive.SectionEvents, func(e *archive.Event) error {
			if rooms[e.RoomID] != nil {
				res.InArchive[archive.SectionEvents]++
			}
			return nil
		})
		if err == nil {
			err = readSection(ctx, r, archive.SectionReceipts, func(rc *archive.Receipt) error {
				if rooms[rc.RoomID] != nil {
					res.InArchive[archive.SectionReceipts]++
				}
				return nil
			})
		}
		return rooms, err
	}
	for _, s := range []string{archive.SectionUsers, archive.SectionDevices, archive.SectionAccountData, archive.SectionE2EEKeys,
		archive.SectionBackupVersions, archive.SectionBackupSessions, archive.SectionMedia, archive.SectionPushers, archive.SectionFilters,
		archive.SectionEvents, archive.SectionReceipts, archive.SectionStateSnapshots} {
		res.InArchive[s] = r.Manifest().Records(s)
	}
	if n := r.Manifest().Records(archive.SectionDevices); n > 0 && !opts.Migration {
		res.Report.AddN(fidelity.TargetRebuilds, archive.SectionDevices, "",
			"devices and their device keys are created again when users log in (the users' cross-signing keys are restored, so they verify the new devices with them); restore a migration export with --migration to keep devices and access tokens", n)
	}
	if res.InArchive[archive.SectionEvents] > 0 {
		res.Report.Add(fidelity.TargetRebuilds, archive.SectionEvents+"#notifications", "",
			"Synapse counts unread notifications from events it receives after the restore; restored history counts as read")
	}
	return rooms, nil
}

// loadRooms writes the bulk of a restore: the rooms, their state groups
// and their events with stream orderings from ord (each event's ID and
// ordering added to keys, unless nil), counting the events to p (of
// total). The current state is staged for deriveRoomTables in the tables
// stageCurrentState created. The tables in freeze, truncated in tx, are
// loaded frozen (copyFrozen).
func loadRooms(ctx context.Context, tx pgx.Tx, r *archive.Reader, events eventSource, rooms map[string]*roomPlan, serverName string,
	ord *orderings, keys *eventKeys, p importer.Progress, total int64, freeze map[string]bool) (*groupAllocator, error) {
	if _, err := restoreRooms(ctx, tx, rooms, serverName); err != nil {
		return nil, err
	}
	alloc, err := newGroupAllocator(ctx, tx)
	if err != nil {
		return nil, err
	}
	sp, err := readSnapshots(ctx, r, rooms)
	if err != nil {
		return nil, err
	}
	// The transaction is the batcher's until its flush returns.
	b := newPipelinedBatcher(tx, freeze)
	p.Phase("events", total)
	_, err = sp.writeEvents(ctx, b, events, rooms, alloc, ord, keys, p)
	if err == nil {
		p.Phase("state groups", r.Manifest().Records(archive.SectionStateSnapshots))
		err = sp.writeGroups(ctx, b, r, rooms, p)
	}
	if err != nil {
		b.wait() // the transaction is rolled back: what is in flight no longer matters
		return nil, err
	}
	return alloc, b.flush(ctx)
}

// unfinishedRestore names the archive of a whole restore whose rooms phase
// loaded the events and has not finished (its indexes may be missing), or
// "".
func unfinishedRestore(ctx context.Context, conn *pgx.Conn) (string, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('ferry_restore') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return "", err
	}
	var id string
	err := conn.QueryRow(ctx, `SELECT archive_id FROM ferry_restore l WHERE phase = $1
		AND NOT EXISTS (SELECT 1 FROM ferry_restore d WHERE d.archive_id = l.archive_id AND d.phase = 'rooms') LIMIT 1`, roomsLoaded).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// roomsLoaded names, in ferry_restore, a rooms phase whose load committed
// with its bulk tables' indexes deferred; "rooms" names one that finished.
const roomsLoaded = "rooms loaded"

// restoreRoomData is the rooms phase: the rooms, their state groups and
// events, then what Synapse derives from them. When it deferred the bulk
// tables' indexes (a fresh target: deferIndexes) it runs in three steps:
//
//  1. the load, one transaction, committed once validated passes and
//     recorded as roomsLoaded;
//  2. the rebuild of the deferred items (rebuildSaved): indexes of
//     different tables on two connections at once, each its own
//     statement, so a killed rebuild keeps what it built;
//  3. the derived tables, receipts and positions (finishRoomData), one
//     transaction, which records the phase and forgets the saved
//     definitions.
//
// A rerun after step 1 continues at step 2, with the orderings and the
// state-group allocator read back from the loaded rows (the target was
// empty before the load). Otherwise (nothing deferred: a target that held
// events, with consent) the whole phase is one transaction, as the rest.
func restoreRoomData(ctx context.Context, conn *pgx.Conn, r *archive.Reader, rooms map[string]*roomPlan, p importer.Progress,
	res *importer.Result, v *importer.Validation) error {
	validated := waitFor(v)
	archiveID := r.Manifest().ArchiveID
	loaded, err := phaseDone(ctx, conn, archiveID, roomsLoaded)
	if err != nil {
		return err
	}
	var ld *loadedRooms
	if loaded {
		p.Phase("rooms and events (loaded by an earlier run)", 0)
		v.Release() // the validation goes on beside the rebuild
		res.Skipped += res.InArchive[archive.SectionRooms] + res.InArchive[archive.SectionEvents]
		if ld, err = readLoaded(ctx, conn, r); err != nil {
			return err
		}
	} else {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if ld, err = loadRoomData(ctx, tx, r, validatedEvents(v, r), rooms, p); err != nil {
			return err
		}
		if !ld.deferred {
			if err := finishRoomData(ctx, tx, r, rooms, ld); err != nil {
				return err
			}
			return commitPhase(ctx, tx, archiveID, "rooms", validated)
		}
		if err := commitPhase(ctx, tx, archiveID, roomsLoaded, validated); err != nil {
			return err
		}
	}
	if err := rebuildSaved(ctx, conn, archiveID, p); err != nil {
		return err
	}
	p.Phase("current state, memberships, receipts and positions", 0)
	// validated: a rerun after the load validates the archive again, and
	// this step reads receipts and pushers from it.
	return runPhase(ctx, conn, archiveID, phase{name: "rooms", run: func(ctx context.Context, tx pgx.Tx) error {
		return finishRoomData(ctx, tx, r, rooms, ld)
	}}, validated)
}

// loadedRooms is what the rooms phase's load leaves to its last step.
type loadedRooms struct {
	ord   *orderings
	alloc *groupAllocator
	// deferred: the load deferred the bulk tables' indexes (to rebuild).
	deferred bool
}

// loadRoomData is the rooms phase's load: the rooms, their state groups
// and events, into the bulk tables without their indexes when the target
// holds no events (deferIndexes), the current state staged for
// finishRoomData in tables that outlive the transaction.
func loadRoomData(ctx context.Context, tx pgx.Tx, r *archive.Reader, events eventSource, rooms map[string]*roomPlan, p importer.Progress) (*loadedRooms, error) {
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return nil, err
	}
	deferred, err := deferIndexes(ctx, tx, r.Manifest().ArchiveID)
	if err != nil {
		return nil, err
	}
	ord := newOrderings(r)
	if err := tx.QueryRow(ctx, `SELECT COALESCE(max(stream_ordering), 0) FROM events`).Scan(&ord.next); err != nil {
		return nil, err
	}
	if err := stageCurrentState(ctx, tx, false); err != nil {
		return nil, err
	}
	// Deferred, the events' unique constraints are built again after the
	// commit: the keys find what would fail them before it.
	var keys *eventKeys
	deferredAny := len(deferred.items) > 0
	if deferredAny {
		keys = newEventKeys()
	}
	alloc, err := loadRooms(ctx, tx, r, events, rooms, r.Core().ServerName, ord, keys, p, r.Manifest().Records(archive.SectionEvents), deferred.truncated)
	if err != nil {
		return nil, err
	}
	if keys != nil {
		if err := keys.check(ctx, tx, deferred.createGuards); err != nil {
			return nil, err
		}
	}
	return &loadedRooms{ord: ord, alloc: alloc, deferred: deferredAny}, nil
}

// readLoaded reads back what a committed load of a fresh target left to
// the rooms phase's last step: the range of its stream orderings (as
// orderings.of counted them, from 0) and the last state group.
func readLoaded(ctx context.Context, conn *pgx.Conn, r *archive.Reader) (*loadedRooms, error) {
	ord := newOrderings(r)
	if err := conn.QueryRow(ctx, `SELECT LEAST(COALESCE(min(stream_ordering), 0), 0), GREATEST(COALESCE(max(stream_ordering), 0), 0) FROM events`).Scan(&ord.min, &ord.max); err != nil {
		return nil, fmt.Errorf("read the loaded events' stream orderings: %w", err)
	}
	ord.next = ord.max
	alloc, err := newGroupAllocator(ctx, conn)
	if err != nil {
		return nil, err
	}
	return &loadedRooms{ord: ord, alloc: alloc, deferred: true}, nil
}

// finishRoomData is the rooms phase's last step: the tables derived from
// the loaded events, the receipts, the stream positions and sequences,
// the pushers and the background updates to queue; then it forgets the
// saved definitions of the rebuilt items and drops the staging tables.
func finishRoomData(ctx context.Context, tx pgx.Tx, r *archive.Reader, rooms map[string]*roomPlan, ld *loadedRooms) error {
	if err := deriveRoomTables(ctx, tx, r, rooms, r.Core().ServerName); err != nil {
		return err
	}
	if _, err := restoreReceipts(ctx, tx, r, rooms); err != nil {
		return err
	}
	if err := setPositions(ctx, tx, ld.ord, ld.alloc); err != nil {
		return err
	}
	if _, err := restorePushers(ctx, tx, r); err != nil {
		return err
	}
	if err := queueRebuilds(ctx, tx, ld.ord, true); err != nil {
		return err
	}
	if _, err := indexSearch(ctx, tx, ld.ord, topicsOnly); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM ferry_restore_deferred WHERE archive_id = $1`, r.Manifest().ArchiveID); err != nil {
		return fmt.Errorf("forget the deferred indexes: %w", err)
	}
	return dropStaging(ctx, tx)
}

// runState is what a restore had recorded in the target before this run.
type runState struct {
	progressTable, deferredTable, started bool
	// loaded: the rooms phase's load had committed, its deferred indexes
	// not all rebuilt; their saved definitions are what a rerun rebuilds.
	loaded bool
}

func readRunState(ctx context.Context, conn *pgx.Conn, archiveID string) (runState, error) {
	var s runState
	err := conn.QueryRow(ctx, `SELECT to_regclass('ferry_restore') IS NOT NULL, to_regclass('ferry_restore_deferred') IS NOT NULL`).Scan(&s.progressTable, &s.deferredTable)
	if err == nil && s.progressTable {
		err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ferry_restore WHERE archive_id = $1), EXISTS (SELECT 1 FROM ferry_restore WHERE archive_id = $1 AND phase = $2)`,
			archiveID, roomsLoaded).Scan(&s.started, &s.loaded)
	}
	if err != nil {
		return s, fmt.Errorf("read the restore's progress: %w", err)
	}
	return s, nil
}

// undo removes what a refused run recorded of itself beyond s: its
// ferry_restore rows (unless an earlier run had started), its saved index
// definitions (unless an earlier run's load had committed: they are then
// what is left to rebuild), and the tables holding them when it created
// them and they are now empty. Best effort: the run is refused either way.
func (s runState) undo(ctx context.Context, conn *pgx.Conn, archiveID string) {
	if !s.started {
		conn.Exec(ctx, `DELETE FROM ferry_restore WHERE archive_id = $1`, archiveID)
	}
	if s.loaded {
		return
	}
	var deferred bool
	if conn.QueryRow(ctx, `SELECT to_regclass('ferry_restore_deferred') IS NOT NULL`).Scan(&deferred) == nil && deferred {
		conn.Exec(ctx, `DELETE FROM ferry_restore_deferred WHERE archive_id = $1`, archiveID)
		if !s.deferredTable {
			conn.Exec(ctx, `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM ferry_restore_deferred) THEN DROP TABLE ferry_restore_deferred; END IF; END $$`)
		}
	}
	if !s.progressTable {
		conn.Exec(ctx, `DO $$ BEGIN IF to_regclass('ferry_restore') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ferry_restore) THEN DROP TABLE ferry_restore; END IF; END $$`)
	}
}

// waitFor is v.Wait, or nil when v is (the archive was validated before).
func waitFor(v *importer.Validation) func(context.Context) error {
	if v == nil {
		return nil
	}
	return v.Wait
}

func phaseDone(ctx context.Context, conn *pgx.Conn, archiveID, name string) (bool, error) {
	var done bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ferry_restore WHERE archive_id = $1 AND phase = $2)`, archiveID, name).Scan(&done)
	return done, err
}

// runPhase runs a phase in a transaction, which it commits once validated
// (when not nil) passes.
func runPhase(ctx context.Context, conn *pgx.Conn, archiveID string, ph phase, validated func(context.Context) error) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := ph.run(ctx, tx); err != nil {
		return err
	}
	return commitPhase(ctx, tx, archiveID, ph.name, validated)
}

// commitPhase records phase name as done in tx and commits it, once
// validated (when not nil) passes.
func commitPhase(ctx context.Context, tx pgx.Tx, archiveID, name string, validated func(context.Context) error) error {
	if validated != nil {
		if err := validated(ctx); err != nil {
			return err
		}
	}
	// A conflict is a room restore's stale record (its room was deleted
	// again since): this run's replaces it.
	if _, err := tx.Exec(ctx, `INSERT INTO ferry_restore (archive_id, phase) VALUES ($1, $2)
		ON CONFLICT (archive_id, phase) DO UPDATE SET finished_at = now()`, archiveID, name); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// installSigningKey writes the archive's signing key where homeserver.yaml
// says (signing_key_path), keeping a different existing key beside it, and
// says which files it wrote; retired keys go to old_signing_keys, which
// the admin adds to homeserver.yaml (Ferry does not rewrite their file).
func (t *RestoreTarget) installSigningKey(ctx context.Context, r *archive.Reader, res *importer.Result) error {
	own, old, err := importer.SigningKeys(ctx, r)
	if err != nil {
		return err
	}
	if path, err := t.signingKeyPath(); err == nil {
		old = importer.WithoutKeyID(old, synapseKeyID(path))
	}
	if len(old) > 0 {
		var b strings.Builder
		b.WriteString("# homeserver.yaml: the archive's retired signing keys, so that what they signed stays verifiable\n")
		b.WriteString("old_signing_keys:\n")
		for _, k := range old {
			fmt.Fprintf(&b, "  %q: {key: %q, expired_ts: %d}\n", k.KeyID, k.PublicKey, k.ExpiredTS)
		}
		res.ConfigAdvice = b.String()
	}
	if own == nil {
		res.Report.Add(fidelity.ExcludedByDefault, archive.SectionServerKeys, r.Core().ServerName,
			importer.NoPrivateKey)
		return nil
	}
	path, data, cur, err := t.signingKeyFile(own)
	switch {
	case err != nil:
		return err
	case cur == nil:
	case string(cur) == string(data):
		res.Files = append(res.Files, path+" (the archive's signing key, already in place)")
		return nil
	default:
		if err := os.WriteFile(path+".before-ferry", cur, 0o600); err != nil {
			return err
		}
		res.Files = append(res.Files, path+".before-ferry (the target's previous signing key)")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := chownLike(tmp, filepath.Dir(path)); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	res.Files = append(res.Files, path+" (the archive's signing key "+own.KeyID+")")
	return nil
}

// signingKeyFile is where the archive's own key goes, the file Synapse
// would read it from (data), and what that file holds now (cur; nil when
// there is none).
func (t *RestoreTarget) signingKeyFile(own *archive.ServerKey) (path string, data, cur []byte, err error) {
	if path, err = t.signingKeyPath(); err != nil {
		return "", nil, nil, err
	}
	version := strings.TrimPrefix(own.KeyID, "ed25519:")
	data = []byte(fmt.Sprintf("ed25519 %s %s\n", version, base64.RawStdEncoding.EncodeToString(own.PrivateKey)))
	cur, err = os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return path, data, nil, nil
	}
	return path, data, cur, err
}

// planSigningKey says, in a dry run, what installSigningKey would do with
// the target's signing key file.
func (t *RestoreTarget) planSigningKey(ctx context.Context, r *archive.Reader, res *importer.Result) error {
	own, _, err := importer.SigningKeys(ctx, r)
	if err != nil || own == nil {
		return err
	}
	path, data, cur, err := t.signingKeyFile(own)
	switch {
	case err != nil:
		return err
	case string(cur) == string(data):
	case cur != nil:
		res.Notes = append(res.Notes, fmt.Sprintf("The restore would replace the target's signing key %s with the archive's (%s), keeping the old one as %s.before-ferry.", path, own.KeyID, path))
	default:
		res.Notes = append(res.Notes, fmt.Sprintf("The restore would write the archive's signing key (%s) to %s.", own.KeyID, path))
	}
	return nil
}

// checkFiles refuses, before anything is written, a whole restore whose
// files could not be written at the end: the media store (when the archive
// has media files) and the directory of the signing key file (when the
// archive carries the private key) must be directories Ferry can write.
func (t *RestoreTarget) checkFiles(ctx context.Context, r *archive.Reader) error {
	if r.Manifest().Blobs() > 0 {
		if err := writableDir(t.cfg.MediaStore); err != nil {
			return importer.Refuse("the media store %s: %v: give --media-store the target's media_store_path (from its homeserver.yaml), as a path on this host", t.cfg.MediaStore, err)
		}
	}
	own, _, err := importer.SigningKeys(ctx, r)
	if err != nil || own == nil {
		return err
	}
	path, err := t.signingKeyPath()
	if err != nil {
		return importer.Refuse("where to write the archive's signing key: %v", err)
	}
	if err := writableDir(filepath.Dir(path)); err != nil {
		return importer.Refuse("the archive's signing key goes to %s, but %v: when Synapse runs in a container, its signing_key_path is a path inside it; give --signing-key-file the same file's path on this host", path, err)
	}
	return nil
}

// writableDir says why dir is not a directory this process can create
// files in; nil when it is.
func writableDir(dir string) error {
	if dir == "" {
		return errors.New("no directory given")
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".ferry-check-*")
	if err != nil {
		return fmt.Errorf("cannot write in %s: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// synapseKeyID is the key ID of the Synapse signing key file at path
// ("ed25519:VERSION" from its "ed25519 VERSION SEED" line); "" when there
// is none.
func synapseKeyID(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 || fields[0] != "ed25519" {
		return ""
	}
	return "ed25519:" + fields[1]
}

func (t *RestoreTarget) signingKeyPath() (string, error) {
	if t.cfg.SigningKey != "" {
		return t.cfg.SigningKey, nil
	}
	hs, err := readHomeserverYAML(t.cfg.HomeserverConfig)
	if err != nil {
		return "", err
	}
	if hs.SigningKeyPath == "" {
		return "", fmt.Errorf("%s has no signing_key_path: set it, then restore again", t.cfg.HomeserverConfig)
	}
	if !filepath.IsAbs(hs.SigningKeyPath) {
		return filepath.Join(filepath.Dir(t.cfg.HomeserverConfig), hs.SigningKeyPath), nil
	}
	return hs.SigningKeyPath, nil
}

// ReadBack counts what the target holds with Ferry's own Synapse export,
// except the events, which it counts as that export selects them: an
// events row with its event_json row, in the selected rooms. Running the
// export's events stream instead read every event's JSON back (with its
// state group and redaction) only to count it: most of the read-back
// (25.8 of its 30.7 s at 1M events, on a loaded machine). What the stream
// could leave out beyond the count, a redacted event of a room version
// Ferry cannot redact, is of a room the restore does not write
// (formatVersions).
func (t *RestoreTarget) ReadBack(ctx context.Context, opts importer.Options) (map[string]int64, error) {
	var rooms []string
	if len(opts.Rooms) > 0 {
		rooms = opts.Rooms
	}
	// The events are counted on a connection of their own while the
	// other sections are read: the count is the read-back's longest
	// statement (a scan of events and event_json), and the sections' reads
	// keep mostly the Go side busy.
	type count struct {
		n   int64
		err error
	}
	countCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	counted := make(chan count, 1)
	go func() {
		var c count
		c.n, c.err = t.countEvents(countCtx, rooms)
		counted <- c
	}()
	counts, err := t.readBackSections(ctx, opts)
	if err != nil {
		cancel()
		<-counted
		return nil, err
	}
	c := <-counted
	if c.err != nil {
		return nil, fmt.Errorf("%s: %w", source.StreamEvents, c.err)
	}
	if c.n > 0 {
		counts[archive.SectionEvents] = c.n
	}
	return counts, nil
}

// readBackSections counts the records of every section but the events
// as Ferry's Synapse export reads them from the target.
func (t *RestoreTarget) readBackSections(ctx context.Context, opts importer.Options) (map[string]int64, error) {
	src, err := ssource.Open(ctx, ssource.Config{Database: t.cfg.Database, MediaStore: t.cfg.MediaStore, HomeserverConfig: t.cfg.HomeserverConfig})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// A migration restores the devices' one-time keys too (when the archive
	// has them): they are read back as the export reads them.
	streams, err := src.Streams(ctx, source.Filter{Rooms: opts.Rooms}, source.Options{AccessTokens: opts.Migration, OneTimeKeys: opts.Migration, Encrypted: true})
	if err != nil {
		return nil, err
	}
	streams = slices.DeleteFunc(streams, func(s source.Stream) bool { return s.Name == source.StreamEvents })
	return importer.CountRecords(ctx, streams)
}

// countEvents counts the target's events as Ferry's Synapse export
// selects them (countEventsSQL), in rooms (nil: all).
func (t *RestoreTarget) countEvents(ctx context.Context, rooms []string) (int64, error) {
	conn, err := pgx.Connect(ctx, t.cfg.Database)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// When the pages of both tables are all visible (a fresh target's, which
	// COPY FREEZE loaded; at least 90% by the statistics, which the index
	// builds brought up to date), hash joins and parallel workers are
	// turned off for this transaction, and PostgreSQL counts 1M events by
	// a merge join of the two unique event-ID indexes alone, never reading
	// a row, in 0.7-1.0 s of one process, where it otherwise hashes them
	// in parallel (1.5-2.0 s on three processes, the hash spilling to disk)
	// beside the read-back's other queries. Elsewhere PostgreSQL chooses.
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // read only
	var visible bool
	err = tx.QueryRow(ctx, `SELECT bool_and(relpages > 0 AND relallvisible >= 0.9 * relpages) FROM pg_class
		WHERE oid IN ('events'::regclass, 'event_json'::regclass)`).Scan(&visible)
	if err != nil {
		return 0, err
	}
	if visible {
		if _, err := tx.Exec(ctx, `SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL enable_hashjoin = off`); err != nil {
			return 0, err
		}
	}
	var n int64
	err = tx.QueryRow(ctx, countEventsSQL, rooms).Scan(&n)
	return n, err
}

// countEventsSQL counts the events the Synapse export writes ($1: the
// selected rooms, NULL for all).
const countEventsSQL = `SELECT count(*) FROM events e JOIN event_json j ON j.event_id = e.event_id
	WHERE $1::text[] IS NULL OR e.room_id = ANY($1::text[])`
