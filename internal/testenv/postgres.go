package testenv

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a private PostgreSQL cluster in a temporary directory,
// listening on 127.0.0.1 on a free port. One cluster serves a whole test
// binary (see Main); each test makes its own database in it.
type Postgres struct {
	bin     string
	dir     string
	Port    int
	runAs   *user.User // when running as root: the postgres user
	stopped bool
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
	if pg != nil {
		pg.stop()
	}
	os.Exit(code)
}

// pgBinDir finds initdb/pg_ctl: $FERRY_PG_BIN, then PATH, then Debian's
// /usr/lib/postgresql/<version>/bin.
func pgBinDir() (string, error) {
	if d := os.Getenv("FERRY_PG_BIN"); d != "" {
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", fmt.Errorf("PostgreSQL's initdb was not found: install Debian's postgresql package (scripts/test does) or set FERRY_PG_BIN")
}

// StartPostgres returns the test binary's PostgreSQL cluster, starting it
// on first use. Call Main from TestMain so that it is stopped.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	if !mainRuns {
		t.Fatal("testenv.StartPostgres needs func TestMain(m *testing.M) { testenv.Main(m) } in the package, which stops the cluster when the tests end")
	}
	pgOnce.Do(func() { pg, pgErr = startPostgres() })
	if pgErr != nil {
		if os.Getenv("FERRY_REQUIRE_SERVICES") == "1" {
			t.Fatal(pgErr)
		}
		t.Skip(pgErr)
	}
	return pg
}

func startPostgres() (*Postgres, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ferry-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: run the cluster as "postgres".
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a postgres user to own the test cluster: %w", err)
		}
		p.runAs = u
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := p.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	for attempt := 0; attempt < 5; attempt++ {
		p.Port = freePort()
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
			p.Port, dir)
		out, err := p.run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-w", "-t", "60", "start")
		if err == nil {
			return p, nil
		}
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		if !bytes.Contains(log, []byte("could not bind")) {
			return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
		}
	}
	return nil, fmt.Errorf("PostgreSQL could not find a free port")
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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

func (p *Postgres) run(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(p.bin, tool), args...)
	if p.runAs != nil {
		cmd = exec.Command("runuser", append([]string{"-u", p.runAs.Username, "--", filepath.Join(p.bin, tool)}, args...)...)
	}
	cmd.Dir = p.dir
	return cmd.CombinedOutput()
}

func (p *Postgres) stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(p.dir)
}

// URL is the connection URL of database db as user.
func (p *Postgres) URL(db, user string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", user, p.Port, db)
}

// CreateDatabase makes a fresh database (UTF8, C collation, as Synapse
// requires) and drops it when the test ends.
func (p *Postgres) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.URL("postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %q ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`, name)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), p.URL("postgres", "postgres"))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name))
	})
	return p.URL(name, "postgres")
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
	cmd := exec.Command(filepath.Join(p.bin, "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-X", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres", "-d", name)
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
