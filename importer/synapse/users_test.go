package synapse

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/internal/testrig/exporttest"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
	ssource "github.com/ferry-matrix/ferry/source/synapse"
)

const testdata = "../../testdata/"

// exportFixture writes a full, encrypted export of a real Synapse fixture
// and opens it.
func exportFixture(t *testing.T, fixture string, opts source.Options) *archive.Reader {
	t.Helper()
	db, media := testenv.SynapseFixture(t, testdata, fixture)
	return exportSynapse(t, ssource.Config{Database: db, MediaStore: media,
		SigningKey: testdata + "synapse-1.67/fixture.test.signing.key", HomeserverConfig: testdata + "synapse-1.67/homeserver.yaml"}, opts)
}

// exportSynapse writes a full, encrypted export of a Synapse and opens it.
func exportSynapse(t *testing.T, cfg ssource.Config, opts source.Options) *archive.Reader {
	t.Helper()
	src, err := ssource.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r, _ := exporttest.Export(t, src, source.Filter{}, opts)
	return r
}

// restoreSlices checks the target and runs each restore step in one
// transaction; it returns what each step counted, in step order.
func restoreSlices(t *testing.T, s *testenv.Synapse, r *archive.Reader, steps ...func(context.Context, pgx.Tx, *archive.Reader) (int64, error)) []int64 {
	t.Helper()
	ctx := context.Background()
	if _, err := Check(ctx, Config{Database: s.DB, HomeserverConfig: s.Config}, r.Core().ServerName); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, s.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var counts []int64
	for _, step := range steps {
		n, err := step(ctx, tx, r)
		if err != nil {
			t.Fatal(err)
		}
		counts = append(counts, n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return counts
}

// The users of a real Synapse 1.67 come back into Synapse 1.160: each logs
// in with their old password, a wrong one is refused, and profiles show
// the old display names.
func TestRestoredUsersLogIn(t *testing.T) {
	ctx := context.Background()
	r := exportFixture(t, "synapse-1.67", source.Options{})
	s := testenv.NewSynapse(t, r.Core().ServerName)
	n := restoreSlices(t, s, r, restoreUsers)[0]

	var users []archive.User
	archive.ReadSection(ctx, r, archive.SectionUsers, func(u *archive.User) error { users = append(users, *u); return nil })
	if n == 0 || n != int64(len(users)) {
		t.Fatalf("restored %d users of %d", n, len(users))
	}
	s.Start(t)
	loggedIn := 0
	for _, u := range users {
		localpart := strings.TrimPrefix(strings.SplitN(u.UserID, ":", 2)[0], "@")
		if u.PasswordHash == "" || u.Deactivated {
			continue
		}
		if _, code, err := s.Login(localpart, localpart+"-Fixtur3pw"); code != 200 {
			t.Errorf("%s cannot log in with the old password: %d %v", u.UserID, code, err)
		}
		loggedIn++
		resp, err := http.Get(s.URL + "/_matrix/client/v3/profile/" + url.PathEscape(u.UserID) + "/displayname")
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			DisplayName string `json:"displayname"`
		}
		json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if p.DisplayName != u.DisplayName {
			t.Errorf("%s: display name %q, want %q", u.UserID, p.DisplayName, u.DisplayName)
		}
	}
	if loggedIn < 5 {
		t.Fatalf("only %d users with passwords to log in", loggedIn)
	}
	if _, code, _ := s.Login(strings.TrimPrefix(strings.SplitN(users[0].UserID, ":", 2)[0], "@"), "wrong"); code != 403 {
		t.Errorf("a wrong password: %d", code)
	}
}
