package keywrap

import (
	"bytes"
	"os"
	"testing"

	"filippo.io/age"
)

// fuzzIdentity is a test-only X25519 identity (archive/testdata/hostile
// wraps its keys to the same one).
const fuzzIdentity = "AGE-SECRET-KEY-12LQF4W77U9ZV5CT4RRWP6F3ANDRNVF89C2H46DRVZ978UW7FY7WSRYEZEK"

// FuzzUnwrap feeds arbitrary key files to what opens them: a plain key line
// (Decode) and an age file (Unwrap) with an X25519, an SSH and a passphrase
// identity. They must return a key of the right size for the right archive,
// or an error: never panic, hang or allocate what the file asks for.
func FuzzUnwrap(f *testing.F) {
	x, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		f.Fatal(err)
	}
	sshPriv, err := os.ReadFile("testdata/ssh_ed25519")
	if err != nil {
		f.Fatal(err)
	}
	sshIDs, err := ParseIdentities(sshPriv)
	if err != nil {
		f.Fatal(err)
	}
	sshPub, _ := os.ReadFile("testdata/ssh_ed25519.pub")
	sshRecips, err := ParseRecipients([]string{string(bytes.TrimSpace(sshPub))})
	if err != nil {
		f.Fatal(err)
	}
	pass, err := PassphraseIdentity("correct horse battery")
	if err != nil {
		f.Fatal(err)
	}
	// Passphrase seeds use work factor 10; the fuzzer may not ask for more.
	pass.(*age.ScryptIdentity).SetMaxWorkFactor(10)
	ids := []age.Identity{x, sshIDs[0]}

	k := New()
	f.Add(k.Encode(archiveID))
	for _, recips := range [][]age.Recipient{{x.Recipient()}, sshRecips} {
		wrapped, err := Wrap(k, archiveID, recips...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wrapped)
	}
	wrapped, err := WrapPassphrase(k, archiveID, "correct horse battery", 10)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(wrapped)
	if hostile, err := os.ReadFile("../testdata/hostile/oversized-file-encrypted.ferry.key.age"); err == nil {
		f.Add(hostile)
	}
	f.Add([]byte("age-encryption.org/v1\n-> scrypt AAAAAAAAAAAAAAAAAAAAAA 99\n"))

	check := func(t *testing.T, what string, key Key, err error) {
		if err == nil && len(key.Bytes()) != Size {
			t.Fatalf("%s gave a key of %d bytes", what, len(key.Bytes()))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := Decode(data, archiveID)
		check(t, "Decode", key, err)
		key, err = Unwrap(data, archiveID, ids...)
		check(t, "Unwrap", key, err)
		key, err = Unwrap(data, archiveID, pass)
		check(t, "Unwrap with a passphrase", key, err)
	})
}
