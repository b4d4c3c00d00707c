package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/internal/testrig/seed"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// readmeCommands returns the command lines of README.md's CLI section:
// continuation lines joined, comments and optional [...] parts left out.
func readmeCommands(t *testing.T) [][]string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## CLI\n")
	_, block, ok2 := strings.Cut(section, "```sh\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no ```sh block under ## CLI")
	}
	comment := regexp.MustCompile(`\s#.*$`)
	optional := regexp.MustCompile(`\[[^\]]*\]`)
	var out [][]string
	var line string
	for _, l := range strings.Split(block, "\n") {
		l = comment.ReplaceAllString(l, "")
		if cont, ok := strings.CutSuffix(strings.TrimRight(l, " "), "\\"); ok {
			line += cont + " "
			continue
		}
		line += l
		if fields := strings.Fields(optional.ReplaceAllString(line, "")); len(fields) > 0 {
			out = append(out, fields)
		}
		line = ""
	}
	return out
}

// README.md's CLI examples run as written, in a new directory, with their
// placeholders replaced by what the test brings up: the real Synapse
// fixture for the Synapse database, media store, signing key and
// homeserver.yaml; a seeded Dendrite as the export source and empty ones
// as import and migration targets (/etc/dendrite/dendrite.yaml); a fresh
// age identity (id.txt, age1...). bot archive verify of the packed
// backup.ferry finds its key file beside it. bot serve is started and
// stopped; bot run needs a homeserver that knows the registration, and is
// covered by TestBotEndToEnd.
func TestREADMEExamples(t *testing.T) {
	ctx := context.Background()
	lines := readmeCommands(t)
	if len(lines) < 10 {
		t.Fatalf("README.md's CLI section has %d command lines", len(lines))
	}
	fixture, _ := filepath.Abs(fixtureDir)
	db, media := synapseFixture(t)

	const name = "readme.ferry.test"
	source := testenv.StartDendrite(t, name)
	if _, err := seed.Run(ctx, seed.Server{URL: source.URL, ServerName: name,
		Register: func(l, pw string, admin bool) (string, error) { return source.Register(t, l, pw, admin), nil }}); err != nil {
		t.Fatal(err)
	}
	source.Stop()
	importTarget := emptyDendrite(t, name)
	restoreTarget := testenv.NewSynapse(t, "fixture.test") // backup.ferry is the fixture's
	migrateTarget := emptyDendrite(t, "fixture.test")      // the fixture's server name

	dir := t.TempDir()
	t.Chdir(dir)
	identity, _ := age.GenerateX25519Identity()
	writeFile(t, "id.txt", []byte(identity.String()+"\n"))
	// ARCHIVE of decrypt: an encrypted archive without secrets (a full
	// export holds password hashes, which decrypt keeps out of plaintext);
	// ARCHIVE of pack: one in stored form.
	sampleKey := keywrap.New()
	sampleID := archivetest.WriteSample(t, "sample", sampleKey, 5)
	wrapped, err := keywrap.Wrap(sampleKey, sampleID, identity.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join("sample", "key.age"), wrapped)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	writeFile(t, "config.yaml", []byte(`homeserver: {url: "http://127.0.0.1:8008", domain: `+name+`, implementation: dendrite}
appservice: {address: "http://`+listen+`", listen: "`+listen+`", id: ferry, bot_localpart: ferry, as_token: readme-as-token-1, hs_token: readme-hs-token-2}
admins: {users: ["@admin:`+name+`"]}
source: {dendrite_config: "`+source.Config()+`"}
storage: {url: "file://`+filepath.Join(dir, "archives")+`", link_lifetime: 1h, link_secret_file: "`+filepath.Join(dir, "link.secret")+`"}
encryption: {recipients: ["`+identity.Recipient().String()+`"]}
state: {database: "sqlite://`+filepath.Join(dir, "ferry.db")+`"}
`))

	archiveFor := map[string]string{"inspect": "backup.ferry", "verify": "backup.ferry", "decrypt": "sample", "extract": "plain.ferry", "pack": "sample"}
	ran := map[string]bool{}
	for _, words := range lines {
		if words[0] != "bot" {
			continue // go build: the test runs the commands in-process
		}
		args := words[1:]
		verb := args[0]
		if args[0] == "archive" {
			verb = "archive " + args[1]
		}
		synapseTarget := verb == "import" && slices.Contains(args, "synapse")
		for i, a := range args {
			prev := ""
			if i > 0 {
				prev = args[i-1]
			}
			switch {
			case verb == "archive keygen" && prev == "-o":
				args[i] = "new-identity.txt" // id.txt is the test's own identity, which the archives are encrypted to
			case a == "age1...":
				args[i] = identity.Recipient().String()
			case strings.HasPrefix(a, "postgres://") && synapseTarget:
				args[i] = restoreTarget.DB
			case a == "/var/lib/matrix-synapse/media":
				args[i] = restoreTarget.MediaStore
			case a == "/etc/matrix-synapse/homeserver.yaml":
				args[i] = restoreTarget.Config
			case strings.HasPrefix(a, "postgres://"):
				args[i] = db
			case a == "/var/lib/synapse/media_store" || prev == "--media-store" && a == "...":
				args[i] = media
			case a == "/etc/synapse/example.org.signing.key" || prev == "--signing-key" && a == "...":
				args[i] = filepath.Join(fixture, "fixture.test.signing.key")
			case a == "/etc/synapse/homeserver.yaml" || a == "homeserver.yaml":
				args[i] = filepath.Join(fixture, "homeserver.yaml")
			case a == "/etc/dendrite/dendrite.yaml":
				args[i] = map[string]string{"export": source.Config(), "import": importTarget.Config(), "migrate": migrateTarget.Config()}[verb]
			case a == "ARCHIVE":
				args[i] = archiveFor[args[1]]
			case a == "OUT":
				args[i] = "plain.ferry"
			case a == "DIR":
				args[i] = "extracted"
			case a == "A" || a == "B":
				args[i] = "plain.ferry"
			}
		}
		if synapseTarget {
			// The test Synapse runs in a chroot: its signing_key_path is a
			// path inside it.
			args = append([]string{args[0], "--signing-key-file", restoreTarget.SigningKey}, args[1:]...)
		}
		t.Logf("bot %s", strings.Join(args, " "))
		var stdout bytes.Buffer
		switch verb {
		case "run":
			continue
		case "serve":
			serveBriefly(t, ctx, args, listen)
		default:
			if err := execute(ctx, args, &stdout, &stdout); err != nil {
				t.Fatalf("bot %s: %v\n%s", strings.Join(args, " "), err, stdout.String())
			}
		}
		ran[verb] = true
		if verb == "archive verify" && !strings.Contains(stdout.String(), "ok: every check passed") {
			t.Errorf("verify printed:\n%s", stdout.String())
		}
		if verb == "archive keygen" && !strings.HasPrefix(stdout.String(), "age1") {
			t.Errorf("keygen printed %q, want the recipient", stdout.String())
		}
	}
	for _, verb := range []string{"export", "import", "migrate", "generate-registration", "serve", "archive keygen", "archive inspect", "archive verify",
		"archive decrypt", "archive extract", "archive diff", "archive pack"} {
		if !ran[verb] {
			t.Errorf("README.md shows no bot %s", verb)
		}
	}
	if c := census(t, importTarget); c[0] == 0 || c[1] == 0 {
		t.Errorf("the import target holds %d users and %d rooms", c[0], c[1])
	}
	if c := census(t, migrateTarget); c[0] == 0 {
		t.Error("the migration target holds no users")
	}
}

// serveBriefly runs bot serve until its API answers, then stops it.
func serveBriefly(t *testing.T, ctx context.Context, args []string, listen string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- execute(ctx, args, os.Stderr, os.Stderr) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://%s/healthz", listen))
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("bot %s ended: %v", strings.Join(args, " "), err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("bot %s did not answer on %s", strings.Join(args, " "), listen)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("bot %s: %v", strings.Join(args, " "), err)
	}
}
