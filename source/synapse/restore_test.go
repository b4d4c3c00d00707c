package synapse

import (
	"testing"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestRestoreFixtures(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.CreateDatabase(t, "f167")
	pg.Restore(t, "f167", "../../testdata/synapse-1.67/synapse.sql.gz")
	pg.CreateDatabase(t, "flatest")
	pg.Restore(t, "flatest", "../../testdata/synapse-latest-schema/synapse.sql.gz")
}
