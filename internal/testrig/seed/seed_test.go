package seed

import (
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// Seeding a real Dendrite works and records a consistent ground truth.
func TestSeedDendrite(t *testing.T) {
	d := testenv.StartDendrite(t, "seed.ferry.test")
	g, err := Run(context.Background(), Server{URL: d.URL, ServerName: d.ServerName,
		Register: func(local, pw string, admin bool) (string, error) { return d.Register(t, local, pw, admin), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Users) != 3 || len(g.Rooms) != 2 || len(g.Media) != 4 || len(g.Redactions) != 1 {
		t.Fatalf("ground truth %+v", g)
	}
	general := g.EventsByRoomAndType[g.Rooms[0].RoomID]
	if general["m.room.message"] != 27 || general["m.reaction"] != 2 || general["m.room.redaction"] != 1 || general["m.room.create"] != 1 {
		t.Errorf("general room events %v", general)
	}
	if g.Rooms[0].Members["@carol:seed.ferry.test"].Membership != "join" || g.Rooms[1].Members["@carol:seed.ferry.test"].Membership != "leave" {
		t.Errorf("memberships %+v / %+v", g.Rooms[0].Members, g.Rooms[1].Members)
	}
	if g.Rooms[0].Name != "General" || g.Rooms[0].JoinRule != "public" || g.Rooms[1].JoinRule != "invite" || g.Rooms[0].Version != "10" {
		t.Errorf("rooms %+v", g.Rooms)
	}
	for _, u := range g.Users {
		if _, code, err := d.Login(u.UserID[1:len(u.UserID)-len(":seed.ferry.test")], u.Password); err != nil || code != 200 {
			t.Errorf("%s cannot log in: %v", u.UserID, err)
		}
	}
	t.Logf("seeded %d events", g.EventsTotal)
}
