package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// botHomeserver is what the bot tests need of the homeserver Ferry's bot
// is registered with: a real Dendrite or Synapse from testenv, running.
// The scenarios (botEnv's methods) are written against it alone, so that
// each runs unchanged on both.
type botHomeserver interface {
	clientURL() string
	domain() string
	Register(t testing.TB, localpart, password string, admin bool) string
	// sourceYAML is Ferry's config for this server: the homeserver's
	// implementation and the source section.
	implementation() string
	sourceYAML() string
	// exportFlags are `bot export`'s flags reading this server.
	exportFlags() []string
	// mediaDir holds the files of uploaded media.
	mediaDir() string
	// sharedHistoryToFormerMembers: under "shared" history visibility,
	// /messages shows the history from before a user joined also to one
	// who has left since (or rejected an invite), up to their leave
	// (Synapse); not only to a user who is joined now (Dendrite).
	sharedHistoryToFormerMembers() bool
}

// startHomeserver starts a homeserver for domain with the appservice
// registration in registrationFile; it is stopped when the test ends.
type startHomeserver func(t *testing.T, domain, registrationFile string) botHomeserver

// onDendrite: Dendrite v0.15.2 on SQLite, the appservice in
// app_service_api.config_files.
func onDendrite(t *testing.T, domain, registrationFile string) botHomeserver {
	d := testenv.NewDendrite(t, domain)
	d.AddAppservice(t, registrationFile)
	d.Start(t)
	return dendriteHS{d}
}

// onSynapse: Synapse 1.160 on PostgreSQL, the appservice in
// app_service_config_files.
func onSynapse(t *testing.T, domain, registrationFile string) botHomeserver {
	return synapseHS{testenv.StartSynapse(t, domain, testenv.WithAppservice(registrationFile))}
}

type dendriteHS struct{ *testenv.Dendrite }

func (d dendriteHS) clientURL() string      { return d.URL }
func (d dendriteHS) domain() string         { return d.ServerName }
func (d dendriteHS) implementation() string { return "dendrite" }
func (d dendriteHS) sourceYAML() string     { return `source: {dendrite_config: "` + d.Config() + `"}` }
func (d dendriteHS) exportFlags() []string {
	return []string{"--source", "dendrite", "--config", d.Config()}
}
func (d dendriteHS) mediaDir() string                   { return filepath.Join(d.Dir, "media") }
func (d dendriteHS) sharedHistoryToFormerMembers() bool { return false }

type synapseHS struct{ *testenv.Synapse }

func (s synapseHS) clientURL() string      { return s.URL }
func (s synapseHS) domain() string         { return s.ServerName }
func (s synapseHS) implementation() string { return "synapse" }
func (s synapseHS) sourceYAML() string {
	return `source: {database: "` + s.DB + `", media_path: "` + s.MediaStore + `", signing_key: "` + s.SigningKey +
		`", homeserver_config: "` + s.Config + `"}`
}
func (s synapseHS) exportFlags() []string {
	return []string{"--source", "synapse", "--db", s.DB, "--media-store", s.MediaStore, "--signing-key", s.SigningKey, "--synapse-config", s.Config}
}
func (s synapseHS) mediaDir() string                   { return s.MediaStore }
func (s synapseHS) sharedHistoryToFormerMembers() bool { return true }

// storedMedia finds the file under hs's media directory that holds data
// (Dendrite: media/<hash>/file; Synapse: local_content/AB/CD/rest).
func storedMedia(t *testing.T, hs botHomeserver, data []byte) string {
	t.Helper()
	var found string
	filepath.WalkDir(hs.mediaDir(), func(p string, de os.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Equal(b, data) {
				found = p
			}
		}
		return nil
	})
	if found == "" {
		t.Fatalf("found no file with the uploaded bytes under %s", hs.mediaDir())
	}
	return found
}

// The bot on a real Synapse 1.160, registered through
// app_service_config_files: the scenarios of TestBotEndToEnd that a
// homeserver's behaviour shapes (invites, transactions, edits, replies,
// redelivery after downtime, history visibility in !mydata), no key ever
// in a room, and the reply latency.
func TestBotSynapse(t *testing.T) {
	runScenarios(t, onSynapse, "export full", "cancel a running export", "schedule", "refusals", "encrypted message", "restart", "mydata", "latency")
}
