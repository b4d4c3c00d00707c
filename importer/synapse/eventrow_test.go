package synapse

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/matrixevent"
)

// checkScanEventRow fails unless scanEventRow gives what decodeEventRow
// (encoding/json) gives, or declines; it reports whether it answered.
func checkScanEventRow(t *testing.T, js string) bool {
	t.Helper()
	f, x, ok := scanEventRow(js)
	if !ok {
		return false
	}
	wantF, wantX, err := decodeEventRow([]byte(js))
	if err != nil {
		t.Fatalf("%s: scanEventRow ok, encoding/json: %v", js, err)
	}
	if !reflect.DeepEqual(f, wantF) || !reflect.DeepEqual(x, wantX) {
		t.Fatalf("%s:\nscanEventRow   %+v %+v\nencoding/json  %+v %+v", js, f, x, wantF, wantX)
	}
	return true
}

// realEvents are the events a real Synapse stored (matrixevent's
// fixture, testdata/synapse-1.67) and those of the sample archive.
func realEvents(t testing.TB) []string {
	file, err := os.Open("../../matrixevent/testdata/synapse-1.67-events.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	zr, err := gzip.NewReader(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			JSON string `json:"json"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e.JSON)
	}
	err = archive.ReadSection(context.Background(), archivetest.OpenSample(t), archive.SectionEvents, func(e *archive.Event) error {
		out = append(out, string(e.JSON))
		return nil
	})
	if err != nil || len(out) < 1700 {
		t.Fatalf("%d events: %v", len(out), err)
	}
	return out
}

// Every real event is read without encoding/json, with its result.
func TestScanEventRowRealEvents(t *testing.T) {
	for _, js := range realEvents(t) {
		if !checkScanEventRow(t, js) {
			t.Errorf("left to encoding/json: %s", js)
		}
	}
}

// Each of these is read as encoding/json reads it (a row), or left to
// encoding/json (nil): what the scan is sure of and what it is not.
func TestScanEventRowEdges(t *testing.T) {
	const ev = `{"type":"m.room.member","sender":"@a:b","state_key":"@a:b",`
	for js, row := range map[string]*eventRow{
		ev + `"content":{"membership":"join","displayname":"A","avatar_url":"mxc://b/c"},"depth":7,"unsigned":{"replaces_state":"$p"}}`: {
			depth: 7, membership: "join", displayName: "A", avatarURL: "mxc://b/c"},
		ev + `"content":{"membership":5,"displayname":null,"avatar_url":["x"]},"unsigned":{"replaces_state":null}}`: {lacksReplaces: true},
		ev + `"content":{"url":"mxc://b/c","m.relates_to":{"rel_type":"m.annotation","event_id":"$e","key":"👍","n":1.5}}}`: {
			lacksReplaces: true, hasURL: true, relType: "m.annotation", relParent: "$e", relKey: "👍"},
		ev + `"content":{"url":{"a":1},"m.relates_to":"x"}}`:                    {lacksReplaces: true},
		ev + `"content":null,"unsigned":null,"depth":null}`:                     {lacksReplaces: true},
		ev + `"content":{"displayname":"caf\u00e9 \ud83d\udc4d\n"}}`:            {lacksReplaces: true, displayName: "café 👍\n"},
		ev + `"content":{"displayname":"\ud83d"}}`:                              nil, // a lone surrogate: U+FFFD
		ev + `"content":{"displayname":"\xff"}}`:                                nil, // invalid UTF-8: U+FFFD
		ev + `"content":{"dis\u0070layname":"A"}}`:                              nil, // a key with an escape
		ev + `"content":{"Membership":"join"}}`:                                 nil, // another case
		ev + `"content":{"membership":"join","membership":"leave"}}`:            nil, // twice
		ev + `"content":{"url":1e999}}`:                                         nil, // encoding/json refuses
		ev + `"content":{"m.relates_to":{"rel_type":"m.thread","event_id":7}}}`: {lacksReplaces: true, relType: "m.thread"},
		ev + `"content":{"body":"x","redacts":7}}`:                              {lacksReplaces: true}, // no target, as in matrixevent.Parse
		ev + `"content":[]}`:                                                    nil,
		ev + `"depth":1.0}`:                                                     nil,
		ev + `"unsigned":{"replaces_state":1}}`:                                 nil,
		ev + `"prev_events":[["$a",{}]]}`:                                       nil, // room version 1's shape
		ev + `"content":{}} x`:                                                  nil, // invalid JSON
	} {
		ok := checkScanEventRow(t, js)
		if ok != (row != nil) {
			t.Errorf("%s: scanned %v, want %v", js, ok, row != nil)
			continue
		}
		if _, x, _ := scanEventRow(js); ok && !reflect.DeepEqual(x, row) {
			t.Errorf("%s: %+v, want %+v", js, x, row)
		}
	}
}

// scanEventRow, where it answers, gives what encoding/json gives, and
// eventRowOf what parseEventRow gives.
func FuzzScanEventRow(f *testing.F) {
	for _, js := range realEvents(f) {
		f.Add(js)
	}
	f.Fuzz(func(t *testing.T, js string) {
		checkScanEventRow(t, js)
		checkEventRowOf(t, js)
	})
}

// checkEventRowOf fails unless eventRowOf, given the fields the
// validation's one pass read (what archive.EventTap hands), gives what
// parseEventRow gives.
func checkEventRowOf(t *testing.T, js string) {
	t.Helper()
	v, _ := matrixevent.LookupRoomVersion("10")
	noKeys := func(string, string) (ed25519.PublicKey, bool) { return nil, false }
	f := matrixevent.Check(v, []byte(js), noKeys, true).Fields
	if f == nil {
		return // the restore parses the event itself
	}
	wantF, wantX, wantErr := parseEventRow(js)
	gotF, gotX, err := eventRowOf(js, f)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%s: eventRowOf: %v, parseEventRow: %v", js, err, wantErr)
	}
	if err != nil {
		return
	}
	a := *gotF
	a.Content, a.Depth, a.Unsigned = nil, nil, nil // parseEventRow leaves them nil
	if !reflect.DeepEqual(&a, wantF) || !reflect.DeepEqual(gotX, wantX) {
		t.Fatalf("%s:\neventRowOf    %+v %+v\nparseEventRow %+v %+v", js, &a, gotX, wantF, wantX)
	}
}

// An event the validation parsed gives the rows it gives when the
// restore parses it: every real event, and the edges of the scan.
func TestEventRowOfAgreesWithParseEventRow(t *testing.T) {
	events := realEvents(t)
	const ev = `{"type":"m.room.member","sender":"@a:b","state_key":"@a:b",`
	events = append(events,
		ev+`"content":{"membership":"join","displayname":"A","avatar_url":"mxc://b/c"},"depth":7,"unsigned":{"replaces_state":"$p"}}`,
		ev+`"content":{"membership":5,"displayname":null,"avatar_url":["x"]},"unsigned":{"replaces_state":null}}`,
		ev+`"content":{"url":"mxc://b/c","m.relates_to":{"rel_type":"m.annotation","event_id":"$e","key":"👍","n":1.5}}}`,
		ev+`"content":{"displayname":"caf\u00e9 \ud83d\udc4d\n"}}`,
		ev+`"content":{"membership":"join","membership":"leave"}}`,
		ev+`"content":{"url":1e999}}`,
		ev+`"depth":1.0}`,
		ev+`"depth":"7"}`,
		ev+`"unsigned":{"replaces_state":1}}`,
		ev+`"unsigned":{"replaces_state":"$p","replaces_state":null}}`,
		ev+`"depth":5,"depth":null}`,
		ev+`"depth":"x","depth":5}`,
		ev+`"content":{"membership":"join"},"content":{"displayname":"d"}}`,
		ev+`"Depth":3,"content":{}}`,
		`{"type":"m.room.redaction","sender":"@a:b","content":{"redacts":"$r","reason":"x"},"depth":3}`,
	)
	for _, js := range events {
		checkEventRowOf(t, js)
	}
}

// event_json.internal_metadata is the map of what is set, as json.Marshal
// encodes it.
func TestEventMeta(t *testing.T) {
	for _, outlier := range []bool{false, true} {
		for _, softFailed := range []bool{false, true} {
			meta := map[string]any{}
			if outlier {
				meta["outlier"] = true
			}
			if softFailed {
				meta["soft_failed"] = true
			}
			want, _ := json.Marshal(meta)
			if got := eventMeta[b2i(outlier)][b2i(softFailed)]; got != string(want) {
				t.Errorf("outlier %v, soft_failed %v: %s, want %s", outlier, softFailed, got, want)
			}
		}
	}
}

// go test -bench EventRow -benchmem ./importer/synapse: the real events,
// with the scan (as the restore reads them) and with encoding/json.
func BenchmarkEventRow(b *testing.B) {
	events := realEvents(b)
	for _, c := range []struct {
		name  string
		parse func(string) (*matrixevent.Fields, *eventRow, error)
	}{{"scan", parseEventRow}, {"encoding-json", func(js string) (*matrixevent.Fields, *eventRow, error) { return decodeEventRow([]byte(js)) }}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, _, err := c.parse(events[i%len(events)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
