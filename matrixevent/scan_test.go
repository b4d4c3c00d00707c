package matrixevent_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ferry-matrix/ferry/matrixevent"
)

// scanSeeds are JSON texts at the edges of what the scanner handles: each
// is either read as encoding/json reads it or left to encoding/json.
var scanSeeds = []string{
	`{}`, ` {"a":1} `, `{"a":1,"a":2}`, `{"A":1}`, `{"\u0061":1}`, `{"a":"x\u00e9"}`, `{"a":"\xff"}`,
	`{"ſtate_key":""}`, `{"\u212a":1}`, `{"a":1e999}`, `{"a":[1,{"b":null}],"state_key":"k"}`, `{"a":01}`,
	`{"a":-0.5e+3}`, `{"a":"\u12"}`, `{"a":tru}`, `{"a":1}x`, `[1]`, `{"a":1,}`, `{"a" : { } , "b":[ ]}`,
	"{\"a\":\"\t\"}", `{"type":"m.room.redaction","sender":"@a:b","content":{"redacts":"$x"}}`,
	`{"type":"m.room.redaction","sender":"@a:b","redacts":null,"content":{"redacts":5}}`,
	`{"type":"t","sender":"s","prev_events":[["$a",{"sha256":"x"}]],"auth_events":null}`,
	`{"type":"t","sender":"s","origin_server_ts":1.5}`, `{"type":"t","sender":"s","state_key":null}`,
	`{"type":"t","sender":"s","content":"x"}`, `{"type":"","sender":"s"}`,
}

// ScanObject, where it answers, finds the raw values encoding/json
// decodes into json.RawMessage fields of those names.
func FuzzScanObject(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var vals [3]string
		if !matrixevent.ScanObject(s, []string{"a", "state_key", "m.relates_to"}, vals[:]) {
			return
		}
		var want struct {
			A         json.RawMessage `json:"a"`
			StateKey  json.RawMessage `json:"state_key"`
			RelatesTo json.RawMessage `json:"m.relates_to"`
		}
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("%q: ScanObject ok, encoding/json: %v", s, err)
		}
		if got := [3]string{string(want.A), string(want.StateKey), string(want.RelatesTo)}; got != vals {
			t.Fatalf("%q: ScanObject %q, encoding/json %q", s, vals, got)
		}
	})
}

// ScanAny is true exactly for the values encoding/json decodes into an
// interface{}.
func FuzzScanAny(f *testing.F) {
	for _, s := range []string{`1`, `1e999`, `-1e-999`, `[1,"1e999",{"a":2e308}]`, `"x"`, `null`, `{"a":[true,false]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return // ScanAny sees values ScanObject passed
		}
		var v any
		if err := json.Unmarshal([]byte(s), &v); matrixevent.ScanAny(s) != (err == nil) {
			t.Fatalf("%q: ScanAny %v, encoding/json %v", s, matrixevent.ScanAny(s), err)
		}
	})
}

// checkScanEvent fails unless ScanEventForTest gives what Parse gives, or
// declines.
func checkScanEvent(t *testing.T, js string) bool {
	got, ok := matrixevent.ScanEventForTest(js)
	if !ok {
		return false
	}
	want, err := matrixevent.Parse([]byte(js))
	if err != nil {
		t.Fatalf("%s: ScanEventForTest ok, Parse: %v", js, err)
	}
	want.Depth, want.Unsigned = nil, nil // the scan does not read them
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\nScanEventForTest %+v\nParse     %+v", js, got, want)
	}
	return true
}

// Every event of the fixture is read without encoding/json, with Parse's
// Fields.
func TestScanEventRealEvents(t *testing.T) {
	for _, e := range loadEvents(t) {
		if !checkScanEvent(t, e.JSON) {
			t.Errorf("%s: left to encoding/json", e.EventID)
		}
	}
}

func FuzzScanEvent(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add(s)
	}
	for _, e := range loadEvents(f)[:200] {
		f.Add(e.JSON)
	}
	f.Fuzz(func(t *testing.T, js string) { checkScanEvent(t, js) })
}

// go test -bench CheckOnePass -benchmem ./matrixevent: validation's one
// pass over an event (its signatures deferred to the batch), on the
// fixture's events.
func BenchmarkCheckOnePass(b *testing.B) {
	events := loadEvents(b)
	keys := fixtureKeys(b)
	versions := map[string]matrixevent.RoomVersion{}
	for _, e := range events {
		versions[e.RoomVersion], _ = matrixevent.LookupRoomVersion(e.RoomVersion)
	}
	for i := 0; b.Loop(); i++ {
		e := events[i%len(events)]
		if !matrixevent.CheckDeferredForTest(versions[e.RoomVersion], []byte(e.JSON), keys) {
			b.Fatal(e.EventID)
		}
	}
}
