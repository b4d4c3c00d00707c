// Package pgproc runs a private PostgreSQL cluster as a child process:
// Debian's binaries (initdb, pg_ctl), a data directory in a new temporary
// directory, listening on 127.0.0.1 on a free port, trust authentication
// for the superuser "postgres", durability off (fsync, synchronous
// commit, full page writes). As root it runs the cluster as the
// "postgres" user, since initdb refuses root. The tests (internal/testrig/testenv)
// and `bot demo --homeserver synapse` use it.
package pgproc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Cluster is one running cluster; Stop removes it.
type Cluster struct {
	// Bin is the directory of initdb, pg_ctl and psql.
	Bin  string
	Dir  string // the temporary directory: data/, log, the socket
	Port int

	runAs   *user.User // when running as root: the postgres user
	stopped bool
}

// BinDir finds initdb/pg_ctl: $FERRY_PG_BIN, then PATH, then Debian's
// /usr/lib/postgresql/<version>/bin.
func BinDir() (string, error) {
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

// Start initialises a cluster in a new temporary directory and starts it.
func Start() (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ferry-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Bin: bin, Dir: dir}
	if err := c.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start() error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a postgres user to own the cluster: %w", err)
		}
		c.runAs = u
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(c.Dir, 0o755); err != nil {
			return err
		}
		if err := os.Chown(c.Dir, uid, gid); err != nil {
			return err
		}
	}
	data := filepath.Join(c.Dir, "data")
	if out, err := c.Run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	for attempt := 0; attempt < 5; attempt++ {
		c.Port = freePort()
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
			c.Port, c.Dir)
		out, err := c.Run("pg_ctl", "-D", data, "-l", filepath.Join(c.Dir, "log"), "-o", opts, "-w", "-t", "60", "start")
		if err == nil {
			return nil
		}
		log, _ := os.ReadFile(filepath.Join(c.Dir, "log"))
		if !bytes.Contains(log, []byte("could not bind")) {
			return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
		}
	}
	return fmt.Errorf("PostgreSQL could not find a free port")
}

// Run runs one of the cluster's tools (as the postgres user when root)
// in its directory.
func (c *Cluster) Run(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.Bin, tool), args...)
	if c.runAs != nil {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs.Username, "--", filepath.Join(c.Bin, tool)}, args...)...)
	}
	cmd.Dir = c.Dir
	return cmd.CombinedOutput()
}

// Stop stops the cluster at once and removes its directory.
func (c *Cluster) Stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	c.Run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(c.Dir)
}

// URL is the connection URL of database db as user.
func (c *Cluster) URL(db, user string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", user, c.Port, db)
}

// CreateDatabase makes a fresh database (UTF8, C collation, as Synapse
// requires) and returns its URL (as the superuser).
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres", "postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %q ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`, name)); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return c.URL(name, "postgres"), nil
}

// DropDatabase drops a database, closing its connections.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres", "postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name))
	return err
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
