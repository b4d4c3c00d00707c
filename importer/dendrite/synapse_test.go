package dendrite_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	idendrite "github.com/ferry-matrix/ferry/importer/dendrite"
	"github.com/ferry-matrix/ferry/internal/testenv"
	"github.com/ferry-matrix/ferry/source/synapse"
)

const testdata = "../../testdata/"

// synapseFixture restores a Synapse fixture into a fresh database and
// unpacks its media store.
func synapseFixture(t *testing.T, name string) synapse.Config {
	t.Helper()
	pg := testenv.StartPostgres(t)
	db := strings.NewReplacer("-", "_", ".", "_").Replace(name) + "_" + strings.ToLower(strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if len(db) > 60 {
		db = db[:60]
	}
	url := pg.CreateDatabase(t, db)
	pg.Restore(t, db, testdata+name+"/synapse.sql.gz")
	media := t.TempDir()
	if err := testenv.Untar(testdata+"synapse-1.67/media_store.tar.gz", media); err != nil {
		t.Fatal(err)
	}
	return synapse.Config{Database: url, MediaStore: media, SigningKey: testdata + "synapse-1.67/fixture.test.signing.key",
		HomeserverConfig: testdata + "synapse-1.67/homeserver.yaml"}
}

// The real Synapse fixture (schema 72) migrated into a fresh Dendrite: the
// import completes and Dendrite holds, read back, every user, room, event,
// media file, account data item, receipt and key backup of the archive.
// (The client-server API acceptance check of the migration is issue 6.)
func TestSynapseFixtureIntoDendrite(t *testing.T) {
	ctx := context.Background()
	src, err := synapse.Open(ctx, synapseFixture(t, "synapse-1.67"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := exportSource(t, src, dir)
	src.Close()
	to := testenv.NewDendrite(t, "fixture.test")
	to.Start(t)
	to.Stop()
	start := time.Now()
	res, err := idendrite.Import(ctx, openArchive(t, dir, key), idendrite.Options{Config: to.Config(), Migration: true,
		Log: func(f string, a ...any) { t.Logf("%6.1fs "+f, append([]any{time.Since(start).Seconds()}, a...)...) }})
	if res != nil && res.Report != nil {
		t.Logf("report:\n%s", res.Report)
		t.Logf("archive %v\ntarget %v", res.InArchive, res.InTarget)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{archive.SectionUsers, archive.SectionRooms, archive.SectionEvents, archive.SectionMedia,
		archive.SectionAccountData, archive.SectionReceipts, archive.SectionBackupVersions, archive.SectionBackupSessions, archive.SectionDevices} {
		if res.InTarget[s] != res.InArchive[s] || res.InArchive[s] == 0 {
			t.Errorf("%s: %d in the target, %d in the archive", s, res.InTarget[s], res.InArchive[s])
		}
	}
}
