package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// sectionBytes writes the sample server without messages and then
// records (section, record pairs) into a new plaintext archive, and
// returns each section's files, in order, concatenated, and how many
// files each has.
func sectionBytes(t *testing.T, records [][2]any) (map[string][]byte, map[string]int) {
	t.Helper()
	dir := t.TempDir()
	archivetest.WriteSampleWith(t, dir, keywrap.Key{}, 0, func(w *archive.Writer) {
		for _, r := range records {
			if err := w.Add(r[0].(string), r[1]); err != nil {
				t.Fatal(err)
			}
		}
	})
	data, files := map[string][]byte{}, map[string]int{}
	err := archivetest.Open(t, dir, archive.OpenOptions{}).Walk(context.Background(), func(f *archive.File) error {
		s := archive.SectionOf(f.Entry.Path)
		data[s] = append(data[s], f.Data...)
		files[s]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return data, files
}

// A section's chunks are the same bytes whichever buffer held them: a
// section written alone, or interleaved with another so that chunk
// buffers pass from one section to the other (the writer reuses the
// buffer of the chunk it wrote last), and with records bigger than the
// room a buffer keeps free (they grow it), gives the same files.
func TestChunkBuffersDoNotChangeChunks(t *testing.T) {
	var events, snapshots [][2]any
	for i := range 300 {
		body := strings.Repeat("x", (i*7919)%(40<<10)) // 0 to 40 KiB
		js := fmt.Sprintf(`{"type":"m.room.message","content":{"body":%q}}`, body)
		events = append(events, [2]any{archive.SectionEvents, &archive.Event{EventID: fmt.Sprintf("$e%d", i), RoomID: "!r:example.org",
			JSON: []byte(js), StateBefore: 1, StreamOrdering: int64(i)}})
		snapshots = append(snapshots, [2]any{archive.SectionStateSnapshots, &archive.StateSnapshot{ID: uint64(i + 1), RoomID: "!r:example.org",
			Set: []archive.StateEntry{{Type: "m.room.member", StateKey: fmt.Sprintf("@u%d:example.org", i), EventID: fmt.Sprintf("$e%d", i)}}}})
	}
	var interleaved [][2]any
	for i := range events {
		interleaved = append(interleaved, events[i], snapshots[i])
	}
	got, gotFiles := sectionBytes(t, interleaved)
	alone, aloneFiles := sectionBytes(t, events)
	if gotFiles[archive.SectionEvents] < 10 {
		t.Fatalf("only %d event files: the test needs many chunks", gotFiles[archive.SectionEvents])
	}
	if !bytes.Equal(got[archive.SectionEvents], alone[archive.SectionEvents]) || gotFiles[archive.SectionEvents] != aloneFiles[archive.SectionEvents] {
		t.Fatalf("events interleaved: %d bytes in %d files; alone: %d bytes in %d files", len(got[archive.SectionEvents]), gotFiles[archive.SectionEvents],
			len(alone[archive.SectionEvents]), aloneFiles[archive.SectionEvents])
	}
	alone, _ = sectionBytes(t, snapshots)
	if !bytes.Equal(got[archive.SectionStateSnapshots], alone[archive.SectionStateSnapshots]) {
		t.Fatal("the snapshots differ when written interleaved with events")
	}
}

// A section with a few records holds a few KiB until the part ends, not
// a buffer of the full chunk size: a room selection writes a handful of
// rooms, memberships and receipts, and each section's 1 MiB buffer grew
// the export's heap (and with it the pages the garbage collector lets it
// touch) by a megabyte.
func TestSmallSectionsTakeSmallBuffers(t *testing.T) {
	ctx := context.Background()
	w, err := archive.NewWriter(ctx, discardSink{}, archive.WriterOptions{Export: archive.ExportInfo{ServerName: "example.org", Type: "full"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	records := [][2]any{
		{archive.SectionUsers, &archive.User{UserID: "@a:example.org"}},
		{archive.SectionRooms, &archive.Room{RoomID: "!r:example.org", Version: "10"}},
		{archive.SectionMemberships, &archive.Membership{RoomID: "!r:example.org", UserID: "@a:example.org", Membership: "join", EventID: "$m"}},
		{archive.SectionReceipts, &archive.Receipt{RoomID: "!r:example.org", UserID: "@a:example.org", Type: "m.read", EventID: "$m"}},
		{archive.SectionStateSnapshots, &archive.StateSnapshot{ID: 1, RoomID: "!r:example.org"}},
		{archive.SectionEvents, &archive.Event{EventID: "$m", RoomID: "!r:example.org", JSON: []byte(`{}`), StateBefore: 1}},
		{archive.SectionRedactions, &archive.Redaction{EventID: "$m", RedactedBy: "$x", RoomID: "!r:example.org"}},
		{archive.SectionOmissions, &archive.Omission{Code: "source_missing", Item: archive.SectionEvents, ID: "$y"}},
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, r := range records {
		if err := w.Add(r[0].(string), r[1]); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 256<<10 {
		t.Errorf("%d sections of one record each hold %d KiB", len(records), grown>>10)
	}
	runtime.KeepAlive(w)
}
