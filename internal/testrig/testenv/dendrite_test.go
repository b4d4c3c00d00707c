package testenv

import "testing"

// The Dendrite the tests use starts, takes shared-secret registrations and
// checks passwords.
func TestDendriteStarts(t *testing.T) {
	d := StartDendrite(t, "dendrite.ferry.test")
	if tok := d.Register(t, "alice", "alice-Fixtur3pw", true); tok == "" {
		t.Fatal("no token")
	}
	if _, code, err := d.Login("alice", "alice-Fixtur3pw"); err != nil || code != 200 {
		t.Fatalf("login: %d %v", code, err)
	}
	if _, code, _ := d.Login("alice", "wrong"); code != 403 {
		t.Fatalf("wrong password: %d", code)
	}
}
