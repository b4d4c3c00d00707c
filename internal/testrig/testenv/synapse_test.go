package testenv

import "testing"

func TestMain(m *testing.M) { Main(m) }

// The Synapse the tests use: Debian's package in the chroot, its schema
// made by update_synapse_database, serving on 127.0.0.1; it takes
// shared-secret registrations and checks passwords.
func TestSynapseStarts(t *testing.T) {
	s := StartSynapse(t, "synapse.ferry.test")
	if tok := s.Register(t, "alice", "alice-Fixtur3pw", true); tok == "" {
		t.Fatal("no token")
	}
	if _, code, err := s.Login("alice", "alice-Fixtur3pw"); err != nil || code != 200 {
		t.Fatalf("login: %d %v", code, err)
	}
	if _, code, _ := s.Login("alice", "wrong"); code != 403 {
		t.Fatalf("wrong password: %d", code)
	}
}
