package keywrap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"filippo.io/age"
)

const archiveID = "0102030405060708090a0b0c0d0e0f10"

// A key wrapped to an X25519 and an SSH ed25519 recipient opens with either
// identity, not with a stranger's, and the plaintext is the documented line
// that any age implementation returns.
func TestWrapToRecipients(t *testing.T) {
	x, _ := age.GenerateX25519Identity()
	sshPub, _ := os.ReadFile("testdata/ssh_ed25519.pub")
	sshPriv, _ := os.ReadFile("testdata/ssh_ed25519")
	recips, err := ParseRecipients([]string{x.Recipient().String(), "", string(bytes.TrimSpace(sshPub))})
	if err != nil {
		t.Fatal(err)
	}
	k := New()
	wrapped, err := Wrap(k, archiveID, recips...)
	if err != nil {
		t.Fatal(err)
	}
	sshIDs, err := ParseIdentities(sshPriv)
	if err != nil {
		t.Fatal(err)
	}
	xIDs, err := ParseIdentities([]byte("# a comment\n" + x.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, ids := range map[string][]age.Identity{"x25519": xIDs, "ssh": sshIDs} {
		got, err := Unwrap(wrapped, archiveID, ids...)
		if err != nil || !bytes.Equal(got.Bytes(), k.Bytes()) {
			t.Errorf("%s identity: %v", name, err)
		}
	}
	stranger, _ := age.GenerateX25519Identity()
	if _, err := Unwrap(wrapped, archiveID, stranger); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("stranger's identity: %v", err)
	}
	r, err := age.Decrypt(bytes.NewReader(wrapped), x)
	if err != nil {
		t.Fatal(err)
	}
	var plain bytes.Buffer
	plain.ReadFrom(r)
	if !strings.HasPrefix(plain.String(), "ferry-archive-key-v1 "+archiveID+" ") {
		t.Errorf("plaintext %q is not the documented key line", plain.String())
	}
}

func TestBadRecipientsAndKeysAreExplained(t *testing.T) {
	if _, err := ParseRecipients([]string{"age1notakey"}); err == nil || !strings.Contains(err.Error(), "expected an age1") {
		t.Errorf("bad recipient: %v", err)
	}
	if _, err := Decode([]byte("ferry-archive-key-v1 "+archiveID+" short"), archiveID); err == nil {
		t.Error("short key accepted")
	}
	k := New()
	if _, err := Decode(k.Encode(archiveID), "ffffffffffffffffffffffffffffffff"); !errors.Is(err, ErrWrongArchive) {
		t.Errorf("key of another archive: %v", err)
	}
	if s := fmt.Sprintf("%v %s %#v", k, k, k); strings.Contains(s, strings.TrimSpace(string(k.Encode(archiveID)[54:]))) {
		t.Errorf("key printed: %s", s)
	}
}

// A passphrase-wrapped key asking for more scrypt work than Ferry writes is
// refused before the work is done (age alone would spend 4 GiB on one).
func TestPassphraseWorkFactorIsBounded(t *testing.T) {
	k := New()
	id, err := PassphraseIdentity("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	ok, _ := WrapPassphrase(k, archiveID, "correct horse battery", 10)
	if got, err := Unwrap(ok, archiveID, id); err != nil || !bytes.Equal(got.Bytes(), k.Bytes()) {
		t.Fatalf("work factor 10: %v", err)
	}
	// The work factor is read before the header's MAC is checked: a key file
	// need not be genuine to make the reader do the work.
	costly := bytes.Replace(ok, []byte(" 10\n"), fmt.Appendf(nil, " %d\n", MaxWorkFactor+1), 1)
	if _, err := Unwrap(costly, archiveID, id); err == nil || !strings.Contains(err.Error(), "work factor") {
		t.Fatalf("work factor %d: %v", MaxWorkFactor+1, err)
	}
}

// Unwrap says what a key is wrapped to when nothing given opens it, and
// Classify tells a key line, a wrapped key and an identity apart.
func TestUnwrapDiagnoses(t *testing.T) {
	const archiveID = "01J00000000000000000000000"
	k := New()
	byPass, err := WrapPassphrase(k, archiveID, "the right passphrase", 10)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := age.GenerateX25519Identity()
	byRecipient, err := Wrap(k, archiveID, x.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := PassphraseIdentity("the wrong passphrase")
	stranger, _ := age.GenerateX25519Identity()
	for _, tc := range []struct {
		name    string
		wrapped []byte
		ids     []age.Identity
		want    string
	}{
		{"wrong passphrase", byPass, []age.Identity{wrong}, "the passphrase is wrong"},
		{"identity for a passphrase", byPass, []age.Identity{stranger}, "wrapped to a passphrase, and none was given"},
		{"passphrase for recipients", byRecipient, []age.Identity{wrong}, "wrapped to 1 age/SSH recipients, not to a passphrase"},
		{"stranger", byRecipient, []age.Identity{stranger}, "the identities given are not among them"},
		{"not an age file", []byte("hello\n"), []age.Identity{stranger}, "not an archive key file"},
	} {
		_, err := Unwrap(tc.wrapped, archiveID, tc.ids...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if tc.name != "not an age file" && !errors.Is(err, ErrNoIdentity) {
			t.Errorf("%s: %v is not ErrNoIdentity", tc.name, err)
		}
	}
	for data, want := range map[string]FileKind{
		string(k.Encode(archiveID)): KindKeyLine, string(byPass): KindWrapped, x.String() + "\n": KindIdentity,
		"-----BEGIN OPENSSH PRIVATE KEY-----\n...": KindIdentity, "random bytes": KindUnknown,
	} {
		if got := Classify([]byte(data)); got != want {
			t.Errorf("Classify(%.30q) = %d, want %d", data, got, want)
		}
	}
}
