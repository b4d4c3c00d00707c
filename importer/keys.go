package importer

import (
	"context"

	"github.com/ferry-matrix/ferry/archive"
)

// SigningKeys reads the archive's own signing key (nil when the archive
// does not carry it) and its retired ones, which every target installs.
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
	return own, old, err
}
