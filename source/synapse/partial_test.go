package synapse

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

const (
	roomMod    = "!jXsAyHRwxbXAilEItV:fixture.test"
	roomDM     = "!ncVHMhTOeCGKwfUKBO:fixture.test"
	roomSquare = "!ogWeHYJmPRtxIzbUbr:fixture.test"
)

func collect(t *testing.T, cfg Config, f source.Filter) map[string][]any {
	t.Helper()
	src, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	return sourcetest.Collect(t, src, f, source.Options{Encrypted: true})
}

func rooms(recs map[string][]any, section string) map[string]int {
	out := map[string]int{}
	for _, r := range recs[section] {
		switch v := r.(type) {
		case *archive.Event:
			out[v.RoomID]++
		case *archive.Room:
			out[v.RoomID]++
		case *archive.Membership:
			out[v.RoomID]++
		case *archive.Receipt:
			out[v.RoomID]++
		case *archive.StateSnapshot:
			out[v.RoomID]++
		}
	}
	return out
}

func mediaIDs(recs map[string][]any) []string {
	var ids []string
	for _, r := range recs[archive.SectionMedia] {
		ids = append(ids, r.(*archive.Media).MediaID)
	}
	slices.Sort(ids)
	return ids
}

func TestPartialExports(t *testing.T) {
	cfg := fixture(t, "synapse-1.67")
	truth, err := sourcetest.LoadGroundTruth(testdata + "synapse-1.67/ground_truth.json")
	if err != nil {
		t.Fatal(err)
	}
	want := func(room string) int {
		n := 0
		for _, c := range truth.EventsByRoomAndType[room] {
			n += c
		}
		return n
	}

	t.Run("rooms", func(t *testing.T) {
		recs := collect(t, cfg, source.Filter{Rooms: []string{roomMod, roomDM}})
		ev := rooms(recs, archive.SectionEvents)
		if len(ev) != 2 || ev[roomMod] != want(roomMod) || ev[roomDM] != want(roomDM) {
			t.Errorf("events per room %v, want mod=%d dm=%d only", ev, want(roomMod), want(roomDM))
		}
		for _, section := range []string{archive.SectionRooms, archive.SectionMemberships, archive.SectionStateSnapshots, archive.SectionReceipts} {
			for room := range rooms(recs, section) {
				if room != roomMod && room != roomDM {
					t.Errorf("%s holds room %s outside the filter", section, room)
				}
			}
		}
		if len(recs[archive.SectionUsers]) != 0 || len(recs[archive.SectionDevices]) != 0 {
			t.Error("a rooms-only export carries accounts")
		}
		// Referenced media only: the image posted in the DM, not the avatars of other rooms.
		if got := mediaIDs(recs); !slices.Equal(got, []string{"DeKlGJiSDBbqhyERIVWobQSs", "HcVviMsuYjRGvUiPdYYNJuMP", "KQIgwpqPuoAxvllWNGFLONss", "KjTssMSsVbzJBlfGdQKZPcIi", "OVdJsVTKqWNhsyePniSiXnkr", "RGlfdqWUmbAZQlQfsQgHYOaQ", "TnjAGDpxzEZBiuJVQKffuUhv"}) {
			t.Errorf("referenced media %v", got)
		}
	})

	// A room export redacts the same events, the same way, as the full
	// export: its redactions are found through the room's own events.
	t.Run("redactions", func(t *testing.T) {
		full := collect(t, cfg, source.Filter{})
		byRoom := map[string]map[string]*archive.Event{}
		for _, r := range full[archive.SectionEvents] {
			if ev := r.(*archive.Event); ev.Redacted {
				if byRoom[ev.RoomID] == nil {
					byRoom[ev.RoomID] = map[string]*archive.Event{}
				}
				byRoom[ev.RoomID][ev.EventID] = ev
			}
		}
		if len(byRoom) == 0 || len(truth.Redactions) == 0 {
			t.Fatal("the fixture's full export has no redacted events")
		}
		for room, redacted := range byRoom {
			recs := collect(t, cfg, source.Filter{Rooms: []string{room}, Media: source.MediaNone})
			got := 0
			for _, r := range recs[archive.SectionEvents] {
				ev := r.(*archive.Event)
				if want, ok := redacted[ev.EventID]; ok {
					got++
					if !ev.Redacted || string(ev.JSON) != string(want.JSON) {
						t.Errorf("%s in a %s export: redacted=%v %s, want the full export's %s", ev.EventID, room, ev.Redacted, ev.JSON, want.JSON)
					}
				} else if ev.Redacted {
					t.Errorf("%s is redacted in the %s export but not in the full one", ev.EventID, room)
				}
			}
			if got != len(redacted) || len(recs[archive.SectionRedactions]) < len(redacted) {
				t.Errorf("room %s: %d of %d redacted events, %d redaction records", room, got, len(redacted), len(recs[archive.SectionRedactions]))
			}
		}
	})

	t.Run("time range", func(t *testing.T) {
		ts := eventTimes(t, cfg.Database, roomSquare)
		since, until := ts[len(ts)/3], ts[2*len(ts)/3]
		recs := collect(t, cfg, source.Filter{Rooms: []string{roomSquare}, Since: time.UnixMilli(since), Until: time.UnixMilli(until)})
		inRange, state := 0, 0
		for _, r := range recs[archive.SectionEvents] {
			var ev struct {
				TS       int64   `json:"origin_server_ts"`
				StateKey *string `json:"state_key"`
			}
			json.Unmarshal(r.(*archive.Event).JSON, &ev)
			switch {
			case ev.StateKey != nil:
				state++
			case ev.TS < since || ev.TS >= until:
				t.Errorf("event at %d outside [%d, %d)", ev.TS, since, until)
			default:
				inRange++
			}
		}
		wantInRange := 0
		for _, x := range ts {
			if x >= since && x < until {
				wantInRange++
			}
		}
		if inRange != wantInRange || state == 0 {
			t.Errorf("%d timeline events in range (want %d), %d state events (all state of the room is kept)", inRange, wantInRange, state)
		}
	})

	t.Run("users", func(t *testing.T) {
		recs := collect(t, cfg, source.Filter{Users: []string{"@priya:fixture.test"}})
		for _, r := range recs[archive.SectionUsers] {
			if r.(*archive.User).UserID != "@priya:fixture.test" {
				t.Errorf("user %s exported", r.(*archive.User).UserID)
			}
		}
		if len(recs[archive.SectionUsers]) != 1 {
			t.Errorf("%d users", len(recs[archive.SectionUsers]))
		}
		for _, section := range []string{archive.SectionDevices, archive.SectionAccountData, archive.SectionE2EEKeys, archive.SectionMemberships, archive.SectionReceipts} {
			for _, r := range recs[section] {
				b, _ := json.Marshal(r)
				var v struct {
					UserID string `json:"UserID"`
				}
				json.Unmarshal(b, &v)
				if v.UserID != "@priya:fixture.test" {
					t.Errorf("%s record of %s", section, v.UserID)
				}
			}
		}
		// Priya's rooms: oncall, vault, mod, dm, square (not gov).
		if ev := rooms(recs, archive.SectionEvents); len(ev) != 5 || ev["!FMxGcxhpztUDbEOnlZ:fixture.test"] != 0 {
			t.Errorf("events by room %v", ev)
		}
	})

	t.Run("combined with media none", func(t *testing.T) {
		ts := eventTimes(t, cfg.Database, roomDM)
		recs := collect(t, cfg, source.Filter{Rooms: []string{roomDM}, Users: []string{"@oliver:fixture.test"}, Since: time.UnixMilli(ts[len(ts)/2]), Media: source.MediaNone})
		if len(recs[archive.SectionMedia]) != 0 {
			t.Error("media exported with --media none")
		}
		if ev := rooms(recs, archive.SectionEvents); len(ev) != 1 || ev[roomDM] == 0 || ev[roomDM] >= want(roomDM) {
			t.Errorf("events %v", ev)
		}
		if len(recs[archive.SectionUsers]) != 1 {
			t.Errorf("users %d", len(recs[archive.SectionUsers]))
		}
	})

	t.Run("media all with a user filter", func(t *testing.T) {
		recs := collect(t, cfg, source.Filter{Users: []string{"@oliver:fixture.test"}, Media: source.MediaAll})
		if got := mediaIDs(recs); !slices.Equal(got, []string{"DeKlGJiSDBbqhyERIVWobQSs", "EvsBqyMxYRyGDhgFqRkTZolr", "HcVviMsuYjRGvUiPdYYNJuMP"}) {
			t.Errorf("oliver's uploads %v", got)
		}
	})

	t.Run("bad filters", func(t *testing.T) {
		src, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if _, err := src.Streams(context.Background(), source.Filter{Rooms: []string{"!nope:fixture.test"}}, source.Options{}); err == nil {
			t.Error("unknown room accepted")
		}
		if _, err := src.Streams(context.Background(), source.Filter{Since: time.Now(), Until: time.Now().Add(-time.Hour)}, source.Options{}); err == nil {
			t.Error("empty time range accepted")
		}
		if _, err := src.Streams(context.Background(), source.Filter{Media: "some"}, source.Options{}); err == nil {
			t.Error("unknown media choice accepted")
		}
		if _, err := src.Streams(context.Background(), source.Filter{Rooms: []string{roomDM}}, source.Options{PrivateServerKey: true, Encrypted: true}); err == nil {
			t.Error("private signing key in a partial export accepted")
		}
	})
}

// eventTimes lists a room's timeline (non-state) event times, sorted.
func eventTimes(t *testing.T, url, room string) []int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `SELECT origin_server_ts FROM events WHERE room_id = $1 AND state_key IS NULL ORDER BY origin_server_ts`, room)
	ts, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// A schema newer than the tested one exports with a warning; an older one
// than supported is refused with a clear message.
func TestSchemaVersions(t *testing.T) {
	ctx := context.Background()
	cfg := fixture(t, "synapse-latest-schema")
	conn, err := pgx.Connect(ctx, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, `UPDATE schema_version SET version = 120`)
	src, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("newer schema: %v", err)
	}
	if w := src.Info().Warnings; len(w) != 1 {
		t.Errorf("warnings %v", w)
	}
	src.Close()
	r, _ := export(t, cfg, source.Filter{}, source.Options{})
	if rep, err := archive.Validate(ctx, r); err != nil || !rep.OK() || rep.Events != 1630 {
		t.Fatalf("newer schema export: %v %+v", err, rep)
	}
	conn.Exec(ctx, `UPDATE schema_version SET version = 55`)
	if _, err := Open(ctx, cfg); err == nil || !errorsIs(err, source.ErrSchema) {
		t.Fatalf("old schema: %v", err)
	}
	conn.Exec(ctx, `DROP TABLE schema_version`)
	if _, err := Open(ctx, cfg); err == nil || !errorsIs(err, source.ErrSchema) {
		t.Fatalf("not a Synapse database: %v", err)
	}
}
