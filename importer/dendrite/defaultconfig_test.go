package dendrite_test

import (
	"context"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// An import into a Dendrite configured as its sample config ships (JetStream
// on disk), initialised by starting it once, completes: aliases, receipts
// and media arrive. Starting Dendrite leaves durable JetStream consumers on
// disk, among them the user API's consumer of the roomserver's output, which
// the import helper does not run; the stream kept the import's events for
// it, and the helper's final drain waited on them for 10 minutes in silence,
// then gave up before aliases, receipts and media.
func TestImportIntoDendritesDefaultConfig(t *testing.T) {
	const name = "defaultconfig.ferry.test"
	dir, key := seededArchive(t, name)
	to := testenv.NewDendrite(t, name)
	cfg, err := os.ReadFile(to.Config())
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^  jetstream:\n(    .*\n)*    in_memory: false\n`).Match(cfg) {
		t.Fatalf("the test Dendrite does not keep JetStream on disk:\n%s", cfg)
	}
	to.Start(t) // Dendrite initialises its databases and its JetStream store
	to.Stop()

	// A drain that cannot finish fails within seconds; the deadline only
	// keeps a regression from blocking the test binary for 10 minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := importInto(ctx, t, to, openArchive(t, dir, key), importer.Options{Migration: true})
	if err != nil {
		t.Fatalf("import into a Dendrite on its default config: %v", err)
	}
	for _, s := range []string{archive.SectionReceipts, archive.SectionMedia, archive.SectionEvents} {
		if res.InArchive[s] == 0 || res.InTarget[s] != res.InArchive[s] {
			t.Errorf("%s: %d in the target, %d in the archive", s, res.InTarget[s], res.InArchive[s])
		}
	}
	again := t.TempDir()
	want, got := aliases(t, openArchive(t, dir, key)), aliases(t, openArchive(t, again, exportDendrite(t, to.Config(), again)))
	if want == 0 || got != want {
		t.Errorf("aliases: %d in the target, %d in the archive", got, want)
	}
	assertSameContent(t, to.Config(), dir, key)
	to.Start(t) // and Dendrite starts on the result
}

// aliases counts the local aliases of the archive's rooms.
func aliases(t *testing.T, r *archive.Reader) int {
	t.Helper()
	n := 0
	if err := archive.ReadSection(context.Background(), r, archive.SectionRooms, func(room *archive.Room) error {
		n += len(room.Aliases)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
