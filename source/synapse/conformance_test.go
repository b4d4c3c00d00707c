package synapse

import (
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// The conformance suite on both Synapse fixtures: same data, schema 72 and 94.
func TestConformance(t *testing.T) {
	truth, err := sourcetest.LoadGroundTruth(testdata + "synapse-1.67/ground_truth.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"synapse-1.67", "synapse-latest-schema"} {
		t.Run(name, func(t *testing.T) {
			cfg := fixture(t, name)
			sourcetest.Suite{
				Open: func(t *testing.T) source.Source {
					src, err := Open(context.Background(), cfg)
					if err != nil {
						t.Fatal(err)
					}
					return src
				},
				Truth:           truth,
				PasswordsVerify: true,
				Secrets: []string{
					"hTcAu3bQE_g3nfPkVOlHMPxcTvXIC54KTsUzbI9bhAsjpICi", // registration_shared_secret
					"mgHVcpUnByZ04aTL4aWjtk0WLncga54yrT9-FdiOfECZja6w", // macaroon_secret_key
					"eoAl2OIJlUNhe84W2MwSwBDUO52GMCfR3KUaXs_V3mXXTpPT", // form_secret
					"fixturepw", // database password
					"syt_",      // access tokens
				},
			}.Run(t)
		})
	}
}
