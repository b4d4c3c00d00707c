package dendrite_test

import (
	"context"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
	"github.com/ferry-matrix/ferry/internal/testrig/fixturecheck"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// An appservice (a bridge) registered with the target is not sent the
// imported history: it saw those events when they happened on the source,
// and a bridge would post them to its remote network a second time. Nor
// does a stopped appservice hold the import up. After the import, Dendrite
// sends it new events as usual.
func TestImportSendsNoHistoryToAppservices(t *testing.T) {
	const name = "appservice.ferry.test"
	dir, key := seededArchive(t, name)

	rec := fixturecheck.NewRecorder(t)
	to := testenv.NewDendrite(t, name)
	to.AddAppservice(t, rec.Registration)
	to.Start(t) // creates the appservice's JetStream consumer, on disk, and its sender account
	to.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The appservice's sender account makes the target non-empty.
	if _, err := importInto(ctx, t, to, openArchive(t, dir, key), importer.Options{Migration: true, AllowNonEmpty: true}); err != nil {
		t.Fatal(err)
	}
	if during := len(rec.Received()); during > 0 {
		t.Errorf("the appservice was sent %d imported events during the import", during)
	}

	to.Start(t)
	c := &clientview.Client{URL: to.URL, ServerName: name}
	tok, err := c.Login(ctx, "alice", seed.Password("alice"))
	if err != nil {
		t.Fatal(err)
	}
	rooms, err := c.SyncTimelineIDs(ctx, tok)
	if err != nil || len(rooms) == 0 {
		t.Fatalf("alice's rooms after the import: %v %v", rooms, err)
	}
	var room string
	for r := range rooms {
		room = r
		break
	}
	id, err := c.Send(ctx, tok, room, "after-import", "sent after the import")
	if err != nil {
		t.Fatal(err)
	}
	rec.ExpectOnly(t, id)
}
