package testenv

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/internal/dendriteproc"
)

// Dendrite is a Dendrite homeserver for a test (v0.15.2, built by
// scripts/test into $FERRY_DENDRITE_DIR; see internal/dendriteproc),
// configured as an admin would: Dendrite's default config, JetStream on
// disk. Its SQLite files (or one PostgreSQL database), JetStream store and
// media are in a temporary directory; it listens on 127.0.0.1 only and is
// stopped when the test ends.
type Dendrite struct {
	*dendriteproc.Server
}

// StartDendrite generates a config and keys for serverName and starts
// Dendrite; it is stopped when the test ends.
func StartDendrite(t testing.TB, serverName string) *Dendrite {
	t.Helper()
	d := NewDendrite(t, serverName)
	d.Start(t)
	return d
}

// NewDendrite generates a config (SQLite files, media and JetStream, on
// disk, under Dir) and a signing key for serverName, without starting
// Dendrite: an import target, or a server to Start later.
func NewDendrite(t testing.TB, serverName string) *Dendrite {
	t.Helper()
	return newDendrite(t, serverName, "")
}

// NewDendritePostgres is NewDendrite with one fresh database of the test's
// private PostgreSQL cluster for all components (Dendrite's single-database
// setup); media and JetStream stay under Dir.
func NewDendritePostgres(t testing.TB, serverName string) *Dendrite {
	t.Helper()
	pg := StartPostgres(t)
	name := "dendrite_" + strings.NewReplacer(".", "_", "-", "_").Replace(serverName) + "_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	return newDendrite(t, serverName, pg.CreateDatabase(t, name))
}

func newDendrite(t testing.TB, serverName, dbURL string) *Dendrite {
	t.Helper()
	bin := need(t, "FERRY_DENDRITE_DIR", "the Dendrite homeserver")
	s, err := dendriteproc.New(bin, t.TempDir(), serverName, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	d := &Dendrite{Server: s}
	t.Cleanup(d.Stop)
	return d
}

// AddAppservice registers an appservice with Dendrite; call it before Start.
func (d *Dendrite) AddAppservice(t testing.TB, registrationFile string) {
	t.Helper()
	if err := d.Server.AddAppservice(registrationFile); err != nil {
		t.Fatal(err)
	}
}

// Start starts Dendrite on a free loopback port and waits until it
// answers; it is stopped when the test ends (or by Stop). A failed test
// shows the tail of Dendrite's log.
func (d *Dendrite) Start(t testing.TB) {
	t.Helper()
	if err := d.Server.Start(FreePort(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dendrite log (tail):\n%s", d.LogTail(3000))
		}
	})
}

// Register creates a user through the shared-secret registration admin
// API and returns its access token.
func (d *Dendrite) Register(t testing.TB, localpart, password string, admin bool) string {
	t.Helper()
	tok, err := d.Server.Register(localpart, password, admin)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
