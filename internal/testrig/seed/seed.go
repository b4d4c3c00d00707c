// Package seed fills a running homeserver with a small but varied server
// through the client-server API only — users with profiles and avatars,
// public and private rooms, invites, a rejected invite, messages, an edit,
// a reply, reactions, a redaction, receipts, account data, tags, media —
// and records what it did as a sourcetest.GroundTruth, in the same form as
// the Synapse fixtures' ground_truth.json. The Dendrite source and importer
// tests run the conformance suite against it.
package seed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// Server is where to seed.
type Server struct {
	URL        string
	ServerName string
	// Register creates a user (shared-secret registration) and returns its
	// access token.
	Register func(localpart, password string, admin bool) (string, error)
}

// Password is every seeded user's password, as in the Synapse fixtures.
func Password(localpart string) string { return localpart + "-Fixtur3pw" }

type user struct {
	local string
	id    id.UserID
	cli   *mautrix.Client
	admin bool
	name  string
	mxc   id.ContentURI
}

// Run seeds the server and returns the ground truth.
func Run(ctx context.Context, srv Server) (*sourcetest.GroundTruth, error) {
	g := &sourcetest.GroundTruth{ServerName: srv.ServerName,
		EventsByRoomAndType: map[string]map[string]int{}, MessagesByRoomSender: map[string]map[string]int{}}
	users := map[string]*user{}
	for _, u := range []struct {
		local, name string
		admin       bool
	}{{"alice", "Alice Archer", true}, {"bob", "Bob Builder", false}, {"carol", "Carol Cartographer", false}} {
		tok, err := srv.Register(u.local, Password(u.local), u.admin)
		if err != nil {
			return nil, fmt.Errorf("register %s: %w", u.local, err)
		}
		uid := id.NewUserID(u.local, srv.ServerName)
		cli, err := mautrix.NewClient(srv.URL, uid, tok)
		if err != nil {
			return nil, err
		}
		us := &user{local: u.local, id: uid, cli: cli, admin: u.admin, name: u.name}
		if err := cli.SetDisplayName(ctx, u.name); err != nil {
			return nil, err
		}
		avatar := pngBytes(u.local)
		up, err := cli.UploadBytes(ctx, avatar, "image/png")
		if err != nil {
			return nil, err
		}
		us.mxc = up.ContentURI
		if err := cli.SetAvatarURL(ctx, up.ContentURI); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(avatar)
		g.Media = append(g.Media, mediaTruth(up.ContentURI.FileID, "image/png", int64(len(avatar)), "", string(uid), hex.EncodeToString(sum[:])))
		users[u.local] = us
		g.Users = append(g.Users, sourcetest.TruthUser{UserID: string(uid), Admin: u.admin, DisplayName: u.name,
			AvatarURL: up.ContentURI.String(), Password: Password(u.local)})
	}
	alice, bob, carol := users["alice"], users["bob"], users["carol"]

	// A public room in the directory with an alias, and a private one.
	general, err := alice.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Visibility: "public", Preset: "public_chat", RoomAliasName: "general",
		Name: "General", Topic: "Everything and nothing", RoomVersion: "10"})
	if err != nil {
		return nil, fmt.Errorf("create room: %w", err)
	}
	ops, err := alice.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Ops", RoomVersion: "10",
		Invite: []id.UserID{bob.id, carol.id}})
	if err != nil {
		return nil, err
	}
	if _, err := bob.cli.JoinRoomByID(ctx, general.RoomID); err != nil {
		return nil, err
	}
	if _, err := carol.cli.JoinRoomByID(ctx, general.RoomID); err != nil {
		return nil, err
	}
	if _, err := bob.cli.JoinRoomByID(ctx, ops.RoomID); err != nil {
		return nil, err
	}
	if _, err := carol.cli.LeaveRoom(ctx, ops.RoomID); err != nil { // rejects the invite
		return nil, err
	}

	// Messages, an edit, a reply, reactions, a redaction.
	var last map[id.RoomID]id.EventID = map[id.RoomID]id.EventID{}
	say := func(u *user, room id.RoomID, text string) (id.EventID, error) {
		resp, err := u.cli.SendText(ctx, room, text)
		if err != nil {
			return "", err
		}
		last[room] = resp.EventID
		return resp.EventID, nil
	}
	var firstGeneral id.EventID
	for i := 0; i < 24; i++ {
		u := []*user{alice, bob, carol}[i%3]
		evID, err := say(u, general.RoomID, fmt.Sprintf("general message %d from %s ☁️ «%s»", i, u.local, u.name))
		if err != nil {
			return nil, err
		}
		if i == 0 {
			firstGeneral = evID
		}
	}
	for i := 0; i < 10; i++ {
		u := []*user{alice, bob}[i%2]
		if _, err := say(u, ops.RoomID, fmt.Sprintf("ops note %d", i)); err != nil {
			return nil, err
		}
	}
	edit, err := bob.cli.SendMessageEvent(ctx, general.RoomID, event.EventMessage, map[string]any{
		"msgtype": "m.text", "body": "* corrected", "m.new_content": map[string]any{"msgtype": "m.text", "body": "corrected"},
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": last[general.RoomID]}})
	if err != nil {
		return nil, err
	}
	g.Edits = append(g.Edits, sourcetest.TruthEdit{RoomID: string(general.RoomID), EventID: string(edit.EventID), Replaces: string(last[general.RoomID]), Sender: string(bob.id)})
	reply, err := carol.cli.SendMessageEvent(ctx, general.RoomID, event.EventMessage, map[string]any{
		"msgtype": "m.text", "body": "replying to the first", "m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": firstGeneral}}})
	if err != nil {
		return nil, err
	}
	g.Replies = append(g.Replies, sourcetest.TruthReply{RoomID: string(general.RoomID), EventID: string(reply.EventID), InReplyTo: string(firstGeneral)})
	for _, r := range []struct {
		u   *user
		key string
	}{{alice, "👍"}, {bob, "🚀"}} {
		resp, err := r.u.cli.SendReaction(ctx, general.RoomID, firstGeneral, r.key)
		if err != nil {
			return nil, err
		}
		g.Reactions = append(g.Reactions, sourcetest.TruthReaction{RoomID: string(general.RoomID), EventID: string(resp.EventID), Target: string(firstGeneral), Key: r.key, Sender: string(r.u.id), Redacted: false})
	}
	doomed, err := say(carol, general.RoomID, "this message will be redacted")
	if err != nil {
		return nil, err
	}
	red, err := alice.cli.RedactEvent(ctx, general.RoomID, doomed, mautrix.ReqRedact{Reason: "cleanup"})
	if err != nil {
		return nil, err
	}
	g.Redactions = append(g.Redactions, sourcetest.TruthRedaction{EventID: string(red.EventID), Redacts: string(doomed), RedactedType: "m.room.message", RedactedSender: string(carol.id), RoomID: string(general.RoomID)})

	// A file in the private room.
	file := []byte("# runbook\n\n1. restart\n2. pray\n")
	up, err := bob.cli.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: file, ContentType: "text/markdown", FileName: "runbook.md"})
	if err != nil {
		return nil, err
	}
	if _, err := bob.cli.SendMessageEvent(ctx, ops.RoomID, event.EventMessage, map[string]any{
		"msgtype": "m.file", "body": "runbook.md", "url": up.ContentURI.String(), "info": map[string]any{"mimetype": "text/markdown", "size": len(file)}}); err != nil {
		return nil, err
	}
	fsum := sha256.Sum256(file)
	g.Media = append(g.Media, mediaTruth(up.ContentURI.FileID, "text/markdown", int64(len(file)), "runbook.md", string(bob.id), hex.EncodeToString(fsum[:])))

	// Account data, tags, receipts.
	if err := alice.cli.SetAccountData(ctx, "org.example.seed.prefs", map[string]any{"theme": "dark", "scale": 1.25}); err != nil {
		return nil, err
	}
	g.AccountData = append(g.AccountData, sourcetest.TruthAccountData{UserID: string(alice.id), Type: "org.example.seed.prefs",
		Content: json.RawMessage(`{"theme":"dark","scale":1.25}`)})
	if err := bob.cli.SetRoomAccountData(ctx, ops.RoomID, "org.example.seed.draft", map[string]any{"text": "half a thought"}); err != nil {
		return nil, err
	}
	g.RoomAccountData = append(g.RoomAccountData, sourcetest.TruthAccountData{UserID: string(bob.id), RoomID: string(ops.RoomID),
		Type: "org.example.seed.draft", Content: json.RawMessage(`{"text":"half a thought"}`)})
	if err := bob.cli.AddTag(ctx, general.RoomID, event.RoomTagFavourite, 0.5); err != nil {
		return nil, err
	}
	g.Tags = append(g.Tags, sourcetest.TruthTag{UserID: string(bob.id), RoomID: string(general.RoomID), Tag: "m.favourite", Content: json.RawMessage(`{"order":0.5}`)})
	for _, u := range []*user{alice, bob, carol} {
		if err := u.cli.SendReceipt(ctx, general.RoomID, last[general.RoomID], event.ReceiptTypeRead, nil); err != nil {
			return nil, err
		}
		g.Receipts = append(g.Receipts, sourcetest.TruthReceipt{RoomID: string(general.RoomID), ReceiptType: "m.read", UserID: string(u.id), EventID: string(last[general.RoomID])})
	}

	if err := e2ee(ctx, alice, ops.RoomID, g); err != nil {
		return nil, err
	}

	// Every user's devices, as the server lists them.
	for _, u := range []*user{alice, bob, carol} {
		resp, err := u.cli.GetDevicesInfo(ctx)
		if err != nil {
			return nil, err
		}
		for _, dev := range resp.Devices {
			g.Devices = append(g.Devices, sourcetest.TruthDevice{UserID: string(u.id), DeviceID: string(dev.DeviceID), DisplayName: dev.DisplayName, Hidden: false})
		}
	}

	// What the rooms hold now, as the server itself serves it.
	for _, r := range []struct {
		id          id.RoomID
		label       string
		inDirectory bool
		aliases     []string
	}{{general.RoomID, "general", true, []string{"#general:" + srv.ServerName}}, {ops.RoomID, "ops", false, nil}} {
		tr, err := roomTruth(ctx, alice.cli, r.id, r.label, r.inDirectory, r.aliases)
		if err != nil {
			return nil, err
		}
		g.Rooms = append(g.Rooms, *tr)
		if err := countEvents(ctx, alice.cli, r.id, g); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func mediaTruth(mediaID, contentType string, size int64, name, uploader, sum string) sourcetest.TruthMedia {
	return sourcetest.TruthMedia{MediaID: mediaID, ContentType: contentType, Bytes: size, UploadName: name, Uploader: uploader, SHA256: sum}
}

func roomTruth(ctx context.Context, cli *mautrix.Client, roomID id.RoomID, label string, inDirectory bool, aliases []string) (*sourcetest.TruthRoom, error) {
	state, err := cli.State(ctx, roomID)
	if err != nil {
		return nil, err
	}
	tr := &sourcetest.TruthRoom{RoomID: string(roomID), Label: label, InDirectory: inDirectory, Aliases: aliases,
		Members: map[string]sourcetest.TruthMember{}}
	get := func(t event.Type, field string) string {
		ev := state[t][""]
		if ev == nil {
			return ""
		}
		v, _ := ev.Content.Raw[field].(string)
		return v
	}
	tr.Name, tr.Topic = get(event.StateRoomName, "name"), get(event.StateTopic, "topic")
	tr.JoinRule, tr.HistoryVisibility = get(event.StateJoinRules, "join_rule"), get(event.StateHistoryVisibility, "history_visibility")
	if create := state[event.StateCreate][""]; create != nil {
		tr.Creator = string(create.Sender)
		tr.Version, _ = create.Content.Raw["room_version"].(string)
	}
	if alias := get(event.StateCanonicalAlias, "alias"); alias != "" {
		tr.CanonicalAlias = &alias
	}
	for key, ev := range state[event.StateMember] {
		m, _ := ev.Content.Raw["membership"].(string)
		tr.Members[key] = sourcetest.TruthMember{Membership: m, Sender: string(ev.Sender)}
	}
	return tr, nil
}

// countEvents pages through a room's whole history as the server serves it.
func countEvents(ctx context.Context, cli *mautrix.Client, roomID id.RoomID, g *sourcetest.GroundTruth) error {
	byType := map[string]int{}
	bySender := map[string]int{}
	seen := map[id.EventID]bool{} // Dendrite may serve the oldest event again on the last page
	from := ""
	for {
		resp, err := cli.Messages(ctx, roomID, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			return err
		}
		fresh := 0
		for _, ev := range resp.Chunk {
			if seen[ev.ID] {
				continue
			}
			seen[ev.ID] = true
			fresh++
			byType[ev.Type.Type]++
			g.EventsTotal++
			if ev.Type == event.EventMessage {
				bySender[string(ev.Sender)]++
			}
		}
		if resp.End == "" || fresh == 0 {
			break
		}
		from = resp.End
	}
	g.EventsByRoomAndType[string(roomID)] = byType
	g.MessagesByRoomSender[string(roomID)] = bySender
	return nil
}

// pngBytes is a small PNG, different per seed.
func pngBytes(seed string) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	h := sha256.Sum256([]byte(seed))
	for i := 0; i < 64; i++ {
		img.Set(i%8, i/8, color.RGBA{h[i%32], h[(i+7)%32], h[(i+13)%32], 255})
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}
