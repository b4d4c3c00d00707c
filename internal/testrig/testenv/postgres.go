package testenv

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/internal/pgproc"
)

// Postgres is a private PostgreSQL cluster (internal/pgproc) in a
// temporary directory, listening on 127.0.0.1 on a free port. One cluster
// serves a whole test binary (see Main); each test makes its own database
// in it.
type Postgres struct {
	*pgproc.Cluster
}

var (
	mainRuns bool // Main wraps this test binary, so the cluster is stopped at the end
	pgOnce   sync.Once
	pg       *Postgres
	pgErr    error
)

// Main runs the tests of a package and stops the services they started.
// Use it as: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	mainRuns = true
	code := m.Run()
	if pg != nil && pg.Cluster != nil {
		pg.Stop()
	}
	os.Exit(code)
}

// StartPostgres returns the test binary's PostgreSQL cluster, starting it
// on first use. Call Main from TestMain so that it is stopped.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	if !mainRuns {
		t.Fatal("testenv.StartPostgres needs func TestMain(m *testing.M) { testenv.Main(m) } in the package, which stops the cluster when the tests end")
	}
	pgOnce.Do(func() {
		c, err := pgproc.Start()
		pg, pgErr = &Postgres{Cluster: c}, err
	})
	if pgErr != nil {
		if os.Getenv("FERRY_REQUIRE_SERVICES") == "1" {
			t.Fatal(pgErr)
		}
		t.Skip(pgErr)
	}
	return pg
}

// restrictFilter drops pg_dump 15.14+'s \restrict and \unrestrict lines,
// which older psql versions do not know.
type restrictFilter struct {
	r   io.Reader
	br  *bufio.Reader
	buf []byte
}

func (f *restrictFilter) Read(p []byte) (int, error) {
	if f.br == nil {
		f.br = bufio.NewReaderSize(f.r, 1<<20)
	}
	for len(f.buf) == 0 {
		line, err := f.br.ReadBytes('\n')
		if !bytes.HasPrefix(line, []byte("\\restrict ")) && !bytes.HasPrefix(line, []byte("\\unrestrict ")) {
			f.buf = line
		}
		if err != nil {
			if len(f.buf) == 0 {
				return 0, err
			}
			break
		}
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

// CreateDatabase makes a fresh database (UTF8, C collation, as Synapse
// requires) and drops it when the test ends.
func (p *Postgres) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	url, err := p.Cluster.CreateDatabase(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.DropDatabase(context.Background(), name) })
	return url
}

// Restore loads a plain-SQL dump (gzip-compressed when the name ends in
// .gz) into database name with psql, stopping at the first error.
func (p *Postgres) Restore(t testing.TB, name, dumpPath string) {
	t.Helper()
	f, err := os.Open(dumpPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(dumpPath, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	start := time.Now()
	cmd := exec.Command(filepath.Join(p.Bin, "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-X", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres", "-d", name)
	cmd.Stdin = &restrictFilter{r: r}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("restore %s: %v\n%s", dumpPath, err, out)
	}
	t.Logf("restored %s in %v", filepath.Base(dumpPath), time.Since(start).Round(time.Millisecond))
}

// SynapseFixture restores testdata/<fixture>/synapse.sql.gz (testdata is
// the path of the repository's testdata directory as the test sees it)
// into a fresh database of the private cluster, unpacks the fixtures'
// media store into a temporary directory, and returns both.
func SynapseFixture(t testing.TB, testdata, fixture string) (dbURL, mediaDir string) {
	t.Helper()
	p := StartPostgres(t)
	name := strings.ToLower(strings.NewReplacer("-", "_", ".", "_", "/", "_", " ", "_").Replace(fixture + "_" + t.Name()))
	if len(name) > 60 {
		name = name[:60]
	}
	dbURL = p.CreateDatabase(t, name)
	p.Restore(t, name, filepath.Join(testdata, fixture, "synapse.sql.gz"))
	mediaDir = t.TempDir()
	if err := Untar(filepath.Join(testdata, "synapse-1.67", "media_store.tar.gz"), mediaDir); err != nil {
		t.Fatal(err)
	}
	return dbURL, mediaDir
}
