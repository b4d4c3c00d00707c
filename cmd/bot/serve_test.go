package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/config"
)

// bot serve end to end on the Synapse fixture: an export requested over
// the API runs as a job, completes, and its download link yields an
// archive that verifies with the admin's identity.
func TestServeExportsOverTheAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, media := synapseFixture(t)
	dir := t.TempDir()
	id, _ := age.GenerateX25519Identity()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	token := strings.Repeat("t", 40)
	yaml := `homeserver: {url: "http://127.0.0.1:8008", domain: fixture.test, implementation: synapse}
appservice: {listen: "` + l.Addr().String() + `"}
source: {database: "` + db + `", media_path: "` + media + `", signing_key: "` + fixtureDir + `fixture.test.signing.key", homeserver_config: "` + fixtureDir + `homeserver.yaml"}
storage: {url: "file://` + filepath.Join(dir, "archives") + `", link_lifetime: 1h, link_secret_file: "` + filepath.Join(dir, "link.secret") + `"}
encryption: {recipients: ["` + id.Recipient().String() + `"]}
state: {database: "sqlite://` + filepath.Join(dir, "ferry.db") + `"}
api: {public_url: "` + base + `", tokens: [{name: ops, role: admin, token: "` + token + `"}]}
`
	cfgPath := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgPath, []byte(yaml), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ValidateService(); err != nil {
		t.Fatal(err)
	}
	svc, err := newService(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	go svc.serve(ctx, l)

	call := func(method, path, body string) map[string]any {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	out := call("POST", "/api/v1/exports", `{"type":"full","recipients":["`+id.Recipient().String()+`"],"name":"fixture-full"}`)
	exportID, _ := out["export_id"].(string)
	if exportID == "" {
		t.Fatalf("create: %v", out)
	}
	var status map[string]any
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		status = call("GET", "/api/v1/exports/"+exportID, "")
		if status["status"] == "completed" || status["status"] == "failed" {
			break
		}
	}
	if status["status"] != "completed" {
		t.Fatalf("status %v", status)
	}
	link := status["link"].(string)
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	keyFile, err := os.ReadFile(filepath.Join(dir, "archives", "archives", "fixture-full.ferry.key.age"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := container.OpenPack("download", bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := archive.Open(ctx, src, archive.OpenOptions{KeyFile: keyFile, Identities: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := archive.Validate(ctx, r)
	if err != nil || !rep.OK() || rep.Events != 1630 || rep.Blobs != 43 {
		t.Fatalf("downloaded archive: %v %+v", err, rep)
	}
}
