package dendrite

import (
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// The conformance suite on a live Dendrite seeded through the client-server
// API, against the ground truth the seeding client recorded: on SQLite
// files and on PostgreSQL (one database for all components).
func TestConformance(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			d, truth, cfg := seededOn(t, backend, "suite.ferry.test")
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
		})
	}
}
