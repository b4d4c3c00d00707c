package archive_test

import (
	"context"
	"math"
	"reflect"
	"testing"
	"unsafe"

	"github.com/fxamacker/cbor/v2"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
)

// Every event a writer writes takes the fast path, and decodes as the
// archive's CBOR decoder decodes it.
func TestDecodeEventFastTakesWrittenEvents(t *testing.T) {
	var raws [][]byte
	r := archivetest.OpenSample(t)
	err := r.Walk(context.Background(), func(f *archive.File) error {
		if f.Data == nil || archive.SectionOf(f.Entry.Path) != archive.SectionEvents {
			return nil
		}
		return archive.RawRecords(r, f, func(m cbor.RawMessage) error {
			raws = append(raws, append([]byte(nil), m...))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edgeEvents() {
		raw, err := archive.EncodeStrict(e)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	if len(raws) < 100 {
		t.Fatalf("only %d events to decode", len(raws))
	}
	for _, raw := range raws {
		var fast, aliased, want archive.Event
		n, ok := archive.DecodeEventFast(raw, &fast, false)
		if !ok || n != len(raw) {
			t.Fatalf("the fast path declined a written event (%v, %d of %d bytes): %x", ok, n, len(raw), raw)
		}
		if err := archive.DecodeStrict(raw, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Errorf("fast %+v, want %+v", fast, want)
		}
		// Aliased, the same record, its JSON in raw and capped there.
		if n, ok := archive.DecodeEventFast(raw, &aliased, true); !ok || n != len(raw) || !reflect.DeepEqual(aliased, want) {
			t.Fatalf("aliased: %v, %d of %d bytes, %+v, want %+v", ok, n, len(raw), aliased, want)
		}
		for _, b := range [][]byte{aliased.JSON, aliased.OriginalJSON} {
			if len(b) > 0 && (cap(b) != len(b) || !inside(b, raw)) {
				t.Errorf("aliased JSON %q is no capped slice of the record", b)
			}
		}
	}
}

// inside says whether b's bytes are some of data's.
func inside(b, data []byte) bool {
	return len(b) > 0 && len(data) > 0 &&
		uintptr(unsafe.Pointer(&b[0])) >= uintptr(unsafe.Pointer(&data[0])) &&
		uintptr(unsafe.Pointer(&b[len(b)-1])) <= uintptr(unsafe.Pointer(&data[len(data)-1]))
}

// edgeEvents are events with every field set, at the limits of its type.
func edgeEvents() []*archive.Event {
	return []*archive.Event{
		{EventID: "$a", RoomID: "!r:x", JSON: []byte(`{}`), StateBefore: math.MaxUint64, Outlier: true, SoftFailed: true,
			Rejected: "auth_error", Redacted: true, OriginalJSON: []byte(`{"a":1}`), StreamOrdering: math.MinInt64},
		{EventID: "$é", RoomID: "!r:x", StreamOrdering: math.MaxInt64, StateBefore: 1 << 32},
		{EventID: "$b", JSON: []byte{}, StreamOrdering: -1, StateBefore: 255},
		{EventID: "$c", StreamOrdering: -24, StateBefore: 256},
		{EventID: "$d", StreamOrdering: -25, StateBefore: 65536},
	}
}

// What the fast path takes, the archive's decoder decodes the same, from
// the same bytes; what it declines goes to that decoder anyway.
func FuzzDecodeEventFast(f *testing.F) {
	for _, e := range edgeEvents() {
		raw, err := archive.EncodeStrict(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		f.Add(append(raw, raw...))
	}
	for _, s := range []string{
		"\xa1\x68event_id\xf6",                                        // null
		"\xa1\x68EVENT_ID\x62$a",                                      // another spelling
		"\xa2\x68event_id\x62$a\x68event_id\x62$b",                    // a key twice
		"\xa1\x6cstate_before\x18\x05",                                // not the shortest form
		"\xa1\x6cstate_before\xc1\x05",                                // a tag
		"\xbf\x68event_id\x62$a\xff",                                  // indefinite map
		"\xa1\x68event_id\x62\xff\xfe",                                // invalid UTF-8
		"\xa1\x6fstream_ordering\x3b\x80\x00\x00\x00\x00\x00\x00\x00", // below MinInt64
		"\xa1\x64json\x62{}",                                          // text for bytes
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast archive.Event
		n, ok := archive.DecodeEventFast(data, &fast, false)
		if !ok {
			if n != 0 || !reflect.DeepEqual(fast, archive.Event{}) {
				t.Fatalf("declined, yet took %d bytes or set %+v", n, fast)
			}
			return
		}
		var want archive.Event
		if err := archive.DecodeStrict(data[:n], &want); err != nil {
			t.Fatalf("the fast path took %x, the archive's decoder refuses it: %v", data[:n], err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("%x: fast %+v, the archive's decoder %+v", data[:n], fast, want)
		}
	})
}

// go test -bench DecodeEvent -benchmem ./archive: an event of the sample
// archive's size, by the fast path and by the archive's decoder.
func BenchmarkDecodeEvent(b *testing.B) {
	raw, err := archive.EncodeStrict(&archive.Event{EventID: "$8b2Iy3fJ3eN3UwpVrM-Pw1OV3BIFiJ8jRvu2bO4RdAo", RoomID: "!OGEhHVWSdvArJzumhm:fixture.test",
		JSON: make([]byte, 900), StateBefore: 4711, StreamOrdering: 123456})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			var e archive.Event
			if _, ok := archive.DecodeEventFast(raw, &e, false); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("reflect", func(b *testing.B) {
		for b.Loop() {
			var e archive.Event
			if err := archive.DecodeStrict(raw, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
