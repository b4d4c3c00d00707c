package matrixevent_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/matrixevent"
)

// A Batch says what Check says, for every real event and every variant
// (good, tampered, unsigned, of unknown keys), however they are mixed.
func TestBatchAgreesWithCheck(t *testing.T) {
	keys := fixtureKeys(t)
	type item struct {
		v    matrixevent.RoomVersion
		data []byte
	}
	var items []item
	for _, e := range loadEvents(t) {
		v, _ := matrixevent.LookupRoomVersion(e.RoomVersion)
		for _, js := range append(variants(e.JSON), otherSignature(e.JSON)) {
			items = append(items, item{v, []byte(js)})
		}
	}
	var b matrixevent.Batch
	got := make([]matrixevent.Checked, len(items))
	for i, it := range items {
		b.Add(it.v, it.data, keys, true, &got[i])
		if i%300 == 299 || i == len(items)-1 {
			b.Verify()
		}
	}
	invalid := 0
	for i, it := range items {
		want := matrixevent.Check(it.v, it.data, keys, true)
		if !sameChecked(got[i], want) || (want.SigErr != nil && got[i].SigErr.Error() != want.SigErr.Error()) {
			t.Fatalf("item %d:\nBatch: %+v\nCheck: %+v\n%s", i, got[i], want, it.data)
		}
		if want.Signatures == matrixevent.SignatureInvalid {
			invalid++
		}
	}
	if invalid == 0 {
		t.Fatal("no variant has an invalid signature: the test checks nothing")
	}
}

// One bad signature among many good ones fails the batch equation; each
// is then verified alone, and only the bad event is invalid, named by its
// signature.
func TestBatchFindsOneBadSignature(t *testing.T) {
	keys := fixtureKeys(t)
	events := loadEvents(t)
	const bad = 137
	var b matrixevent.Batch
	got := make([]matrixevent.Checked, len(events))
	for i, e := range events {
		v, _ := matrixevent.LookupRoomVersion(e.RoomVersion)
		js := e.JSON
		if i == bad {
			js = otherSignature(js)
		}
		b.Add(v, []byte(js), keys, true, &got[i])
	}
	b.Verify()
	for i, c := range got {
		switch {
		case i == bad && (c.Signatures != matrixevent.SignatureInvalid || c.SigErr == nil ||
			!strings.Contains(c.SigErr.Error(), "fixture.test key ed25519:a_NMll")):
			t.Errorf("the bad event: %v (%v)", c.Signatures, c.SigErr)
		case i != bad && c.Signatures != matrixevent.SignatureValid:
			t.Errorf("event %d (%s): %v (%v)", i, events[i].EventID, c.Signatures, c.SigErr)
		}
	}
}

// otherSignature puts another well-formed signature (of other bytes, by
// the same key) in place of the event's.
func otherSignature(js string) string {
	const marker = `"ed25519:a_NMll":"`
	i := strings.Index(js, marker)
	if i < 0 {
		return js
	}
	i += len(marker)
	end := i + strings.IndexByte(js[i:], '"')
	raw, err := base64.RawStdEncoding.DecodeString(js[i:end])
	if err != nil || len(raw) != ed25519.SignatureSize {
		return js
	}
	raw[40] ^= 1 // s changes: still canonical (its top bits are untouched), no longer the signature
	return js[:i] + base64.RawStdEncoding.EncodeToString(raw) + js[end:]
}
