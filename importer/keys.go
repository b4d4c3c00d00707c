package importer

import (
	"context"
	"crypto/ed25519"

	"github.com/ferry-matrix/ferry/archive"
)

// NoPrivateKey is the fidelity note of a target that keeps its own
// signing key because the archive lacks its server's private key.
const NoPrivateKey = "the archive holds no private signing key (an export carries it with --private-server-key, or --migration, into an encrypted archive); " +
	"the target keeps its own key, which other servers learn as the server's new key; the archive's public key is suggested as an old key, so that what it signed stays verifiable"

// SigningKeys reads the archive's own signing key (nil when the archive
// does not carry its private half) and the keys every target keeps as old
// verification keys: the archive's retired ones, and its own public key,
// retired at the archive's creation, when the private half is missing.
func SigningKeys(ctx context.Context, r *archive.Reader) (own *archive.ServerKey, old []archive.ServerKey, err error) {
	err = archive.ReadSection(ctx, r, archive.SectionServerKeys, func(k *archive.ServerKey) error {
		switch k.Kind {
		case "own":
			c := *k
			own = &c
		case "own_old":
			old = append(old, *k)
		}
		return nil
	})
	if own != nil && len(own.PrivateKey) != ed25519.SeedSize {
		if own.PublicKey != "" {
			retired := *own
			retired.Kind, retired.ExpiredTS = "own_old", r.Manifest().CreatedAt.UnixMilli()
			old = append(old, retired)
		}
		own = nil
	}
	return own, old, err
}

// WithoutKeyID leaves out of keys the one with keyID: the target's own
// current key must not be suggested as an old one (a server that
// advertised its current key as expired would have its new events
// refused), as when a restore keeps a target key that is the archive's.
func WithoutKeyID(keys []archive.ServerKey, keyID string) []archive.ServerKey {
	if keyID == "" {
		return keys
	}
	var out []archive.ServerKey
	for _, k := range keys {
		if k.KeyID != keyID {
			out = append(out, k)
		}
	}
	return out
}
