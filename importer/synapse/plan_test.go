package synapse

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/matrixevent"
)

// A room the source had joined with partial state (a resync unfinished)
// is restored as a complete room with the state the source had, and the
// plan reports it as degraded by room ID; no partial_state rows are
// written.
func TestPlanReportsPartialStateRooms(t *testing.T) {
	var partial string
	r, _ := archivetest.Rewrite(t, archivetest.OpenSample(t), func(section string, rec any) (bool, error) {
		if room, ok := rec.(*archive.Room); ok && partial == "" {
			room.PartialState = true
			partial = room.RoomID
		}
		return true, nil
	}, nil)
	res := &importer.Result{Report: &fidelity.Report{}}
	if err := NewTarget(Config{}).Plan(context.Background(), r, importer.Options{}, res); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range res.Report.Entries {
		if e.ID == partial && e.Code == fidelity.MissingEvent && strings.Contains(e.Detail, "partial state") {
			found = true
		}
	}
	if partial == "" || !found {
		t.Errorf("the plan does not report partial-state room %q as degraded:\n%s", partial, res.Report)
	}
}

// A room restore refuses a room with joined members on another server (it
// lives on there), reading the archive alone, and takes a local-only room
// past that rule.
func TestRoomRestoreRefusesRoomsWithRemoteMembers(t *testing.T) {
	ctx := context.Background()
	var shared string
	rooms := map[string]bool{}
	r, _ := archivetest.Rewrite(t, archivetest.OpenSample(t), func(section string, rec any) (bool, error) {
		if m, ok := rec.(*archive.Membership); ok {
			rooms[m.RoomID] = true
			if shared == "" && m.Membership == "join" {
				shared = m.RoomID
				m.UserID = "@visitor:elsewhere.test"
			}
		}
		return true, nil
	}, nil)
	if shared == "" {
		t.Fatal("the sample archive has no joined member")
	}
	err := NewTarget(Config{}).checkRooms(ctx, r, importer.Options{Rooms: []string{shared}})
	if !errors.Is(err, importer.ErrRefused) || !strings.Contains(err.Error(), "joined members on other servers (elsewhere.test)") {
		t.Errorf("restore of %s, which elsewhere.test has joined: %v, want a refusal naming the server", shared, err)
	}
	for id := range rooms {
		if id == shared {
			continue
		}
		// A local-only room gets past the rule, to the target's database
		// (here: none).
		err := NewTarget(Config{}).checkRooms(ctx, r, importer.Options{Rooms: []string{id}})
		if err != nil && strings.Contains(err.Error(), "other servers") {
			t.Errorf("restore of local-only %s: %v", id, err)
		}
		break
	}
}

// parseEventRow gives matrixevent.Parse's fields (but the raw content) for
// every event of the sample archive.
func TestParseEventRowAgreesWithParse(t *testing.T) {
	n := 0
	err := archive.ReadSection(context.Background(), archivetest.OpenSample(t), archive.SectionEvents, func(e *archive.Event) error {
		want, err := matrixevent.Parse(e.JSON)
		if err != nil {
			return err
		}
		got, _, err := parseEventRow(string(e.JSON))
		if err != nil {
			return err
		}
		// parseEventRow leaves Content, Depth and Unsigned to eventRow.
		want.Content, got.Content, want.Depth, want.Unsigned = nil, nil, nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: parseEventRow %+v, Parse %+v", e.EventID, got, want)
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("%d events: %v", n, err)
	}
}

// An event's previous events become one edge each, however often it
// names them.
func TestDistinct(t *testing.T) {
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprint("$", i%7)
	}
	for _, c := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"$a"}, []string{"$a"}},
		{[]string{"$a", "$b"}, []string{"$a", "$b"}},
		{[]string{"$a", "$b", "$a", "$a"}, []string{"$a", "$b"}},
		{many, []string{"$0", "$1", "$2", "$3", "$4", "$5", "$6"}},
	} {
		if got := distinct(c.in); !slices.Equal(got, c.want) {
			t.Errorf("distinct(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// A snapshot's group is allocated the first time an event stands on it,
// its ancestors' first, so a parent's ID is below its children's however
// the events name them; a chain is refused past Synapse's hop limit, as is
// a snapshot that removes keys, a missing one and a cycle.
func TestNeedAllocatesParentsFirst(t *testing.T) {
	// 1 <- 2 <- 3, and 1 <- 4; 5 removes a key of 1, and 9 is a child of
	// 5; 6 names a missing parent; 7 and 8 are each other's parent.
	sp := &statePlan{snaps: map[uint64]*snapInfo{
		1: {}, 2: {parent: 1}, 3: {parent: 2}, 4: {parent: 1}, 5: {parent: 1, removes: true},
		6: {parent: 99}, 7: {parent: 8}, 8: {parent: 7}, 9: {parent: 5},
	}}
	alloc := &groupAllocator{next: 100}
	g3, err := sp.need(3, alloc)
	if err != nil {
		t.Fatal(err)
	}
	g4, err := sp.need(4, alloc)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sp.need(3, alloc)
	if err != nil || again != g3 {
		t.Errorf("needing snapshot 3 again gave %+v, %v; want its group %+v", again, err, g3)
	}
	want := map[uint64]group{1: {101, 0}, 2: {102, 1}, 3: {103, 2}, 4: {104, 1}}
	for id, w := range want {
		if got := sp.snaps[id].group; got != w {
			t.Errorf("snapshot %d: group %+v, want %+v", id, got, w)
		}
	}
	if g4 != want[4] {
		t.Errorf("need(4) = %+v, want %+v", g4, want[4])
	}
	for id, wantErr := range map[uint64]string{5: "removes keys", 9: "removes keys", 6: "lacks", 7: "its own ancestor", 42: "lacks"} {
		if _, err := sp.need(id, alloc); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("need(%d) = %v, want an error saying %q", id, err, wantErr)
		}
	}

	long := &statePlan{snaps: map[uint64]*snapInfo{1: {}}}
	for id := uint64(2); id <= maxDeltaHops+2; id++ {
		long.snaps[id] = &snapInfo{parent: id - 1}
	}
	if _, err := long.need(maxDeltaHops+1, &groupAllocator{}); err != nil {
		t.Errorf("a chain of %d hops: %v", maxDeltaHops, err)
	}
	if _, err := long.need(maxDeltaHops+2, &groupAllocator{next: 1000}); err == nil || !strings.Contains(err.Error(), "hops") {
		t.Errorf("a chain of %d hops: %v, want a refusal", maxDeltaHops+1, err)
	}
}
