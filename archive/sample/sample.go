// Package sample builds a small, consistent homeserver dataset — users, a
// room with properly hashed and signed events, state snapshots, memberships,
// media — and writes it into an archive. It is the embedded default of
// `bot demo` and the data behind golden archives and benchmarks.
package sample

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/matrixevent"
)

// ServerName of the sample server.
const ServerName = "sample.ferry.test"

const keyID = "ed25519:sample"

// SigningKey is the sample server's deterministic signing key (test data).
func SigningKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("ferry sample server signing key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// Export describes the sample export in a manifest.
func Export() archive.ExportInfo {
	return archive.ExportInfo{ServerName: ServerName, Type: "full",
		Source: archive.SourceInfo{Implementation: "ferry-sample", Version: "1"}}
}

// Write writes the sample server with messages messages into w.
func Write(w *archive.Writer, messages int) error {
	priv := SigningKey()
	pub := priv.Public().(ed25519.PublicKey)
	add := func(section string, rec any) error { return w.Add(section, rec) }
	if err := add(archive.SectionServerKeys, &archive.ServerKey{ServerName: ServerName, KeyID: keyID, Kind: "own",
		PublicKey: base64.RawStdEncoding.EncodeToString(pub)}); err != nil {
		return err
	}
	alice, bob := "@alice:"+ServerName, "@bob:"+ServerName
	for _, u := range []archive.User{
		{UserID: alice, CreatedTS: 1700000000000, DisplayName: "Alice"},
		{UserID: bob, CreatedTS: 1700000001000, Admin: true, DisplayName: "Bob", AvatarURL: "mxc://" + ServerName + "/avatarbob"},
	} {
		if err := add(archive.SectionUsers, &u); err != nil {
			return err
		}
	}
	avatar := bytes.Repeat([]byte("ferry sample avatar "), 50)
	sum, err := w.AddBlob(archive.MediaBlobPath(ServerName, "avatarbob", ""), int64(len(avatar)), bytes.NewReader(avatar))
	if err != nil {
		return err
	}
	// A thumbnail beside the file: the layout must keep the two apart.
	thumb := bytes.Repeat([]byte("ferry sample thumbnail "), 10)
	thumbName := "32-32-text-plain-crop"
	thumbSum, err := w.AddBlob(archive.MediaBlobPath(ServerName, "avatarbob", thumbName), int64(len(thumb)), bytes.NewReader(thumb))
	if err != nil {
		return err
	}
	if err := add(archive.SectionMedia, &archive.Media{Origin: ServerName, MediaID: "avatarbob", ContentType: "text/plain",
		Size: int64(len(avatar)), SHA256: sum, UserID: bob, Path: archive.MediaBlobPath(ServerName, "avatarbob", ""),
		Thumbnails: []archive.Thumbnail{{Width: 32, Height: 32, Method: "crop", ContentType: "text/plain", Size: int64(len(thumb)),
			SHA256: thumbSum, Path: archive.MediaBlobPath(ServerName, "avatarbob", thumbName)}}}); err != nil {
		return err
	}

	r := &roomBuilder{w: w, priv: priv, roomID: "!sample:" + ServerName, state: map[[2]string]string{}}
	v, _ := matrixevent.LookupRoomVersion("10")
	r.version = v
	steps := []struct {
		sender, typ string
		stateKey    *string
		content     any
	}{
		{alice, "m.room.create", ptr(""), map[string]any{"creator": alice, "room_version": "10"}},
		{alice, "m.room.member", ptr(alice), map[string]any{"membership": "join", "displayname": "Alice"}},
		{alice, "m.room.power_levels", ptr(""), map[string]any{"users": map[string]int{alice: 100}, "users_default": 0}},
		{alice, "m.room.join_rules", ptr(""), map[string]any{"join_rule": "public"}},
		{alice, "m.room.name", ptr(""), map[string]any{"name": "Sample Room"}},
		{bob, "m.room.member", ptr(bob), map[string]any{"membership": "join", "displayname": "Bob", "avatar_url": "mxc://" + ServerName + "/avatarbob"}},
	}
	for _, s := range steps {
		if err := r.event(s.sender, s.typ, s.stateKey, s.content); err != nil {
			return err
		}
	}
	for i := 0; i < messages; i++ {
		sender := alice
		if i%2 == 1 {
			sender = bob
		}
		if err := r.event(sender, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d from the sample server", i)}); err != nil {
			return err
		}
	}
	return r.finish()
}

func ptr(s string) *string { return &s }

type roomBuilder struct {
	w        *archive.Writer
	priv     ed25519.PrivateKey
	version  matrixevent.RoomVersion
	roomID   string
	depth    int
	prev     string
	snapshot uint64
	nextSnap uint64
	state    map[[2]string]string
	ts       int64
}

func (r *roomBuilder) authEvents(typ, sender string, stateKey *string) []string {
	var out []string
	for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.member", sender}} {
		if id, ok := r.state[k]; ok {
			out = append(out, id)
		}
	}
	if typ == "m.room.member" {
		if id, ok := r.state[[2]string{"m.room.join_rules", ""}]; ok {
			out = append(out, id)
		}
	}
	return out
}

func (r *roomBuilder) event(sender, typ string, stateKey *string, content any) error {
	r.depth++
	r.ts += 1000
	ev := map[string]any{
		"room_id": r.roomID, "sender": sender, "type": typ, "content": content, "depth": r.depth,
		"origin": ServerName, "origin_server_ts": 1700000100000 + r.ts,
		"auth_events": nonNil(r.authEvents(typ, sender, stateKey)), "prev_events": nonNil(prevOf(r.prev)),
	}
	if stateKey != nil {
		ev["state_key"] = *stateKey
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if raw, err = matrixevent.AddContentHash(raw); err != nil {
		return err
	}
	if raw, err = matrixevent.Sign(r.version, raw, ServerName, keyID, r.priv); err != nil {
		return err
	}
	id, err := matrixevent.EventID(r.version, raw)
	if err != nil {
		return err
	}
	if err := r.w.Add(archive.SectionEvents, &archive.Event{EventID: id, RoomID: r.roomID, JSON: raw, StateBefore: r.snapshot, StreamOrdering: int64(r.depth)}); err != nil {
		return err
	}
	r.prev = id
	if _, err := r.w.MaybeCheckpoint(nil); err != nil {
		return err
	}
	if stateKey != nil {
		r.nextSnap++
		snap := archive.StateSnapshot{ID: r.nextSnap, RoomID: r.roomID, Parent: r.snapshot,
			Set: []archive.StateEntry{{Type: typ, StateKey: *stateKey, EventID: id}}}
		if err := r.w.Add(archive.SectionStateSnapshots, &snap); err != nil {
			return err
		}
		r.snapshot = snap.ID
		r.state[[2]string{typ, *stateKey}] = id
		if typ == "m.room.member" {
			m := content.(map[string]any)["membership"].(string)
			if err := r.w.Add(archive.SectionMemberships, &archive.Membership{RoomID: r.roomID, UserID: *stateKey, Membership: m, EventID: id, Sender: sender}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *roomBuilder) finish() error {
	return r.w.Add(archive.SectionRooms, &archive.Room{RoomID: r.roomID, Version: r.version.ID, Creator: "@alice:" + ServerName,
		Public: true, ForwardExtremities: []string{r.prev}, CurrentState: r.snapshot})
}

func prevOf(id string) []string {
	if id == "" {
		return nil
	}
	return []string{id}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
