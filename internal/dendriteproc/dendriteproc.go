// Package dendriteproc runs a Dendrite homeserver (v0.15.2 binaries:
// dendrite, generate-config, generate-keys) as a child process on
// 127.0.0.1, with its config, key, SQLite files (or one PostgreSQL
// database), JetStream store and media in one directory. The config is the
// one an admin starts from: Dendrite's generated default (the shipped
// sample), JetStream on disk, with the few changes New lists. The tests'
// harness (internal/testrig/testenv) and `bot demo` use it.
package dendriteproc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ferry-matrix/ferry/internal/matrixadmin"
)

// Server is one Dendrite, configured and possibly running.
type Server struct {
	ServerName string
	URL        string // http://127.0.0.1:PORT once started
	Dir        string // config, keys, databases, media, log
	Secret     string // registration_shared_secret

	bin  string
	stop func()
}

// New generates a config (SQLite files under dir, or all components in
// the PostgreSQL database dbURL) and a signing key for serverName in dir.
//
// The config is Dendrite's default (generate-config without -ci, as the
// shipped dendrite-sample.yaml): JetStream on disk (in_memory: false) under
// dir, so that durable consumers and queued messages outlive a stop as they
// do for an admin, bcrypt cost 10, presence off, no MSCs. Changed from it:
// the shared-secret admin registration is on (a fixed secret), rate
// limiting is off (the tests' clients do not back off on HTTP 429), and
// Dendrite logs to stderr (its log file, LogPath) instead of a log directory.
func New(bin, dir, serverName, dbURL string) (*Server, error) {
	run := func(name string, args ...string) ([]byte, error) {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return out, nil
	}
	if _, err := run("generate-keys", "--private-key", filepath.Join(dir, "matrix_key.pem")); err != nil {
		return nil, err
	}
	args := []string{"-server", serverName, "-dir", dir}
	if dbURL != "" {
		args = append(args, "-db", dbURL)
	}
	cfg, err := run("generate-config", args...)
	if err != nil {
		return nil, err
	}
	d := &Server{ServerName: serverName, Dir: dir, Secret: "ferry-test-shared-secret-0123456789", bin: bin}
	for _, r := range []struct{ old, new string }{
		{"registration_shared_secret: \"\"", "registration_shared_secret: " + d.Secret},
		{"private_key: matrix_key.pem", "private_key: " + filepath.Join(dir, "matrix_key.pem")},
		{"  rate_limiting:\n    enabled: true", "  rate_limiting:\n    enabled: false"},
		{"logging:\n- type: file\n  level: info", "logging:\n- type: std\n  level: info"},
	} {
		if !bytes.Contains(cfg, []byte(r.old)) {
			return nil, fmt.Errorf("generate-config wrote no %q to change (not Dendrite v0.15.2?)", r.old)
		}
		cfg = bytes.Replace(cfg, []byte(r.old), []byte(r.new), 1)
	}
	if err := os.WriteFile(d.Config(), cfg, 0o600); err != nil {
		return nil, err
	}
	return d, nil
}

// Config is the path of dendrite.yaml.
func (d *Server) Config() string { return filepath.Join(d.Dir, "dendrite.yaml") }

// LogPath is where the running Dendrite logs.
func (d *Server) LogPath() string { return filepath.Join(d.Dir, "dendrite.log") }

// AddAppservice registers an appservice (its registration file goes into
// app_service_api.config_files); call it before Start.
func (d *Server) AddAppservice(registrationFile string) error {
	cfg, err := os.ReadFile(d.Config())
	if err != nil {
		return err
	}
	const empty = "  config_files: []"
	if !bytes.Contains(cfg, []byte(empty)) {
		return errors.New("dendrite.yaml: no empty app_service_api.config_files to fill (one appservice per server)")
	}
	cfg = bytes.Replace(cfg, []byte(empty), []byte("  config_files: ["+strconv.Quote(registrationFile)+"]"), 1)
	return os.WriteFile(d.Config(), cfg, 0o600)
}

// Start starts Dendrite on 127.0.0.1:port (0: a free one) and waits
// until it answers.
func (d *Server) Start(port int) error {
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return err
		}
	}
	d.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	logFile, err := os.OpenFile(d.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(d.bin, "dendrite"), "-config", d.Config(), "-http-bind-address", "127.0.0.1:"+strconv.Itoa(port))
	cmd.Dir = d.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(done) }()
	d.stop = func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(d.URL + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("dendrite exited on start:\n%s", d.LogTail(3000))
		default:
		}
		if time.Now().After(deadline) {
			d.Stop()
			return fmt.Errorf("dendrite did not start: %v\n%s", err, d.LogTail(3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops Dendrite if it runs (SIGINT, then SIGKILL after 10 s).
func (d *Server) Stop() {
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
}

// LogTail is the last n bytes of Dendrite's log.
func (d *Server) LogTail(n int) []byte {
	b, _ := os.ReadFile(d.LogPath())
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Register creates a user through the shared-secret registration admin
// API (which Dendrite implements as Synapse does) and returns its access
// token.
func (d *Server) Register(localpart, password string, admin bool) (string, error) {
	return matrixadmin.Register(d.URL, d.Secret, localpart, password, admin)
}

// Login logs a user in with a password and returns the access token, or
// the HTTP status when it fails.
func (d *Server) Login(localpart, password string) (string, int, error) {
	return matrixadmin.Login(d.URL, localpart, password)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
