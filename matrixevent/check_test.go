package matrixevent_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"maunium.net/go/mautrix/crypto/canonicaljson"

	"github.com/ferry-matrix/ferry/matrixevent"
)

// general is what EventID, CheckSignatures and CheckContentHash say of an
// event, one by one: what Check must say too.
func general(v matrixevent.RoomVersion, data []byte, keys matrixevent.KeyLookup) matrixevent.Checked {
	var c matrixevent.Checked
	c.ID, c.IDErr = matrixevent.EventID(v, data)
	c.Signatures, c.SigErr = matrixevent.CheckSignatures(v, data, keys)
	c.HashErr = matrixevent.CheckContentHash(data)
	return c
}

func sameChecked(a, b matrixevent.Checked) bool {
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		if errors.Is(err, matrixevent.ErrHashMismatch) {
			return "hash: " + err.Error()
		}
		return "error"
	}
	return a.ID == b.ID && (a.IDErr == nil) == (b.IDErr == nil) && a.Signatures == b.Signatures &&
		(a.SigErr == nil) == (b.SigErr == nil) && errText(a.HashErr) == errText(b.HashErr)
}

// variants of a real event that take Check's one-pass path or its
// fallback: reordered keys, whitespace, escapes Synapse writes
// (ensure_ascii), tampering.
func variants(js string) []string {
	out := []string{js,
		strings.Replace(js, `{"`, "{ \n\"", 1),
		strings.ReplaceAll(js, `,"`, `, "`),
		strings.Replace(js, `"content":`, `"zz":1,"content":`, 1),
		strings.Replace(js, `"type":`, `"Type":"x","type":`, 1),
		strings.Replace(js, `"sender":`, `"sender":"@a:b","sender":`, 1),
		strings.Replace(js, `fixture.test`, `fixture\u002etest`, 1),
		strings.Replace(js, `"membership":"join"`, `"membership":"j\u006fin"`, 1),
		strings.Replace(js, `"membership":"join"`, `"membership":"jo\/in","x":"\ud83d\ude00\u00e9\u0001\n<>"`, 1),
		strings.Replace(js, `"membership":"join"`, `"membership":"join","x":"\ud83d"`, 1),
		strings.Replace(js, `"content":{`, `"content":{"third_party_invite":{"signed":{"b":1,"a":[1.5e3,-0,true,null]},"x":2},`, 1),
		strings.Replace(js, `"content":{`, `"content":{"third_party_invite":"s",`, 1),
		strings.Replace(js, `"content":{`, `"content":null,"c":{`, 1),
		strings.Replace(js, `"hashes":{"sha256":"`, `"hashes":{"sha256":"A`, 1),
		strings.Replace(js, `"hashes":{`, `"hashes":{"SHA256":"x",`, 1),
		strings.Replace(js, `"signatures":{`, `"signatures":{"other.example":{"ed25519:x":"AAAA"},`, 1),
		strings.Replace(js, `"origin_server_ts":`, `"origin_server_ts":0,"depth2":`, 1),
		js + " ",
		js + "x",
		js[:len(js)-1],
	}
	// reversed top-level order
	out = append(out, "{"+reverseMembers(js[1:len(js)-1])+"}")
	return out
}

func reverseMembers(body string) string {
	// split on top-level commas
	var parts []string
	depth, inStr, start := 0, false, 0
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case c == ',' && depth == 0:
			parts = append(parts, body[start:i])
			start = i + 1
		}
	}
	parts = append(parts, body[start:])
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, ",")
}

// Check says what the three general functions say, for every real event
// and every variant, in every room version.
func TestCheckAgreesWithGeneralFunctions(t *testing.T) {
	keys := fixtureKeys(t)
	events := loadEvents(t)
	valid := 0
	for i, e := range events {
		for j, js := range variants(e.JSON) {
			for _, rv := range matrixevent.KnownRoomVersions() {
				if rv != e.RoomVersion && (i%50 != 0 || j > 0) {
					continue
				}
				v, _ := matrixevent.LookupRoomVersion(rv)
				want := general(v, []byte(js), keys)
				got := matrixevent.Check(v, []byte(js), keys, true)
				if !sameChecked(got, want) {
					t.Fatalf("%s variant %d, room version %s:\nCheck:   %+v\ngeneral: %+v\n%s", e.EventID, j, rv, got, want, js)
				}
				if j == 0 && rv == e.RoomVersion && got.Signatures == matrixevent.SignatureValid {
					valid++
				}
			}
		}
	}
	if valid != len(events) {
		t.Errorf("%d of %d real events verify", valid, len(events))
	}
}

func FuzzCheck(f *testing.F) {
	priv := fixtureKey(f)
	pub := priv.Public().(ed25519.PublicKey)
	keys := func(server, keyID string) (ed25519.PublicKey, bool) { return pub, server == "fixture.test" }
	for i, e := range loadEvents(f) {
		if i%40 == 0 {
			for _, v := range variants(e.JSON) {
				f.Add(v)
			}
		}
	}
	v, _ := matrixevent.LookupRoomVersion("10")
	f.Fuzz(func(t *testing.T, js string) {
		want := general(v, []byte(js), keys)
		got := matrixevent.Check(v, []byte(js), keys, true)
		if !sameChecked(got, want) {
			t.Fatalf("Check: %+v\ngeneral: %+v", got, want)
		}
		if got.Fields != nil {
			fieldsLikeParse(t, js, got.Fields)
		}
	})
}

// The one-pass encoder gives canonicaljson's bytes.
func TestCanonicalAgrees(t *testing.T) {
	for _, js := range []string{`{"b":1,"a":{"d":[1, 2.5e3 ,"\u00e9\ud83d\ude00\/\u0001\u001f\u0008"],"c":null}}`, `[]`, `{}`, `"x"`, `{"a" : "<&>\u2028"}`} {
		want, err := canonicaljson.CanonicalJSON([]byte(js))
		got, ok := matrixevent.CanonicalForTest([]byte(js))
		if err != nil || !ok || string(got) != string(want) {
			t.Errorf("%s: one pass %s (%v), canonicaljson %s (%v)", js, got, ok, want, err)
		}
	}
}

// The Fields Check reads in its pass are Parse's, wherever it gives them
// (Content: the same object), and it gives them for most real events.
func TestCheckFieldsAgreeWithParse(t *testing.T) {
	v, _ := matrixevent.LookupRoomVersion("10")
	keys := func(string, string) (ed25519.PublicKey, bool) { return nil, false }
	given := 0
	events := loadEvents(t)
	for _, e := range events {
		more := []string{
			strings.Replace(e.JSON, `"origin_server_ts":`, `"origin_server_ts":1.5,"x":`, 1),
			strings.Replace(e.JSON, `"origin_server_ts":`, `"origin_server_ts":1e3,"x":`, 1),
			strings.Replace(e.JSON, `"origin_server_ts":`, `"origin_server_ts":null,"x":`, 1),
			strings.Replace(e.JSON, `"type":`, `"type":5,"x":`, 1),
			strings.Replace(e.JSON, `"sender":`, `"sender":null,"x":`, 1),
			strings.Replace(e.JSON, `"content":{`, `"state_key":null,"content":{`, 1),
			strings.Replace(e.JSON, `"content":{`, `"redacts":7,"content":{`, 1),
			strings.Replace(e.JSON, `"content":{`, `"prev_events":[["$x",{}]],"content":{`, 1),
			strings.Replace(e.JSON, `"content":{`, `"auth_events":{},"content":{`, 1),
			strings.Replace(e.JSON, `"type":"`, `"type":"m.room.redaction","x":"`, 1),
		}
		for _, js := range append(variants(e.JSON), more...) {
			c := matrixevent.Check(v, []byte(js), keys, false)
			if c.Fields == nil {
				continue
			}
			given++
			fieldsLikeParse(t, js, c.Fields)
		}
	}
	if given < len(events)/2 {
		t.Errorf("Check gave the fields of %d variants only", given)
	}
}

func fieldsLikeParse(t testing.TB, js string, f *matrixevent.Fields) {
	t.Helper()
	want, err := matrixevent.Parse([]byte(js))
	if err != nil {
		t.Fatalf("Check gives fields, Parse fails (%v):\n%s", err, js)
	}
	got := *f
	var a, b any
	noContent := got.Content == nil && want.Content == nil // an event without one (testdata/fuzz/FuzzCheck)
	if !noContent && (json.Unmarshal(got.Content, &a) != nil || json.Unmarshal(want.Content, &b) != nil || !reflect.DeepEqual(a, b)) {
		t.Fatalf("content %s, Parse's %s", got.Content, want.Content)
	}
	got.Content, want.Content = nil, nil
	// Depth and Unsigned are raw: the same values, canonical or not.
	for _, raw := range [][2]json.RawMessage{{got.Depth, want.Depth}, {got.Unsigned, want.Unsigned}} {
		var a, b any
		if (raw[0] == nil) != (raw[1] == nil) || raw[0] != nil && (json.Unmarshal(raw[0], &a) != nil || json.Unmarshal(raw[1], &b) != nil || !reflect.DeepEqual(a, b)) {
			t.Fatalf("depth or unsigned %s, Parse's %s", raw[0], raw[1])
		}
	}
	got.Depth, want.Depth, got.Unsigned, want.Unsigned = nil, nil, nil, nil
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("Check's fields %+v\nParse's      %+v\n%s", got, *want, js)
	}
}
