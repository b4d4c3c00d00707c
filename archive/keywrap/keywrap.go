// Package keywrap creates archive keys and delivers them: wrapped with age
// (filippo.io/age) to X25519 or SSH recipients, or to a passphrase (scrypt),
// in a small key.age file that the stock age CLI opens. The plaintext inside
// is one line, "ferry-archive-key-v1 <archive id> <key, base64url>", which
// binds the key to its archive.
//
// With recipients, whoever writes backups only ever needs public keys: a
// compromised writer cannot read older archives.
package keywrap

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
)

// Size of an archive key (AES-256).
const Size = 32

const lineTag = "ferry-archive-key-v1"

// Key is an archive key. Its String method never reveals it.
type Key struct{ b []byte }

// New returns a fresh random key.
func New() Key {
	b := make([]byte, Size)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("keywrap: no randomness: %v", err))
	}
	return Key{b: b}
}

// FromBytes wraps raw key bytes.
func FromBytes(b []byte) (Key, error) {
	if len(b) != Size {
		return Key{}, fmt.Errorf("archive key must be %d bytes, got %d", Size, len(b))
	}
	return Key{b: bytes.Clone(b)}, nil
}

// Bytes returns the raw key.
func (k Key) Bytes() []byte { return k.b }

// IsZero reports whether k holds no key.
func (k Key) IsZero() bool { return k.b == nil }

func (k Key) String() string { return "keywrap.Key(redacted)" }

// GoString keeps %#v from printing the key bytes.
func (k Key) GoString() string { return k.String() }

// Encode returns the key line for an archive (the plaintext of key.age, and
// the content of a plain key file).
func (k Key) Encode(archiveID string) []byte {
	return fmt.Appendf(nil, "%s %s %s\n", lineTag, archiveID, base64.RawURLEncoding.EncodeToString(k.b))
}

// ErrWrongArchive: the key belongs to another archive.
var ErrWrongArchive = errors.New("key belongs to another archive")

// Decode parses a key line. If wantArchive is not empty the key must belong
// to that archive.
func Decode(data []byte, wantArchive string) (Key, error) {
	fields := strings.Fields(string(data))
	if len(fields) != 3 || fields[0] != lineTag {
		return Key{}, errors.New("not a Ferry archive key (expected one line \"" + lineTag + " <archive id> <key>\")")
	}
	if wantArchive != "" && fields[1] != wantArchive {
		return Key{}, fmt.Errorf("%w: key is for archive %s, this is archive %s", ErrWrongArchive, fields[1], wantArchive)
	}
	raw, err := base64.RawURLEncoding.DecodeString(fields[2])
	if err != nil {
		return Key{}, fmt.Errorf("archive key is not valid base64url: %w", err)
	}
	return FromBytes(raw)
}

// ParseRecipients parses age recipients, one per entry: "age1..." X25519
// recipients and "ssh-ed25519 ..." / "ssh-rsa ..." public keys. Empty entries
// and lines starting with # are ignored.
func ParseRecipients(lines []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		var r age.Recipient
		var err error
		if strings.HasPrefix(l, "ssh-") {
			r, err = agessh.ParseRecipient(l)
		} else {
			r, err = age.ParseX25519Recipient(l)
		}
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w (expected an age1... key or an ssh-ed25519/ssh-rsa public key)", abbreviate(l), err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("no recipients given")
	}
	return out, nil
}

// ParseRecipientsFile reads recipients from a file, one per line.
func ParseRecipientsFile(path string) ([]age.Recipient, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read recipients: %w", err)
	}
	return ParseRecipients(strings.Split(string(data), "\n"))
}

func abbreviate(s string) string {
	if len(s) > 24 {
		return s[:24] + "..."
	}
	return s
}

// Wrap encrypts the key line for the given recipients: the key.age content.
func Wrap(k Key, archiveID string, recipients ...age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return nil, fmt.Errorf("wrap archive key: %w", err)
	}
	if _, err := w.Write(k.Encode(archiveID)); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WrapPassphrase wraps the key with an age passphrase (scrypt). logN sets
// the scrypt work factor; 0 keeps age's default (18).
func WrapPassphrase(k Key, archiveID, passphrase string, logN int) ([]byte, error) {
	if len(passphrase) < 12 {
		return nil, errors.New("passphrase must be at least 12 characters")
	}
	r, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return nil, err
	}
	if logN > 0 {
		r.SetWorkFactor(logN)
	}
	return Wrap(k, archiveID, r)
}

// ErrNoIdentity: none of the identities can open the wrapped key. The
// error Unwrap returns for it is a *NoIdentityError.
var ErrNoIdentity = errors.New("none of the given identities or passphrases opens this archive key")

// NoIdentityError says what a wrapped key that none of the given
// identities opens is wrapped to, so that a message can say which key to
// give instead. errors.Is(err, ErrNoIdentity) holds.
type NoIdentityError struct {
	// Passphrase: the key is wrapped to a passphrase (an scrypt stanza).
	Passphrase bool
	// Recipients counts the recipient stanzas (0 for a passphrase).
	Recipients int
	// GivenPassphrase and GivenIdentities say what was tried.
	GivenPassphrase, GivenIdentities bool
}

func (e *NoIdentityError) Error() string {
	switch {
	case e.Passphrase && e.GivenPassphrase:
		return ErrNoIdentity.Error() + ": the passphrase is wrong"
	case e.Passphrase:
		return ErrNoIdentity.Error() + ": it is wrapped to a passphrase, and none was given"
	case e.GivenIdentities:
		return fmt.Sprintf("%s: it is wrapped to %d age/SSH recipients, and the identities given are not among them", ErrNoIdentity, e.Recipients)
	}
	return fmt.Sprintf("%s: it is wrapped to %d age/SSH recipients, not to a passphrase; give an identity", ErrNoIdentity, e.Recipients)
}

func (e *NoIdentityError) Is(target error) bool { return target == ErrNoIdentity }

// ErrNotKeyFile: what was given as a key file is neither a wrapped key
// (an age file, key.age) nor a plain key line.
var ErrNotKeyFile = errors.New("not an archive key file")

// FileKind is what a file given as an archive key holds.
type FileKind int

const (
	KindUnknown  FileKind = iota // none of the below
	KindKeyLine                  // a plain key line (ferry-archive-key-v1 ...)
	KindWrapped                  // an age file: a wrapped key (key.age)
	KindIdentity                 // an age identity or an SSH private key: a secret key, not an archive key
)

// Classify tells what a file given as an archive key holds, from its
// first bytes (nothing is decrypted).
func Classify(data []byte) FileKind {
	trimmed := bytes.TrimSpace(data)
	switch {
	case bytes.HasPrefix(trimmed, []byte(lineTag+" ")):
		return KindKeyLine
	case bytes.HasPrefix(data, []byte("age-encryption.org/")):
		return KindWrapped
	case bytes.Contains(data, []byte("AGE-SECRET-KEY-")) || bytes.Contains(data, []byte("PRIVATE KEY-----")):
		return KindIdentity
	}
	return KindUnknown
}

// Unwrap opens a key.age with any of the identities.
func Unwrap(wrapped []byte, archiveID string, identities ...age.Identity) (Key, error) {
	if Classify(wrapped) != KindWrapped {
		return Key{}, fmt.Errorf("%w: it is not an age file (key.age)", ErrNotKeyFile)
	}
	r, err := age.Decrypt(bytes.NewReader(wrapped), identities...)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) || strings.Contains(err.Error(), "incorrect passphrase") {
			e := &NoIdentityError{}
			for _, id := range identities {
				if _, ok := id.(*age.ScryptIdentity); ok {
					e.GivenPassphrase = true
				} else {
					e.GivenIdentities = true
				}
			}
			if noMatch != nil {
				for _, typ := range noMatch.StanzaTypes {
					if typ == "scrypt" {
						e.Passphrase = true
					} else {
						e.Recipients++
					}
				}
			} else {
				e.Passphrase = true
			}
			return Key{}, e
		}
		if strings.Contains(err.Error(), "work factor too large") {
			return Key{}, fmt.Errorf("open wrapped archive key: %w (a passphrase-wrapped key may ask for work factor %d at most, what Ferry writes)", err, MaxWorkFactor)
		}
		return Key{}, fmt.Errorf("open wrapped archive key: %w", err)
	}
	line, err := io.ReadAll(io.LimitReader(r, 1024))
	if err != nil {
		return Key{}, fmt.Errorf("open wrapped archive key: %w", err)
	}
	return Decode(line, archiveID)
}

// ParseIdentities reads an age identity file (AGE-SECRET-KEY-1... lines) or
// an unencrypted SSH private key (ed25519 or RSA).
func ParseIdentities(data []byte) ([]age.Identity, error) {
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		id, err := agessh.ParseIdentity(data)
		if err != nil {
			return nil, fmt.Errorf("SSH identity: %w", err)
		}
		return []age.Identity{id}, nil
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("age identity file: %w", err)
	}
	return ids, nil
}

// MaxWorkFactor is the highest scrypt work factor (log2 of N) a
// passphrase-wrapped key may ask for: what Ferry writes (18, age's default,
// 256 MiB and about a second to open). age itself accepts up to 22 (4 GiB,
// some 15 s), so a key file from anyone could cost that much to try.
const MaxWorkFactor = 18

// PassphraseIdentity opens passphrase-wrapped keys whose work factor is at
// most MaxWorkFactor.
func PassphraseIdentity(passphrase string) (age.Identity, error) {
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, err
	}
	id.SetMaxWorkFactor(MaxWorkFactor)
	return id, nil
}
