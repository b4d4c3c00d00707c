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
	"github.com/ferry-matrix/ferry/internal/testrig/clientview"
	"github.com/ferry-matrix/ferry/internal/testrig/fixturecheck"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	sdendrite "github.com/ferry-matrix/ferry/source/dendrite"
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
	_, call := served(t, ctx, func(listen, base, token string) string {
		return `homeserver: {url: "http://127.0.0.1:8008", domain: fixture.test, implementation: synapse}
appservice: {listen: "` + listen + `"}
source: {database: "` + db + `", media_path: "` + media + `", signing_key: "` + fixtureDir + `fixture.test.signing.key", homeserver_config: "` + fixtureDir + `homeserver.yaml"}
storage: {url: "file://` + filepath.Join(dir, "archives") + `", link_lifetime: 1h, link_secret_file: "` + filepath.Join(dir, "link.secret") + `"}
encryption: {recipients: ["` + id.Recipient().String() + `"]}
state: {database: "sqlite://` + filepath.Join(dir, "ferry.db") + `"}
api: {public_url: "` + base + `", tokens: [{name: ops, role: admin, token: "` + token + `"}]}
`
	})
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

// bot serve with a Dendrite source, a config-file partial schedule with
// verify, an identity file and an import target: the scheduled partial
// export runs and its archive is read back and validated by a verify job;
// an export made over the API is imported by import jobs (a dry run, then
// the real one) into a fresh, stopped Dendrite, which then holds the
// users and rooms, and into a fresh Synapse, whose users log in and find
// their rooms; /metrics counts the imports.
func TestServeScheduleVerifyAndImportJobs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const name = "jobs.ferry.test"
	src := testenv.StartDendrite(t, name)
	truth, err := seed.Run(ctx, seed.Server{URL: src.URL, ServerName: name,
		Register: func(l, pw string, admin bool) (string, error) { return src.Register(t, l, pw, admin), nil }})
	if err != nil {
		t.Fatal(err)
	}
	src.Stop()
	var room string
	for r := range truth.EventsByRoomAndType {
		room = r
		break
	}
	target := emptyDendrite(t, name)
	restore := testenv.NewSynapse(t, name)

	dir := t.TempDir()
	id, _ := age.GenerateX25519Identity()
	os.WriteFile(filepath.Join(dir, "verify.agekey"), []byte(id.String()+"\n"), 0o600)
	base, call := served(t, ctx, func(listen, base, token string) string {
		return `homeserver: {url: "http://127.0.0.1:8008", domain: ` + name + `, implementation: dendrite}
appservice: {listen: "` + listen + `"}
source: {dendrite_config: "` + src.Config() + `"}
storage: {url: "file://` + filepath.Join(dir, "archives") + `", link_lifetime: 1h, link_secret_file: "` + filepath.Join(dir, "link.secret") + `"}
encryption: {recipients: ["` + id.Recipient().String() + `"], identity_file: "` + filepath.Join(dir, "verify.agekey") + `"}
state: {database: "sqlite://` + filepath.Join(dir, "ferry.db") + `"}
api: {public_url: "` + base + `", tokens: [{name: ops, role: admin, token: "` + token + `"}]}
schedules: [{name: one-room, cron: "@every 3s", type: partial, rooms: ["` + room + `"], media: none, keep: 1, verify: true}]
import_targets:
  - {name: fresh, implementation: dendrite, config: "` + target.Config() + `"}
  - {name: restore, implementation: synapse, config: "` + restore.Config + `", database: "` + restore.DB + `",
     media_store: "` + restore.MediaStore + `", signing_key_file: "` + restore.SigningKey + `",
     update_synapse_database: "` + updateSynapseDatabase(t, restore) + `"}
`
	})
	wait := func(what string, limit time.Duration, done func() map[string]any) map[string]any {
		t.Helper()
		for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if j := done(); j != nil {
				return j
			}
		}
		t.Fatalf("%s did not happen within %s", what, limit)
		return nil
	}
	ended := func(id string) func() map[string]any {
		return func() map[string]any {
			j := call("GET", "/api/v1/jobs/"+id, "")
			if s := j["status"]; s == "completed" || s == "failed" || s == "cancelled" {
				return j
			}
			return nil
		}
	}

	// The scheduled partial export, then its verification.
	verified := wait("a verified scheduled export", 90*time.Second, func() map[string]any {
		list := call("GET", "/api/v1/jobs?kind=verify", "")
		jobs, _ := list["jobs"].([]any)
		for _, j := range jobs {
			if j := j.(map[string]any); j["status"] == "completed" || j["status"] == "failed" {
				return j
			}
		}
		return nil
	})
	if verified["status"] != "completed" || !strings.Contains(verified["result"].(string), "contents checked") ||
		!strings.HasPrefix(verified["name"].(string), "one-room-") || verified["requested_by"] != "schedule:one-room" {
		t.Fatalf("verification of the scheduled export: %v", verified)
	}

	out := call("POST", "/api/v1/exports", `{"type":"full","recipients":["`+id.Recipient().String()+`"],"name":"to-import"}`)
	exp := wait("the full export", 60*time.Second, ended(out["export_id"].(string)))
	if exp["status"] != "completed" {
		t.Fatalf("export %v", exp)
	}
	out = call("POST", "/api/v1/imports", `{"export":"`+exp["export_id"].(string)+`","target":"fresh","dry_run":true}`)
	dry := wait("the dry run", 120*time.Second, ended(out["export_id"].(string)))
	if dry["status"] != "completed" || !strings.Contains(dry["result"].(string), "nothing was written") {
		t.Fatalf("dry run %v", dry)
	}
	untouched(t, target, mustRead(t, filepath.Join(target.Dir, "matrix_key.pem")), 0)
	out = call("POST", "/api/v1/imports", `{"export":"`+exp["export_id"].(string)+`","target":"fresh"}`)
	imp := wait("the import", 5*time.Minute, ended(out["export_id"].(string)))
	if imp["status"] != "completed" || !strings.Contains(imp["result"].(string), "start Dendrite on it") {
		t.Fatalf("import %v", imp)
	}
	check, err := sdendrite.Open(ctx, target.Config())
	if err != nil {
		t.Fatal(err)
	}
	users, rooms, err := check.Census(ctx)
	check.Close()
	if err != nil || users != int64(len(truth.Users)) || rooms != int64(len(truth.EventsByRoomAndType)) {
		t.Fatalf("the target holds %d users and %d rooms (%v), want %d and %d", users, rooms, err, len(truth.Users), len(truth.EventsByRoomAndType))
	}

	// The same archive restored into a Synapse by an import job: Synapse
	// starts on it and every user logs in with their password.
	out = call("POST", "/api/v1/imports", `{"export":"`+exp["export_id"].(string)+`","target":"restore"}`)
	imp = wait("the import into Synapse", 5*time.Minute, ended(out["export_id"].(string)))
	if imp["status"] != "completed" || !strings.Contains(imp["result"].(string), "background updates ran") {
		t.Fatalf("import into Synapse %v", imp)
	}
	restore.Start(t)
	c := &clientview.Client{URL: restore.URL, ServerName: name}
	fixturecheck.Users(t, c, truth, fixturecheck.Login(t, c, truth))

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `ferry_imports{status="completed"} 3`) {
		t.Errorf("metrics lack the imports:\n%s", metrics)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// served starts bot serve (jobs, schedules, the API) on 127.0.0.1 with
// the config yaml makes from its listen address, public URL and an admin
// API token, and returns the URL and a caller of the API with that token.
func served(t *testing.T, ctx context.Context, yaml func(listen, base, token string) string) (string, func(method, path, body string) map[string]any) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	token := strings.Repeat("t", 40)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgPath, []byte(yaml(l.Addr().String(), base, token)), 0o600)
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
	t.Cleanup(svc.close)
	go svc.serve(ctx, l)
	return base, func(method, path, body string) map[string]any {
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
}
