package dendrite

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// Exporting a live Dendrite on SQLite does not stall it: while the
// export's read transactions are open, Dendrite keeps accepting messages,
// and the export sees the server as it was when it started.
func TestDendriteKeepsWorkingDuringExport(t *testing.T) {
	ctx := context.Background()
	d, truth, cfg := seeded(t, "live.ferry.test")
	src := openSource(t, cfg)
	streams, err := src.Streams(ctx, source.Filter{}, source.Options{Encrypted: true})
	if err != nil {
		t.Fatal(err)
	}
	// Read part of the server, so that every component transaction holds its snapshot.
	first := sourcetest.Collect(t, streamsOnly{src, streams[:6]}, source.Filter{}, source.Options{})
	if len(first[archive.SectionUsers]) != 3 {
		t.Fatalf("users %d", len(first[archive.SectionUsers]))
	}

	tok, _, err := d.Login("bob", seed.Password("bob"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := mautrix.NewClient(d.URL, id.NewUserID("bob", d.ServerName), tok)
	if err != nil {
		t.Fatal(err)
	}
	room := id.RoomID(truth.Rooms[0].RoomID)
	for i := 0; i < 20; i++ {
		if _, err := cli.SendText(ctx, room, fmt.Sprintf("sent during the export %d", i)); err != nil {
			t.Fatalf("Dendrite stalled during the export: message %d: %v", i, err)
		}
	}
	rest := sourcetest.Collect(t, streamsOnly{src, streams[6:]}, source.Filter{}, source.Options{})
	if n := len(rest[archive.SectionEvents]); n != truth.EventsTotal {
		t.Errorf("export saw %d events, want the %d of its start (not the 20 sent during it)", n, truth.EventsTotal)
	}
}

// streamsOnly is a Source whose Streams are a fixed list.
type streamsOnly struct {
	source.Source
	streams []source.Stream
}

func (s streamsOnly) Streams(context.Context, source.Filter, source.Options) ([]source.Stream, error) {
	return s.streams, nil
}
