package testenv

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Dendrite is a running Dendrite homeserver (v0.15.2, built by
// scripts/test into $FERRY_DENDRITE_DIR: dendrite, generate-config,
// generate-keys), on SQLite files in a temporary directory, listening on
// 127.0.0.1 only, federation off.
type Dendrite struct {
	ServerName string
	URL        string // http://127.0.0.1:PORT
	Dir        string // config, keys, databases, media
	Secret     string // registration_shared_secret

	bin  string
	stop func()
}

// StartDendrite generates a config and keys for serverName and starts
// Dendrite; it is stopped when the test ends.
func StartDendrite(t testing.TB, serverName string) *Dendrite {
	t.Helper()
	d := NewDendrite(t, serverName)
	d.Start(t)
	return d
}

// NewDendrite generates a config (SQLite files, media and JetStream under
// Dir) and a signing key for serverName, without starting Dendrite: an
// import target, or a server to Start later.
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
	dir := t.TempDir()
	run := func(name string, args ...string) []byte {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return out
	}
	run("generate-keys", "--private-key", filepath.Join(dir, "matrix_key.pem"))
	args := []string{"-ci", "-server", serverName, "-dir", dir}
	if dbURL != "" {
		args = append(args, "-db", dbURL)
	}
	cfg := run("generate-config", args...)
	d := &Dendrite{ServerName: serverName, Dir: dir, Secret: "ferry-test-shared-secret-0123456789", bin: bin}
	cfg = bytes.Replace(cfg, []byte("registration_disabled: false"), []byte("registration_disabled: true"), 1)
	cfg = bytes.Replace(cfg, []byte("registration_shared_secret: complement"), []byte("registration_shared_secret: "+d.Secret), 1)
	cfg = bytes.Replace(cfg, []byte("private_key: matrix_key.pem"), []byte("private_key: "+filepath.Join(dir, "matrix_key.pem")), 1)
	if err := os.WriteFile(d.Config(), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

// AddAppservice registers an appservice with Dendrite (the registration
// file goes into app_service_api.config_files); call it before Start.
func (d *Dendrite) AddAppservice(t testing.TB, registrationFile string) {
	t.Helper()
	cfg, err := os.ReadFile(d.Config())
	if err != nil {
		t.Fatal(err)
	}
	const empty = "  config_files: []"
	if !bytes.Contains(cfg, []byte(empty)) {
		t.Fatal("dendrite.yaml: no empty app_service_api.config_files to fill (one appservice per test server)")
	}
	cfg = bytes.Replace(cfg, []byte(empty), []byte("  config_files: ["+strconv.Quote(registrationFile)+"]"), 1)
	if err := os.WriteFile(d.Config(), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Config is the path of dendrite.yaml.
func (d *Dendrite) Config() string { return filepath.Join(d.Dir, "dendrite.yaml") }

// Start starts Dendrite on a free loopback port and waits until it
// answers; it is stopped when the test ends (or by Stop).
func (d *Dendrite) Start(t testing.TB) {
	t.Helper()
	port := FreePort(t)
	d.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	logFile, err := os.OpenFile(filepath.Join(d.Dir, "dendrite.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(d.bin, "dendrite"), "-config", d.Config(), "-http-bind-address", "127.0.0.1:"+strconv.Itoa(port))
	cmd.Dir = d.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
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
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(d.Dir, "dendrite.log"))
			t.Logf("dendrite log (tail):\n%s", tail(log, 3000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(d.URL + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(d.Dir, "dendrite.log"))
			t.Fatalf("dendrite exited on start:\n%s", tail(log, 3000))
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(d.Dir, "dendrite.log"))
			t.Fatalf("dendrite did not start: %v\n%s", err, tail(log, 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops Dendrite if it runs (SIGINT, then SIGKILL after 10 s).
func (d *Dendrite) Stop() {
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Register creates a user through the shared-secret registration admin
// API (which Dendrite implements as Synapse does) and returns its access
// token.
func (d *Dendrite) Register(t testing.TB, localpart, password string, admin bool) string {
	t.Helper()
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	resp, err := http.Get(d.URL + "/_synapse/admin/v1/register")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&nonce)
	resp.Body.Close()
	adminFlag := "notadmin"
	if admin {
		adminFlag = "admin"
	}
	mac := hmac.New(sha1.New, []byte(d.Secret))
	mac.Write([]byte(strings.Join([]string{nonce.Nonce, localpart, password, adminFlag}, "\x00")))
	body, _ := json.Marshal(map[string]any{"nonce": nonce.Nonce, "username": localpart, "password": password, "admin": admin,
		"mac": hex.EncodeToString(mac.Sum(nil))})
	resp, err = http.Post(d.URL+"/_synapse/admin/v1/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || out.AccessToken == "" {
		t.Fatalf("register %s: %d %s", localpart, resp.StatusCode, out.Error)
	}
	return out.AccessToken
}

// Login logs a user in with a password and returns the access token, or
// the HTTP status when it fails.
func (d *Dendrite) Login(localpart, password string) (string, int, error) {
	body, _ := json.Marshal(map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": localpart}, "password": password})
	resp, err := http.Post(d.URL+"/_matrix/client/v3/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		return "", resp.StatusCode, fmt.Errorf("login %s: HTTP %d", localpart, resp.StatusCode)
	}
	return out.AccessToken, 200, nil
}
