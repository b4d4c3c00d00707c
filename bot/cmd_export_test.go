package bot

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/commands"
	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sources"
	"github.com/ferry-matrix/ferry/store"
)

// `!export partial --since` on a Dendrite is refused when it is sent,
// with the message the API and the CLI give, and nothing is queued (it
// used to be accepted, then fail at run time and be retried).
func TestExportRefusesUnsupportedSelection(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+t.TempDir()+"/ferry.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	caps, err := sources.Capabilities(sources.Dendrite)
	if err != nil {
		t.Fatal(err)
	}
	svc := &jobs.Service{Store: st, Capabilities: func(string) (source.Capabilities, error) { return caps, nil }}
	cfg := &config.Config{}
	cfg.Homeserver.Implementation = sources.Dendrite
	cfg.Encryption.AdminRecipients = map[string][]string{"@admin:x": {"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}}
	b := &Bot{cfg: cfg, jobs: svc}
	var reg commands.Registry
	reg.Add(b.cmdExportPartial())
	inv, err := reg.Parse("!export partial --rooms !a:x --since 2026-01-01")
	if err != nil {
		t.Fatal(err)
	}
	inv.Sender, inv.RoomID, inv.EventID = "@admin:x", "!admins:x", "$cmd"
	want := exporter.Selection{Type: exporter.TypePartial, Rooms: []string{"!a:x"}, Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}.Check(caps)
	_, err = inv.Command.Run(ctx, inv)
	if !errors.Is(err, source.ErrUnsupported) || !strings.HasSuffix(err.Error(), want.Error()) {
		t.Fatalf("!export partial --since on Dendrite: %v, want %v", err, want)
	}
	if list, _ := st.ListJobs(ctx, "", 10); len(list) != 0 {
		t.Errorf("%d jobs queued", len(list))
	}
}
