package synapse

import (
	"bytes"
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

// Planning parses only events that may be state: any key that
// encoding/json could take for state_key counts.
func TestMayBeState(t *testing.T) {
	for js, want := range map[string]bool{
		`{"type":"m.room.message","content":{"body":"hi"}}`:        false,
		`{"type":"m.room.member","state_key":"@a:b"}`:              true,
		`{"type":"x","State_Key":""}`:                              true,
		`{"type":"x","state\u005fkey":""}`:                         true,
		`{"type":"x","ſtate_key":""}`:                              true,
		`{"type":"x","content":{"body":"the state_key of it"}}`:    true,
		`{"type":"m.room.message","content":{"body":"caf\u00e9"}}`: true,
		`{"type":"x","STATE\u007fKEY":""}`:                         true,
		"{\"type\":\"x\",\"STATE\x7fKEY\":\"\"}":                   true,
		`{"type":"x","content":{"body":"state_ke"}}`:               false,
		`_key":1}`:  false,
		`state_key`: true,
	} {
		if got := mayBeState([]byte(js)); got != want {
			t.Errorf("mayBeState(%s) = %v, want %v", js, got, want)
		}
		if got := mayBeStateAtEveryOffset([]byte(js)); got != want {
			t.Errorf("mayBeStateAtEveryOffset(%s) = %v, want %v", js, got, want)
		}
	}
}

// mayBeState says what a search at every offset says.
func FuzzMayBeState(f *testing.F) {
	for _, s := range []string{`{"state_key":""}`, `{"STATE_KEY":""}`, "state\x7fkey", `_key`, `xstate_`, `{"a\u0073":1}`, "\u212a"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		if got, want := mayBeState(js), mayBeStateAtEveryOffset(js); got != want {
			t.Errorf("mayBeState(%q) = %v, a search at every offset %v", js, got, want)
		}
	})
}

// mayBeStateAtEveryOffset is mayBeState as it was first written: each
// offset compared with state_key, bit 0x20 ignored.
func mayBeStateAtEveryOffset(js []byte) bool {
	for i := 0; i+len(stateKey) <= len(js); i++ {
		if foldsTo(js[i:i+len(stateKey)], stateKey) {
			return true
		}
	}
	return bytes.Contains(js, []byte(`\u`)) || bytes.Contains(js, []byte("\u212a")) || bytes.Contains(js, []byte("\u017f"))
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
		want.Content, got.Content = nil, nil
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
