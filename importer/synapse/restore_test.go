package synapse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/importer/targettest"
	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
	"github.com/ferry-matrix/ferry/internal/testrig/fixturecheck"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// The real Synapse fixtures (1.67 at schema 72, and the same data upgraded
// to today's schema), exported and restored whole into a fresh Synapse
// 1.160: Synapse starts on it, and what its users see through the
// client-server API is the ground truth.
//
// The schema-72 fixture comes back from a migration export (devices and
// access tokens too); the schema-94 one from an ordinary backup, whose
// restore still brings back every user's cross-signing keys.
func TestRestoreFixtureIntoSynapse(t *testing.T) {
	for _, fixture := range []string{"synapse-1.67", "synapse-latest-schema"} {
		t.Run(fixture, func(t *testing.T) { restoreFixture(t, fixture, fixture == "synapse-1.67") })
	}
}

func restoreFixture(t *testing.T, fixture string, migration bool) {
	ctx := context.Background()
	truth, err := sourcetest.LoadGroundTruth(testdata + "synapse-1.67/ground_truth.json")
	if err != nil {
		t.Fatal(err)
	}
	r := exportFixture(t, fixture, source.Options{AccessTokens: migration, PrivateServerKey: true, Encrypted: true})
	s := testenv.NewSynapse(t, truth.ServerName)
	cfg := Config{Database: s.DB, HomeserverConfig: s.Config, MediaStore: s.MediaStore, SigningKey: s.SigningKey}
	if migration {
		cfg.RunBackgroundUpdates = s.RunBackgroundUpdates // the other fixture leaves them to Synapse, as an admin would by default
	}
	target := NewTarget(cfg)
	res, err := importer.Run(ctx, target, r, importer.Options{Migration: migration}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantNotes := []string{"background updates are done"}
	if !migration {
		wantNotes = []string{"updates pending: ", "chain_cover", "event_search"}
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool {
		return !slices.ContainsFunc(wantNotes, func(w string) bool { return !strings.Contains(n, w) })
	}) {
		t.Errorf("no note says %q: %q", wantNotes, res.Notes)
	}
	t.Logf("report:\n%s\nfiles: %v\nnotes: %v\nin archive %v\nin target %v", res.Report, res.Files, res.Notes, res.InArchive, res.InTarget)
	checkParticipants(t, s.DB)
	s.Start(t)
	c := &clientview.Client{URL: s.URL, ServerName: truth.ServerName}
	tokens := fixturecheck.Login(t, c, truth)
	fixturecheck.Rooms(t, c, truth, tokens, fixturecheck.ArchiveEvents(t, r))
	fixturecheck.Search(t, c, truth, tokens)
	fixturecheck.Users(t, c, truth, tokens)
	fixturecheck.CrossSigning(t, c, truth, tokens)

	// A new message reaches the other members over /sync: the restored
	// stream positions and extremities take new events.
	const square = "!ogWeHYJmPRtxIzbUbr:fixture.test"
	id, err := c.Send(ctx, tokens["@nina:fixture.test"], square, "after-restore", "hello from the restored Synapse")
	if err != nil {
		t.Fatal(err)
	}
	// A new login: Synapse answers a repeated initial sync of the same
	// device from its response cache for a while.
	oliver, err := c.Login(ctx, "oliver", "oliver-Fixtur3pw")
	if err != nil {
		t.Fatal(err)
	}
	got := false
	for try := 0; try < 100 && !got; try++ {
		tl, err := c.SyncTimelineIDs(ctx, oliver)
		if err != nil {
			t.Fatal(err)
		}
		got = slices.Contains(tl[square], id)
		time.Sleep(100 * time.Millisecond)
	}
	if !got {
		t.Errorf("oliver never received %s via /sync", id)
	}

	// The same archive again: recognised as this restore, nothing written.
	s.Stop()
	again, err := importer.Run(ctx, target, r, importer.Options{Migration: migration}, nil)
	if err != nil {
		t.Fatalf("the same archive again: %v", err)
	}
	if !again.Target.Resuming || again.InTarget[archive.SectionEvents] != res.InTarget[archive.SectionEvents]+1 {
		t.Errorf("rerun: resuming %v, %d events in the target (first run %d, plus the new message)", again.Target.Resuming,
			again.InTarget[archive.SectionEvents], res.InTarget[archive.SectionEvents])
	}
}

// checkParticipants asserts that the restore marked as participant
// exactly the memberships of users who sent an accepted m.room.message or
// m.room.encrypted event in the room (the definition, asked of each
// membership), and that there are some.
func checkParticipants(t *testing.T, db string) {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, db)
	defer conn.Close(ctx)
	var participants, wrong int
	err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE participant),
		count(*) FILTER (WHERE participant IS DISTINCT FROM EXISTS (SELECT 1 FROM events e WHERE e.room_id = m.room_id AND e.sender = m.user_id
			AND e.type IN ('m.room.message', 'm.room.encrypted') AND e.rejection_reason IS NULL))
		FROM room_memberships m`).Scan(&participants, &wrong)
	if err != nil {
		t.Fatal(err)
	}
	if participants == 0 || wrong != 0 {
		t.Errorf("room_memberships.participant: %d set, %d differ from the definition", participants, wrong)
	}
}

// connect connects to db, failing the test when it cannot; the caller
// closes the connection (Check refuses a target with other sessions).
func connect(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// A corrupt archive is refused although the rooms phase loaded it beside
// the validation: the phase is rolled back and the run leaves nothing of
// itself (no ferry_restore or ferry_restore_deferred table, every deferred
// index in place).
func TestCorruptArchiveLeavesNoTrace(t *testing.T) {
	ctx := context.Background()
	r := targettest.Corrupt(t, exportFixture(t, "synapse-1.67", source.Options{AccessTokens: true, PrivateServerKey: true, Encrypted: true}))
	s := testenv.NewSynapse(t, r.Core().ServerName)
	catalog := func() (tables int, items int) {
		t.Helper()
		conn, err := pgx.Connect(ctx, s.DB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_class WHERE relname IN ('ferry_restore', 'ferry_restore_deferred')),
			(SELECT count(*) FROM pg_index WHERE indrelid = 'events'::regclass) + (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal)`).Scan(&tables, &items)
		if err != nil {
			t.Fatal(err)
		}
		return tables, items
	}
	_, before := catalog()
	target := NewTarget(Config{Database: s.DB, HomeserverConfig: s.Config, MediaStore: s.MediaStore, SigningKey: s.SigningKey})
	_, err := importer.Run(ctx, target, r, importer.Options{Migration: true}, nil)
	if !errors.Is(err, importer.ErrRefused) || !strings.Contains(err.Error(), "failed validation") {
		t.Fatalf("a corrupt archive: %v, want the validation's refusal", err)
	}
	if tables, items := catalog(); tables != 0 || items != before {
		t.Errorf("after the refusal: %d of the restore's tables, %d indexes and triggers (before: %d)", tables, items, before)
	}
}

// An archive holding one event twice (every check of each copy passes),
// or giving two events one stream ordering, is refused at the load, which
// is rolled back, naming the events: the load's eventKeys find what the
// events' unique constraints, built again after the commit, would refuse.
// The copy of an event given a stream ordering of its own is found by the
// hash of its ID, and named by the constraint built then (createGuards).
// A state snapshot twice, which would give two state groups one ID, is
// refused too.
func TestEventTwiceIsRefusedBeforeTheLoadCommits(t *testing.T) {
	ctx := context.Background()
	fixture := exportFixture(t, "synapse-1.67", source.Options{AccessTokens: true, PrivateServerKey: true, Encrypted: true})
	for _, tc := range []struct {
		name string
		// twice: add a copy of the first state event that is no outlier
		// at the end, with another stream ordering when newOrdering;
		// otherwise give the second such event the first's ordering.
		twice, newOrdering bool
		// snapshotTwice: add a copy of the first state snapshot instead.
		snapshotTwice bool
	}{
		{name: "an event twice", twice: true},
		{name: "an event twice, with another stream ordering", twice: true, newOrdering: true},
		{name: "two events with one stream ordering"},
		{name: "a state snapshot twice", snapshotTwice: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var first, second *archive.Event
			var snapshot *archive.StateSnapshot
			r, _ := archivetest.RewriteEncrypted(t, keywrap.New(), fixture,
				func(section string, rec any) (bool, error) {
					if s, ok := rec.(*archive.StateSnapshot); ok && snapshot == nil {
						c := *s
						snapshot = &c
					}
					e, ok := rec.(*archive.Event)
					if !ok || e.Outlier || e.StateBefore == 0 {
						return true, nil
					}
					if first == nil {
						c := *e
						first = &c
					} else if second == nil {
						if !tc.twice {
							e.StreamOrdering = first.StreamOrdering
						}
						second = e
					}
					return true, nil
				}, func(w *archive.Writer) {
					if tc.snapshotTwice {
						if err := w.Add(archive.SectionStateSnapshots, snapshot); err != nil {
							t.Fatal(err)
						}
					}
					if !tc.twice {
						return
					}
					added := *first
					if tc.newOrdering {
						added.StreamOrdering = 1 << 40
					}
					if err := w.Add(archive.SectionEvents, &added); err != nil {
						t.Fatal(err)
					}
				})
			named := []string{first.EventID}
			switch {
			case tc.snapshotTwice:
				named = []string{fmt.Sprintf("state snapshot %d twice", snapshot.ID)}
			case !tc.twice:
				named = append(named, second.EventID)
			}
			s := testenv.NewSynapse(t, r.Core().ServerName)
			target := NewTarget(Config{Database: s.DB, HomeserverConfig: s.Config, MediaStore: s.MediaStore, SigningKey: s.SigningKey})
			_, err := importer.Run(ctx, target, r, importer.Options{Migration: true}, nil)
			if err == nil || !strings.Contains(err.Error(), "the archive is damaged") {
				t.Fatalf("%s: %v, want it refused as damaged", tc.name, err)
			}
			t.Logf("refused: %v", err)
			for _, id := range named {
				if !strings.Contains(err.Error(), id) {
					t.Errorf("the refusal does not name %s: %v", id, err)
				}
			}
			conn := connect(t, s.DB)
			defer conn.Close(ctx)
			var events, phases int
			if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM ferry_restore WHERE phase <> 'started')`).Scan(&events, &phases); err != nil || events != 0 || phases != 0 {
				t.Errorf("after the refusal: %d events and %d finished phases in the target (%v), want none", events, phases, err)
			}
		})
	}
}
