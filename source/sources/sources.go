// Package sources is the one list of source implementations (as restic's
// backend/all): it opens a homeserver's data by implementation name, for
// the CLI and the job service alike, and says what each implementation
// can export before anything is opened (its capabilities, which every
// surface checks a selection against when it is submitted).
package sources

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/dendrite"
	"github.com/ferry-matrix/ferry/source/synapse"
)

// Implementations that Ferry exports from.
const (
	Synapse  = "synapse"
	Dendrite = "dendrite"
)

// Names lists the implementations.
func Names() []string { return []string{Synapse, Dendrite} }

// Config says where one homeserver's data is.
type Config struct {
	Implementation string         // Synapse or Dendrite
	Synapse        synapse.Config // for Synapse
	DendriteConfig string         // for Dendrite: the server's dendrite.yaml
}

// Capabilities are an implementation's capabilities (source.Capabilities),
// known without opening anything.
func Capabilities(impl string) (source.Capabilities, error) {
	switch impl {
	case Synapse:
		return synapse.Caps(), nil
	case Dendrite:
		return dendrite.Caps(), nil
	}
	return source.Capabilities{}, unknown(impl)
}

// Open opens the homeserver's data on one consistent snapshot.
func Open(ctx context.Context, c Config) (source.Source, error) {
	switch c.Implementation {
	case Synapse:
		if c.Synapse.Database == "" {
			return nil, errors.New("a Synapse source needs the URL of its PostgreSQL database, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
		}
		return synapse.Open(ctx, c.Synapse)
	case Dendrite:
		if c.DendriteConfig == "" {
			return nil, errors.New("a Dendrite source needs the server's dendrite.yaml")
		}
		return dendrite.Open(ctx, c.DendriteConfig)
	}
	return nil, unknown(c.Implementation)
}

func unknown(impl string) error {
	return fmt.Errorf("source %q: the sources are %s", impl, strings.Join(Names(), " and "))
}
