package synapse

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
	"github.com/ferry-matrix/ferry/internal/testrig/exporttest"
	"github.com/ferry-matrix/ferry/internal/testrig/fixturecheck"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
	ssource "github.com/ferry-matrix/ferry/source/synapse"
)

// A live Synapse 1.160, seeded through the client-server API (users with
// passwords and profiles; public, private, DM and encrypted rooms and a
// space; joins, leaves, kicks, bans, an invite, a room upgrade; messages
// with edits, reactions, threads and redactions; account data, tags, keys,
// a key backup, media), exported and restored into a fresh Synapse: what
// every user sees through the client-server API is what they saw before,
// and the seed's ground truth; an appservice registered on the restored
// server is sent the first new event and none of the restored history.
func TestLiveSynapseRoundTrip(t *testing.T) {
	ctx := context.Background()
	const name = "roundtrip.ferry.test"
	from := testenv.StartSynapse(t, name)
	truth, err := seed.Run(ctx, seed.Server{URL: from.URL, ServerName: name,
		Register: func(local, pw string, admin bool) (string, error) { return from.Register(t, local, pw, admin), nil }})
	if err != nil {
		t.Fatal(err)
	}
	before := capture(t, from.URL, truth)
	keysBefore, dirBefore := keysAndDirectories(t, from.URL, truth, before)
	from.Stop()

	src, err := ssource.Open(ctx, ssource.Config{Database: from.DB, MediaStore: from.MediaStore, SigningKey: from.SigningKey, HomeserverConfig: from.Config})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir, key, _ := exporttest.ExportDir(t, src, source.Filter{}, source.Options{AccessTokens: true, PrivateServerKey: true})
	rec := fixturecheck.NewRecorder(t) // a bridge registered on the restored server
	to := testenv.NewSynapse(t, name, testenv.WithAppservice(rec.Registration))
	res, err := importer.Run(ctx, NewTarget(Config{Database: to.DB, HomeserverConfig: to.Config, MediaStore: to.MediaStore,
		SigningKey: to.SigningKey, RunBackgroundUpdates: to.RunBackgroundUpdates}), exporttest.Open(t, dir, key), importer.Options{Migration: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", res.Report)
	to.Start(t)
	after := capture(t, to.URL, truth)
	for _, d := range clientview.Diff(before, after) {
		t.Errorf("after the restore: %s", d)
	}
	keysAfter, dirAfter := keysAndDirectories(t, to.URL, truth, after)
	if string(keysAfter) != string(keysBefore) {
		t.Errorf("/keys/query after the restore:\n%s\nbefore:\n%s", keysAfter, keysBefore)
	}
	if !reflect.DeepEqual(dirAfter, dirBefore) || len(dirBefore.PublicRooms) == 0 || len(dirBefore.Users["alice"]) == 0 {
		t.Errorf("directories after the restore: %+v, before: %+v", dirAfter, dirBefore)
	}
	c := &clientview.Client{URL: to.URL, ServerName: name}
	tokens := fixturecheck.Login(t, c, truth)
	fixturecheck.Rooms(t, c, truth, tokens, fixturecheck.ArchiveEvents(t, exporttest.Open(t, dir, key)))
	fixturecheck.Search(t, c, truth, tokens)
	fixturecheck.Users(t, c, truth, tokens)
	// The appservice is sent the first new event, and none of the history.
	alice := tokens["@alice:"+name]
	var general string
	for _, r := range truth.Rooms {
		if r.Label == "general" {
			general = r.RoomID
		}
	}
	id, err := c.Send(ctx, alice, general, "after-restore", "sent after the restore")
	if err != nil {
		t.Fatal(err)
	}
	rec.ExpectOnly(t, id)
}

// keysAndDirectories reads, as the first seeded user, /keys/query for
// every user, the public room directory and a user directory search for
// each user's localpart.
func keysAndDirectories(t *testing.T, url string, truth *sourcetest.GroundTruth, v *clientview.View) (json.RawMessage, *clientview.Directory) {
	t.Helper()
	ctx := context.Background()
	c := &clientview.Client{URL: url, ServerName: truth.ServerName}
	var users, terms []string
	for _, u := range truth.Users {
		users = append(users, u.UserID)
		terms = append(terms, strings.TrimPrefix(strings.SplitN(u.UserID, ":", 2)[0], "@"))
	}
	tok := v.Users[truth.Users[0].UserID].Token
	keys, err := c.KeysQuery(ctx, tok, users)
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	for _, r := range truth.Rooms {
		if r.InDirectory {
			listed++
		}
	}
	// Synapse fills the room directory from its room stats and the user
	// directory from its own stream, both a moment after the events on a
	// live server: wait until every room is listed and every user found.
	ready := func(d *clientview.Directory) bool {
		if d == nil || len(d.PublicRooms) != listed {
			return false
		}
		for _, term := range terms {
			if len(d.Users[term]) == 0 {
				return false
			}
		}
		return true
	}
	var dir *clientview.Directory
	for try := 0; try < 120 && !ready(dir); try++ {
		if dir, err = c.Directories(ctx, tok, terms...); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return keys, dir
}

// capture records what the seeded users see.
func capture(t *testing.T, url string, truth *sourcetest.GroundTruth) *clientview.View {
	t.Helper()
	c := &clientview.Client{URL: url, ServerName: truth.ServerName}
	v, err := c.Capture(context.Background(), fixturecheck.Logins(truth), fixturecheck.MediaURIs(truth))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
