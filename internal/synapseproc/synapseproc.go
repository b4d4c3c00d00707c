// Package synapseproc runs a Synapse homeserver as a child process: Debian's
// matrix-synapse package installed in a chroot (scripts/lib/synapse.sh
// builds it, about 740 MB, cached by version). It writes a homeserver.yaml
// an admin would recognise (PostgreSQL, a media store, shared-secret
// registration, no federation listener), initialises the schema without
// starting the server (update_synapse_database), starts Synapse on a
// 127.0.0.1 port and stops it. Synapse shares the host's loopback, so it
// reaches the PostgreSQL the caller names on 127.0.0.1.
//
// The server's files live in a work directory inside the chroot (its /tmp):
// Server's host paths (Dir, Config, MediaStore, SigningKey) and Inside give
// the same files as the host and as Synapse see them.
package synapseproc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The Synapse that Ferry's Synapse target is written against: Debian
// unstable's matrix-synapse, and the database schema it creates.
// scripts/lib/synapse.sh installs it and names the same version.
const (
	SupportedVersion = "1.160.0"
	SupportedSchema  = 94
)

// Version reads the version of the Synapse installed in chroot (from its
// Python package metadata, matrix_synapse-<version>.dist-info).
func Version(chroot string) (string, error) {
	matches, _ := filepath.Glob(filepath.Join(chroot, "usr", "lib", "python3", "dist-packages", "matrix_synapse-*.dist-info"))
	if len(matches) != 1 {
		return "", fmt.Errorf("no single Synapse installed in the chroot %q (scripts/lib/synapse.sh builds it): found %d", chroot, len(matches))
	}
	v := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(matches[0]), "matrix_synapse-"), ".dist-info")
	return v, nil
}

// Options say which Synapse to run.
type Options struct {
	// Chroot is the root of the chroot holding matrix-synapse.
	Chroot     string
	ServerName string
	// Database is the PostgreSQL URL of an empty database (UTF8, C
	// collation) on 127.0.0.1: postgres://user[:password]@127.0.0.1:PORT/NAME.
	Database string
	// Port of the client-server listener; 0 picks a free one.
	Port int
	// AppServices are registration files (host paths) copied into the work
	// directory and listed in app_service_config_files.
	AppServices []string
	// Extra is YAML appended to homeserver.yaml as it is (top-level keys).
	Extra string
}

// Server is one Synapse: configured by New, running between Start and Stop.
type Server struct {
	ServerName string
	URL        string // http://127.0.0.1:PORT
	Port       int
	// Secret is registration_shared_secret.
	Secret string
	// Host paths of the work directory and its files.
	Dir, Config, MediaStore, SigningKey, Log string

	chroot string
	cmd    *exec.Cmd
	exited chan struct{}
}

// New writes a work directory with homeserver.yaml, a log configuration
// and a fresh signing key. It neither initialises the database nor starts
// Synapse.
func New(ctx context.Context, o Options) (*Server, error) {
	if _, err := os.Stat(filepath.Join(o.Chroot, "usr", "lib", "python3", "dist-packages", "synapse")); err != nil {
		return nil, fmt.Errorf("no Synapse in the chroot %q (scripts/lib/synapse.sh builds it): %w", o.Chroot, err)
	}
	db, err := databaseArgs(o.Database)
	if err != nil {
		return nil, err
	}
	if o.Port == 0 {
		if o.Port, err = freePort(); err != nil {
			return nil, err
		}
	}
	tmp := filepath.Join(o.Chroot, "tmp")
	if err := os.MkdirAll(tmp, 0o1777); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tmp, "ferry-synapse-")
	if err != nil {
		return nil, err
	}
	s := &Server{ServerName: o.ServerName, Port: o.Port, URL: fmt.Sprintf("http://127.0.0.1:%d", o.Port), Secret: randomHex(24),
		Dir: dir, Config: filepath.Join(dir, "homeserver.yaml"), MediaStore: filepath.Join(dir, "media_store"),
		SigningKey: filepath.Join(dir, "signing.key"), Log: filepath.Join(dir, "homeserver.log"), chroot: o.Chroot}
	if err := os.Mkdir(s.MediaStore, 0o755); err != nil {
		return nil, err
	}
	var appservices []string
	for i, reg := range o.AppServices {
		data, err := os.ReadFile(reg)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, fmt.Sprintf("appservice-%d.yaml", i))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return nil, err
		}
		appservices = append(appservices, s.Inside(p))
	}
	logConfig := filepath.Join(dir, "log.yaml")
	if err := os.WriteFile(logConfig, []byte(fmt.Sprintf(logYAML, s.Inside(s.Log))), 0o644); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(homeserverYAML, o.ServerName, s.Inside(filepath.Join(dir, "homeserver.pid")), s.URL, o.Port,
		db, s.Inside(logConfig), s.Inside(s.MediaStore), s.Secret, randomHex(24), randomHex(24), s.Inside(s.SigningKey))
	if len(appservices) > 0 {
		cfg += "app_service_config_files:\n"
		for _, p := range appservices {
			cfg += fmt.Sprintf("  - %q\n", p)
		}
	}
	cfg += o.Extra
	if err := os.WriteFile(s.Config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if out, err := s.run(ctx, "python3", "-m", "synapse.app.homeserver", "-c", s.Inside(s.Config), "--generate-keys"); err != nil {
		return nil, fmt.Errorf("generate Synapse's signing key: %v\n%s", err, out)
	}
	return s, nil
}

// Inside is hostPath (a path under the chroot) as Synapse sees it.
func (s *Server) Inside(hostPath string) string {
	rel, err := filepath.Rel(s.chroot, hostPath)
	if err != nil || strings.HasPrefix(rel, "..") {
		return hostPath
	}
	return "/" + filepath.ToSlash(rel)
}

// InitSchema creates Synapse's schema in the empty database without
// starting the server, as `update_synapse_database --database-config`
// does for an admin (background updates stay pending).
func (s *Server) InitSchema(ctx context.Context) error {
	if out, err := s.run(ctx, "update_synapse_database", "--database-config", s.Inside(s.Config)); err != nil {
		return fmt.Errorf("update_synapse_database: %v\n%s", err, out)
	}
	return nil
}

// RunBackgroundUpdates runs every pending background update to the end
// (update_synapse_database --run-background-updates), with Synapse stopped.
func (s *Server) RunBackgroundUpdates(ctx context.Context) error {
	if out, err := s.run(ctx, "update_synapse_database", "--database-config", s.Inside(s.Config), "--run-background-updates"); err != nil {
		return fmt.Errorf("update_synapse_database --run-background-updates: %v\n%s", err, out)
	}
	return nil
}

// Start starts Synapse and waits until /health answers (or it exits, or
// ctx ends).
func (s *Server) Start(ctx context.Context) error {
	if s.cmd != nil {
		return errors.New("synapse is already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("chroot", s.chroot, "python3", "-m", "synapse.app.homeserver", "-c", s.Inside(s.Config))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start synapse: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(s.exited) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if resp, err := http.Get(s.URL + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-s.exited:
			s.cmd = nil
			return fmt.Errorf("synapse exited while starting:\n%s", s.LogTail(4000))
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("synapse did not answer on %s within 90 s:\n%s", s.URL, s.LogTail(4000))
		}
	}
}

// Stop stops Synapse (SIGTERM, then SIGKILL after 20 s) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// Remove stops Synapse and deletes its work directory.
func (s *Server) Remove() error {
	s.Stop()
	return os.RemoveAll(s.Dir)
}

// LogTail is the end of Synapse's log and output, n bytes of each at most.
func (s *Server) LogTail(n int) string {
	var b strings.Builder
	for _, p := range []string{filepath.Join(s.Dir, "stdout.log"), s.Log} {
		data, _ := os.ReadFile(p)
		if len(data) > n {
			data = data[len(data)-n:]
		}
		b.Write(data)
	}
	return b.String()
}

func (s *Server) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, "chroot", append([]string{s.chroot, name}, args...)...).CombinedOutput()
}

// databaseArgs turns a PostgreSQL URL into homeserver.yaml's psycopg2
// arguments (indented for the database section).
func databaseArgs(dbURL string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" || len(u.Path) < 2 {
		return "", fmt.Errorf("database %q: want postgres://user@127.0.0.1:PORT/NAME", dbURL)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, "5432"
	}
	args := fmt.Sprintf("    user: %q\n    host: %q\n    port: %s\n    database: %q\n    cp_min: 1\n    cp_max: 5\n",
		u.User.Username(), host, port, strings.TrimPrefix(u.Path, "/"))
	if pw, ok := u.User.Password(); ok {
		args += fmt.Sprintf("    password: %q\n", pw)
	}
	return args, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// homeserverYAML: a single-process Synapse as an admin runs it behind a
// reverse proxy, with shared-secret registration for provisioning and the
// rate limits raised for test clients that send in bursts.
const homeserverYAML = `server_name: %q
pid_file: %q
public_baseurl: "%s/"
listeners:
  - port: %d
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: true
    resources:
      - names: [client]
        compress: false
database:
  name: psycopg2
  args:
%slog_config: %q
media_store_path: %q
registration_shared_secret: %q
macaroon_secret_key: %q
form_secret: %q
signing_key_path: %q
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: false
# Any user may publish rooms in the directory (Synapse's default: admins only).
room_list_publication_rules:
  - action: allow
rc_message:
  per_second: 1000
  burst_count: 1000
rc_registration:
  per_second: 1000
  burst_count: 1000
rc_login:
  address: {per_second: 1000, burst_count: 1000}
  account: {per_second: 1000, burst_count: 1000}
  failed_attempts: {per_second: 1000, burst_count: 1000}
rc_joins:
  local: {per_second: 1000, burst_count: 1000}
  remote: {per_second: 1000, burst_count: 1000}
rc_invites:
  per_room: {per_second: 1000, burst_count: 1000}
  per_user: {per_second: 1000, burst_count: 1000}
`

const logYAML = `version: 1
formatters:
  precise:
    format: '%%(asctime)s - %%(name)s - %%(lineno)d - %%(levelname)s - %%(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: %q
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
`
