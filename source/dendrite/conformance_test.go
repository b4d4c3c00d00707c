package dendrite

import (
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// The conformance suite on a live Dendrite (SQLite) seeded through the
// client-server API, against the ground truth the seeding client recorded.
func TestConformance(t *testing.T) {
	ctx := context.Background()
	d, truth, cfg := seeded(t, "suite.ferry.test")
	sourcetest.Suite{
		Open: func(t *testing.T) source.Source {
			s, err := Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Truth: truth, PasswordsVerify: true, OriginalsLost: true, Secrets: []string{d.Secret},
	}.Run(t)
}
