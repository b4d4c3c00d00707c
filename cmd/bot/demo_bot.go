package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"filippo.io/age"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/config"
	"github.com/ferry-matrix/ferry/internal/dendriteproc"
)

// runBotDemo is the main job end to end on the embedded defaults: a real
// homeserver (Dendrite on one SQLite file, or Synapse on a private
// PostgreSQL cluster), Ferry's bot with its SQLite job store and file://
// storage, an admin with a room of history who types `!export full`,
// watches the progress message, downloads the archive through the link
// and verifies it with their own key. Everything lives in one temporary
// directory (Synapse's files in the chroot's /tmp), removed at the end
// (unless keep).
func runBotDemo(ctx context.Context, start startDemoHomeserver, keep bool) (err error) {
	dir, err := os.MkdirTemp("", "ferry-demo-")
	if err != nil {
		return err
	}
	step := func(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }
	defer func() {
		if keep || err != nil {
			fmt.Printf("(kept %s)\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	const domain = "demo.localhost"
	ferryPort, err := dendriteproc.FreePort()
	if err != nil {
		return err
	}
	ferryURL := fmt.Sprintf("http://127.0.0.1:%d", ferryPort)
	cfg := &config.Config{Homeserver: config.Homeserver{Domain: domain},
		Appservice: config.Appservice{Address: ferryURL, ID: "ferry", BotLocalpart: "ferry", ASToken: config.Secret(randomHex()), HSToken: config.Secret(randomHex())}}
	reg, err := cfg.RegistrationYAML()
	if err != nil {
		return err
	}
	regFile := filepath.Join(dir, "registration.yaml")
	if err := os.WriteFile(regFile, reg, 0o600); err != nil {
		return err
	}
	hs, err := start(ctx, dir, domain, regFile, step)
	if err != nil {
		return err
	}
	defer func() { hs.stop(keep || err != nil) }()
	password := randomHex()[:20]
	tok, err := hs.register("admin", password, true)
	if err != nil {
		return err
	}
	admin, err := mautrix.NewClient(hs.url, id.NewUserID("admin", domain), tok)
	if err != nil {
		return err
	}
	room, err := admin.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Ferry admins"})
	if err != nil {
		return err
	}
	for i := 1; i <= 20; i++ {
		if _, err := admin.SendText(ctx, room.RoomID, fmt.Sprintf("some history, message %d", i)); err != nil {
			return err
		}
	}
	step("registered @admin:%s, created the admin room %s with 20 messages", domain, room.RoomID)

	identity, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	idFile := filepath.Join(dir, "admin-identity.txt")
	os.WriteFile(idFile, []byte(identity.String()+"\n"), 0o600)
	yaml := fmt.Sprintf(`homeserver: {url: %q, domain: %s, implementation: %s}
appservice: {address: %q, listen: "127.0.0.1:%d", as_token: %q, hs_token: %q}
admins: {users: ["@admin:%s"], rooms: [%q]}
%s
storage: {url: "file://%s", link_lifetime: 1h, link_secret_file: %q}
encryption: {admin_recipients: {"@admin:%s": [%q]}}
state: {database: "sqlite://%s"}
`, hs.url, domain, hs.implementation, ferryURL, ferryPort, string(cfg.Appservice.ASToken), string(cfg.Appservice.HSToken), domain, room.RoomID, hs.sourceYAML,
		filepath.Join(dir, "archives"), filepath.Join(dir, "link.secret"), domain, identity.Recipient(), filepath.Join(dir, "ferry.db"))
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return err
	}
	step("starting Ferry: bot run -c %s (SQLite job store, file:// storage; logs in %s)", cfgPath, filepath.Join(dir, "ferry.log"))
	botCtx, stopBot := context.WithCancel(ctx)
	botDone := make(chan struct{})
	var botErr error
	go func() {
		botErr = runBot(botCtx, cfgPath, false, filepath.Join(dir, "ferry.log"))
		close(botDone)
	}()
	defer func() { stopBot(); <-botDone }()

	botID := id.NewUserID("ferry", domain)
	if _, err := admin.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: botID}); err != nil {
		return err
	}
	since := ""
	var progressID id.EventID
	var cmdID id.EventID
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-botDone:
			return fmt.Errorf("the bot stopped: %v", botErr)
		default:
		}
		resp, err := admin.SyncRequest(ctx, 5000, since, "", false, "")
		if err != nil {
			return err
		}
		since = resp.NextBatch
		for _, evt := range resp.Rooms.Join[room.RoomID].Timeline.Events {
			evt.Content.ParseRaw(evt.Type)
			if evt.Type == event.StateMember && evt.GetStateKey() == botID.String() && evt.Content.AsMember().Membership == event.MembershipJoin && cmdID == "" {
				step("the bot joined; the admin sends: !export full")
				r, err := admin.SendText(ctx, room.RoomID, "!export full")
				if err != nil {
					return err
				}
				cmdID = r.EventID
			}
			msg := evt.Content.AsMessage()
			if evt.Sender != botID || evt.Type != event.EventMessage || msg == nil {
				continue
			}
			switch {
			case msg.NewContent != nil:
				fmt.Printf("    (edited) %s\n", strings.ReplaceAll(msg.NewContent.Body, "\n", "\n             "))
			case msg.RelatesTo != nil && msg.RelatesTo.GetReplyTo() == cmdID:
				progressID = evt.ID
				fmt.Printf("    bot: %s\n", strings.ReplaceAll(msg.Body, "\n", "\n         "))
			case msg.RelatesTo != nil && msg.RelatesTo.GetReplyTo() == progressID && progressID != "":
				fmt.Printf("    bot: %s\n", strings.ReplaceAll(msg.Body, "\n", "\n         "))
				return demoDownload(ctx, msg.Body, dir, idFile, step)
			}
		}
	}
	return errors.New("no completion notice within 3 minutes")
}

// demoDownload fetches the two links of a completion notice and verifies
// the archive with the admin's identity.
func demoDownload(ctx context.Context, notice, dir, idFile string, step func(string, ...any)) error {
	urls := regexp.MustCompile(`https?://\S+`).FindAllString(notice, -1)
	if len(urls) < 2 {
		return fmt.Errorf("the completion notice has no links: %q", notice)
	}
	archiveFile, keyFile := filepath.Join(dir, "download.ferry"), filepath.Join(dir, "download.ferry.key.age")
	for i, f := range []string{archiveFile, keyFile} {
		resp, err := http.Get(urls[i])
		if err != nil {
			return err
		}
		out, _ := os.Create(f)
		n, err := io.Copy(out, resp.Body)
		resp.Body.Close()
		out.Close()
		if err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("download %s: HTTP %d %v", urls[i], resp.StatusCode, err)
		}
		step("downloaded %s (%d bytes) through the expiring link", filepath.Base(f), n)
	}
	step("verifying with the admin's own key: bot archive verify --identity %s --key-file %s %s", idFile, keyFile, archiveFile)
	if err := runVerify(ctx, os.Stdout, &keyFlags{identity: idFile, keyFile: keyFile}, false, archiveFile); err != nil {
		return err
	}
	step("done: the admin asked in chat, watched the progress, and holds a verified, encrypted archive of the server")
	return nil
}

func randomHex() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}
