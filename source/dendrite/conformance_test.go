package dendrite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ferry-matrix/ferry/internal/seed"
	"github.com/ferry-matrix/ferry/internal/testenv"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// The conformance suite on a live Dendrite (SQLite) seeded through the
// client-server API, against the ground truth the seeding client recorded.
func TestConformance(t *testing.T) {
	ctx := context.Background()
	d := testenv.StartDendrite(t, "suite.ferry.test")
	truth, err := seed.Run(ctx, seed.Server{URL: d.URL, ServerName: d.ServerName,
		Register: func(local, pw string, admin bool) (string, error) { return d.Register(t, local, pw, admin), nil }})
	if err != nil {
		t.Fatal(err)
	}
	sourcetest.Suite{
		Open: func(t *testing.T) source.Source {
			s, err := Open(ctx, filepath.Join(d.Dir, "dendrite.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Truth: truth, PasswordsVerify: true, OriginalsLost: true, Secrets: []string{d.Secret},
	}.Run(t)
}
