package matrixevent_test

import (
	"bufio"
	"compress/gzip"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/ferry-matrix/ferry/matrixevent"
)

type fixtureEvent struct {
	EventID     string `json:"event_id"`
	RoomVersion string `json:"room_version"`
	JSON        string `json:"json"`
}

func loadEvents(t testing.TB) []fixtureEvent {
	t.Helper()
	f, err := os.Open("testdata/synapse-1.67-events.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []fixtureEvent
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e fixtureEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func fixtureKey(t testing.TB) ed25519.PrivateKey {
	data, err := os.ReadFile("testdata/fixture.test.signing.key")
	if err != nil {
		t.Fatal(err)
	}
	var alg, ver, seed string
	if _, err := fmtSscan(string(data), &alg, &ver, &seed); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawStdEncoding.DecodeString(seed)
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.NewKeyFromSeed(raw)
}

// fixtureKeys finds the fixture server's key, and no other.
func fixtureKeys(t testing.TB) matrixevent.KeyLookup {
	pub := fixtureKey(t).Public().(ed25519.PublicKey)
	return func(server, keyID string) (ed25519.PublicKey, bool) {
		return pub, server == "fixture.test" && keyID == "ed25519:a_NMll"
	}
}

// Every event a real Synapse stored: its ID recomputes from the reference
// hash, its content hash verifies, and its signature verifies with the
// server's key, both as stored and after redaction.
func TestRealSynapseEvents(t *testing.T) {
	keys := fixtureKeys(t)
	events := loadEvents(t)
	if len(events) != 1630 {
		t.Fatalf("fixture has %d events, INVENTORY.md says 1630", len(events))
	}
	for _, e := range events {
		v, err := matrixevent.LookupRoomVersion(e.RoomVersion)
		if err != nil {
			t.Fatal(err)
		}
		id, err := matrixevent.EventID(v, []byte(e.JSON))
		if err != nil || id != e.EventID {
			t.Fatalf("event ID of %s computed as %s (%v)", e.EventID, id, err)
		}
		if err := matrixevent.CheckContentHash([]byte(e.JSON)); err != nil {
			t.Fatalf("%s: %v", e.EventID, err)
		}
		if st, err := matrixevent.CheckSignatures(v, []byte(e.JSON), keys); st != matrixevent.SignatureValid {
			t.Fatalf("%s: signature %v (%v)", e.EventID, st, err)
		}
		red, err := matrixevent.Redact(v, []byte(e.JSON))
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := matrixevent.CheckSignatures(v, red, keys); st != matrixevent.SignatureValid {
			t.Fatalf("%s: redacted form does not verify: %v", e.EventID, st)
		}
		if rid, _ := matrixevent.EventID(v, red); rid != e.EventID {
			t.Fatalf("%s: redacted form has another ID %s", e.EventID, rid)
		}
	}
}

func TestTamperedEventIsCaught(t *testing.T) {
	priv := fixtureKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	keys := func(server, keyID string) (ed25519.PublicKey, bool) { return pub, server == "fixture.test" }
	e := loadEvents(t)[1] // a member event
	v, _ := matrixevent.LookupRoomVersion(e.RoomVersion)
	var m map[string]any
	json.Unmarshal([]byte(e.JSON), &m)
	m["content"].(map[string]any)["displayname"] = "Mallory"
	changed, _ := json.Marshal(m)
	if err := matrixevent.CheckContentHash(changed); !errors.Is(err, matrixevent.ErrHashMismatch) {
		t.Errorf("changed content: hash check = %v", err)
	}
	// displayname is redacted away, so the signature still holds: that is why
	// content hashes are checked on unredacted events.
	if st, _ := matrixevent.CheckSignatures(v, changed, keys); st != matrixevent.SignatureValid {
		t.Errorf("signature over redacted form = %v", st)
	}
	m["content"].(map[string]any)["membership"] = "leave"
	changed, _ = json.Marshal(m)
	if st, _ := matrixevent.CheckSignatures(v, changed, keys); st != matrixevent.SignatureInvalid {
		t.Errorf("changed membership: signature = %v, want invalid", st)
	}
	if st, _ := matrixevent.CheckSignatures(v, []byte(e.JSON), func(string, string) (ed25519.PublicKey, bool) { return nil, false }); st != matrixevent.SignatureUnverifiable {
		t.Errorf("no keys: %v", st)
	}
}

func TestWithoutUnsigned(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,"unsigned":{"x":{"y":[1,2]}},"b":"unsigned"}`: `{"a":1,"b":"unsigned"}`,
		`{"unsigned":{"age":5}, "a":1}`:                       `{ "a":1}`,
		`{"a":1,"unsigned":{}}`:                               `{"a":1}`,
		`{"a":"unsigned"}`:                                    `{"a":"unsigned"}`,
		`{"a":1}`:                                             `{"a":1}`,
	} {
		got, err := matrixevent.WithoutUnsigned([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("WithoutUnsigned(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := matrixevent.WithoutUnsigned([]byte(`["unsigned"]`)); err == nil {
		t.Error("an array was accepted as an event")
	}
}
