package synapse

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
	"github.com/ferry-matrix/ferry/internal/testrig/exporttest"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	ssource "github.com/ferry-matrix/ferry/source/synapse"
)

// A room deleted with Synapse's delete-room admin API comes back from last
// night's full archive into the same (stopped) Synapse: its members see it
// again with its whole history, and its alias points at it. Before that,
// each refusal rule holds: a room the server still has, a room a scheduled
// task would purge again, a blocked room without --unblock.
func TestRestoreDeletedRoom(t *testing.T) {
	ctx := context.Background()
	const name = "rooms.ferry.test"
	s := testenv.StartSynapse(t, name)
	truth, err := seed.Run(ctx, seed.Server{URL: s.URL, ServerName: name,
		Register: func(local, pw string, admin bool) (string, error) { return s.Register(t, local, pw, admin), nil }})
	if err != nil {
		t.Fatal(err)
	}
	var general, ops string
	for _, r := range truth.Rooms {
		switch r.Label {
		case "general":
			general = r.RoomID
		case "ops":
			ops = r.RoomID
		}
	}
	before := capture(t, s.URL, truth)
	s.Stop()
	src, err := ssource.Open(ctx, ssource.Config{Database: s.DB, MediaStore: s.MediaStore, SigningKey: s.SigningKey, HomeserverConfig: s.Config})
	if err != nil {
		t.Fatal(err)
	}
	dir, key, _ := exporttest.ExportDir(t, src, source.Filter{}, source.Options{AccessTokens: true, PrivateServerKey: true})
	src.Close()

	// The accident: an admin deletes #general (purging its history).
	s.Start(t)
	alice := before.Users["@alice:"+name].Token
	c := &clientview.Client{URL: s.URL, ServerName: name}
	var deleted map[string]any
	if err := c.Do(ctx, http.MethodDelete, "/_synapse/admin/v1/rooms/"+general, alice, map[string]any{"purge": true}, &deleted); err != nil {
		t.Fatalf("delete %s: %v", general, err)
	}
	s.Stop()

	target := NewTarget(Config{Database: s.DB, HomeserverConfig: s.Config, MediaStore: s.MediaStore, SigningKey: s.SigningKey})
	restore := func(opts importer.Options) (*importer.Result, error) {
		return importer.Run(ctx, target, exporttest.Open(t, dir, key), opts, nil)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		conn, err := pgx.Connect(ctx, s.DB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(dest any, sql string, args ...any) {
		t.Helper()
		conn, err := pgx.Connect(ctx, s.DB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, sql, args...).Scan(dest); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(opts importer.Options, want string) {
		t.Helper()
		_, err := restore(opts)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("restore %v: %v, want a refusal saying %q", opts.Rooms, err, want)
		}
	}
	refused(importer.Options{Rooms: []string{ops}}, "still in the target")
	exec(`INSERT INTO scheduled_tasks (id, action, status, timestamp, resource_id) VALUES ('t1', 'purge_room', 'scheduled', 0, $1)`, general)
	refused(importer.Options{Rooms: []string{general}}, "scheduled task t1")
	exec(`DELETE FROM scheduled_tasks WHERE id = 't1'`)
	exec(`INSERT INTO blocked_rooms (room_id, user_id) VALUES ($1, '@alice:`+name+`') ON CONFLICT DO NOTHING`, general)
	refused(importer.Options{Rooms: []string{general}}, "--unblock")

	// Synapse has not finished indexing the server for search (say, after
	// a whole restore): the room restore must leave that range pending.
	const pending = `{"target_min_stream_id_inclusive": 3, "max_stream_id_exclusive": 3, "rows_inserted": 0}`
	exec(`INSERT INTO background_updates (update_name, progress_json) VALUES ('event_search', $1)
		ON CONFLICT (update_name) DO UPDATE SET progress_json = EXCLUDED.progress_json`, pending)

	res, err := restore(importer.Options{Rooms: []string{general}, Unblock: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, general+": unblocked") }) {
		t.Errorf("the report does not say the room was unblocked: %v", res.Notes)
	}
	var progress string
	var messages, indexed int
	scan(&progress, `SELECT progress_json FROM background_updates WHERE update_name = 'event_search'`)
	if progress != pending {
		t.Errorf("the pending search update after the room restore: %s, want it untouched: %s", progress, pending)
	}
	scan(&messages, `SELECT count(*) FROM events e JOIN event_json j USING (event_id)
		WHERE e.room_id = $1 AND e.type = 'm.room.message' AND e.rejection_reason IS NULL
		AND json_typeof((j.json::json)->'content'->'body') = 'string'`, general)
	scan(&indexed, `SELECT count(*) FROM event_search WHERE room_id = $1 AND key = 'content.body'`, general)
	if messages == 0 || indexed != messages {
		t.Errorf("%d of the restored room's %d messages are indexed for search", indexed, messages)
	}
	t.Logf("report:\n%s\nnotes: %v\nin archive %v, in target %v", res.Report, res.Notes, res.InArchive, res.InTarget)
	again, err := restore(importer.Options{Rooms: []string{general}, Unblock: true})
	if err != nil || !again.Target.Resuming {
		t.Errorf("the same room restore again: %v (%+v)", err, again)
	}

	s.Start(t)
	after := capture(t, s.URL, truth)
	for uid, want := range before.Users {
		got := after.Users[uid]
		if slices.Contains(want.Joined, general) != slices.Contains(got.Joined, general) {
			t.Errorf("%s: joined %v after the restore, before the deletion %v", uid, got.Joined, want.Joined)
		}
		if !slices.Equal(want.State[general], got.State[general]) {
			t.Errorf("%s: the state of %s differs after the restore", uid, general)
		}
		// Synapse's purge deleted the room's tags (bob's m.favourite) and
		// left their revision rows: the tags come back all the same.
		if string(want.Tags[general]) != string(got.Tags[general]) {
			t.Errorf("%s: tags of %s after the restore %s, before the deletion %s", uid, general, got.Tags[general], want.Tags[general])
		}
	}
	if d := clientview.Diff(&clientview.View{Rooms: map[string][]clientview.TimelineEvent{general: before.Rooms[general]}},
		&clientview.View{Rooms: map[string][]clientview.TimelineEvent{general: after.Rooms[general]}}); len(d) > 0 {
		t.Errorf("the timeline of %s after the restore: %v", general, d)
	}
	var alias struct {
		RoomID string `json:"room_id"`
	}
	if err := c.Get(ctx, alice, "/_matrix/client/v3/directory/room/%23general:"+name, &alias); err != nil || alias.RoomID != general {
		t.Errorf("#general points at %q (%v), want %s", alias.RoomID, err, general)
	}
	// A new message in the restored room reaches another member.
	bob, err := c.Login(ctx, "bob", seed.Password("bob"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Send(ctx, alice, general, "after-room-restore", "the room is back")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := c.SyncTimelineIDs(ctx, bob)
	if err != nil || !slices.Contains(tl[general], id) {
		t.Errorf("bob's /sync lacks %s in %s (%v)", id, general, err)
	}

	// The accident again: the restored room is deleted once more, and the
	// same archive brings it back once more (the first restore's record
	// does not make this one a finished rerun). Synapse 1.160 cannot purge
	// a room still queued in sliding_sync_joined_rooms_to_recalculate (its
	// purge leaves that table's foreign key behind): an admin waits for the
	// background updates the restore queued, as docs/SYNAPSE-RESTORE.md says.
	for try := 0; ; try++ {
		conn, err := pgx.Connect(ctx, s.DB)
		if err != nil {
			t.Fatal(err)
		}
		left, err := pendingRebuilds(ctx, conn)
		conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			break
		}
		if try == 120 {
			t.Fatalf("the background updates the restore queued still pending after a minute: %s", left)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := c.Do(ctx, http.MethodDelete, "/_synapse/admin/v1/rooms/"+general, alice, map[string]any{"purge": true}, &deleted); err != nil {
		t.Fatalf("delete %s again: %v", general, err)
	}
	s.Stop()
	third, err := restore(importer.Options{Rooms: []string{general}})
	if err != nil {
		t.Fatalf("the room deleted again, restored again: %v", err)
	}
	if third.Target.Resuming {
		t.Errorf("the restore of a room deleted again was taken for a finished rerun: %+v", third.Target)
	}
	s.Start(t)
	if tl, err := c.Timeline(ctx, alice, general); err != nil || len(tl) != len(before.Rooms[general]) {
		t.Errorf("after the second restore alice sees %d events of %s (%v), before the first deletion %d", len(tl), general, err, len(before.Rooms[general]))
	}
	s.Stop()

	// Another Synapse never had the room's members: it is refused there.
	other := testenv.NewSynapse(t, name)
	_, err = importer.Run(ctx, NewTarget(Config{Database: other.DB, HomeserverConfig: other.Config, MediaStore: other.MediaStore, SigningKey: other.SigningKey}),
		exporttest.Open(t, dir, key), importer.Options{Rooms: []string{general}}, nil)
	if !errors.Is(err, importer.ErrRefused) || !strings.Contains(err.Error(), "no account on this server") {
		t.Errorf("a room restore into a Synapse without the room's members: %v, want a refusal naming them", err)
	}
}
