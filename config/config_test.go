package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The embedded example parses strictly; the only things Validate refuses in
// it are the token placeholders an admin must replace.
func TestExampleParsesAndOnlyPlaceholdersFail(t *testing.T) {
	c, err := Parse(Example)
	if err != nil {
		t.Fatal(err)
	}
	if c.Homeserver.Domain != "example.org" || len(c.Schedules) != 1 || c.Schedules[0].Keep != 7 || c.Storage.LinkLifetime == 0 ||
		c.State.KeyFile != "/var/lib/ferry/state.key" || len(c.API.TrustedProxies) != 2 {
		t.Fatalf("example decoded wrongly: %+v", c)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("placeholders accepted")
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.Contains(line, "placeholder") {
			t.Errorf("unexpected problem in the example: %s", line)
		}
	}
	c.Appservice.ASToken = Secret(strings.Repeat("a", 40))
	c.Appservice.HSToken = Secret(strings.Repeat("b", 40))
	c.API.Tokens[0].Token = Secret(strings.Repeat("c", 40))
	if err := c.Validate(); err != nil {
		t.Fatalf("example with real tokens: %v", err)
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, err := Parse([]byte("homeserver:\n  url: http://x\n  domian: typo.org\n"))
	if err == nil || !strings.Contains(err.Error(), "domian") {
		t.Fatalf("error = %v", err)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	c, err := Parse([]byte(`
homeserver: {url: "ftp://x", domain: "", implementation: conduit}
admins: {users: ["bob"], rooms: ["#alias:x"]}
encryption: {recipients: ["age1notakey"]}
schedules: [{cron: "* *", type: weekly}, {name: a, cron: "@every 1h", type: partial}, {name: b, cron: "@daily", type: full, rooms: ["!r:x"]},
  {name: c, cron: "0 3 * * *", type: partial, rooms: ["#alias:x"], users: ["bob"], media: some}]
import_targets: [{name: t, implementation: conduit}, {name: t, implementation: dendrite, config: d.yaml}, {name: s, implementation: synapse}]
api: {trusted_proxies: [localhost]}
storage: {import_from: ["/not/a/url"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	msg := c.Validate().Error()
	for _, key := range []string{"homeserver.url", "homeserver.domain", "homeserver.implementation", "appservice.as_token",
		"admins.users", "admins.rooms", "encryption.recipients", "schedules[0].cron", "schedules[0].type",
		"schedules[1].rooms", "schedules[2].type", "schedules[3].rooms[0]", "schedules[3].users[0]", "schedules[3].media",
		"import_targets[0].implementation", "import_targets[1].name", "import_targets[2].config", "import_targets[2].database", "import_targets[2].media_store", "api.trusted_proxies", "storage.import_from[0]"} {
		if !strings.Contains(msg, key+":") {
			t.Errorf("no problem reported for %s in:\n%s", key, msg)
		}
	}
}

func TestSecretsDoNotPrint(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "as.token")
	os.WriteFile(tok, []byte("supersecretastoken-0123456789abcdef\n"), 0o600)
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte("appservice:\n  as_token_file: "+tok+"\nsource:\n  database: postgres://u:hunter2@db/synapse\n"), 0o600)
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Appservice.ASToken != "supersecretastoken-0123456789abcdef" {
		t.Fatalf("token file not read: %q", string(c.Appservice.ASToken))
	}
	for _, format := range []string{"%v", "%+v", "%s", "%#v"} {
		out := fmt.Sprintf(format, c)
		if strings.Contains(out, "supersecret") || strings.Contains(out, "hunter2") {
			t.Errorf("%s prints a secret: %s", format, out)
		}
	}
}
