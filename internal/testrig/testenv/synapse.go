package testenv

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/internal/matrixadmin"
	"github.com/ferry-matrix/ferry/internal/synapseproc"
)

// synapseCount numbers the Synapse databases of this test binary.
var synapseCount atomic.Int64

// Synapse is a Synapse homeserver (Debian's package in the chroot that
// scripts/lib/synapse.sh builds, FERRY_SYNAPSE_CHROOT) on a fresh database
// of the test binary's PostgreSQL cluster. It is stopped and its files and
// database removed when the test ends.
type Synapse struct {
	*synapseproc.Server
	// DB is the URL of its database.
	DB string
}

// NewSynapse configures a Synapse for serverName on a fresh database and
// creates the schema as an admin would (update_synapse_database), without
// starting it. It fails when the chroot holds another Synapse version, or
// the schema it creates is not the one Ferry supports, naming both.
func NewSynapse(t testing.TB, serverName string, opts ...func(*synapseproc.Options)) *Synapse {
	t.Helper()
	chroot := need(t, "FERRY_SYNAPSE_CHROOT", "the Synapse chroot")
	if v, err := synapseproc.Version(chroot); err != nil {
		t.Fatal(err)
	} else if v != synapseproc.SupportedVersion {
		t.Fatalf("the chroot %s holds Synapse %s; Ferry supports Synapse %s (schema %d): rebuild it with scripts/lib/synapse.sh, or check Ferry against %s and update synapseproc.SupportedVersion",
			chroot, v, synapseproc.SupportedVersion, synapseproc.SupportedSchema, v)
	}
	pg := StartPostgres(t)
	name := "synapse_" + strings.ToLower(strings.NewReplacer("/", "_", "-", "_", ".", "_", " ", "_").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name += fmt.Sprintf("_%d", synapseCount.Add(1)) // a test may run several
	o := synapseproc.Options{Chroot: chroot, ServerName: serverName, Database: pg.CreateDatabase(t, name)}
	for _, opt := range opts {
		opt(&o)
	}
	ctx := context.Background()
	srv, err := synapseproc.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	s := &Synapse{Server: srv, DB: o.Database}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("synapse log (end):\n%s", s.LogTail(3000))
		}
		s.Remove()
	})
	if err := s.InitSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if schema, err := SynapseSchemaVersion(ctx, s.DB); err != nil {
		t.Fatal(err)
	} else if schema != synapseproc.SupportedSchema {
		t.Fatalf("Synapse %s created schema %d; Ferry supports schema %d", synapseproc.SupportedVersion, schema, synapseproc.SupportedSchema)
	}
	return s
}

// WithAppservice registers an appservice with the Synapse NewSynapse makes:
// the registration file is copied into Synapse's work directory and listed
// in app_service_config_files as Synapse sees it (inside the chroot).
// Synapse shares the host's network: it reaches an appservice listening on
// 127.0.0.1.
func WithAppservice(registrationFile string) func(*synapseproc.Options) {
	return func(o *synapseproc.Options) { o.AppServices = append(o.AppServices, registrationFile) }
}

// StartSynapse is NewSynapse, then Start.
func StartSynapse(t testing.TB, serverName string, opts ...func(*synapseproc.Options)) *Synapse {
	t.Helper()
	s := NewSynapse(t, serverName, opts...)
	s.Start(t)
	return s
}

// Start starts Synapse and waits until it serves.
func (s *Synapse) Start(t testing.TB) {
	t.Helper()
	if err := s.Server.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Register creates a user through the shared-secret registration admin
// API and returns its access token.
func (s *Synapse) Register(t testing.TB, localpart, password string, admin bool) string {
	t.Helper()
	tok, err := matrixadmin.Register(s.URL, s.Secret, localpart, password, admin)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Login logs a user in with a password (the token, or the HTTP status).
func (s *Synapse) Login(localpart, password string) (string, int, error) {
	return matrixadmin.Login(s.URL, localpart, password)
}

// SynapseSchemaVersion reads the schema version of a Synapse database.
func SynapseSchemaVersion(ctx context.Context, dbURL string) (int, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the Synapse schema version: %w", err)
	}
	return v, nil
}
