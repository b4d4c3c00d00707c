package synapse

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
	"github.com/ferry-matrix/ferry/source"
)

// stripped is a key JSON without "unsigned" (Synapse adds the device
// display name there), canonical.
func stripped(t *testing.T, data []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "unsigned")
	out, _ := json.Marshal(m)
	return string(out)
}

// A migration export of the real fixture restored into Synapse 1.160:
// clients stay logged in with their old access tokens, /keys/query shows
// every device and cross-signing key as before, each device sees its
// one-time keys, and the key backup is there with its sessions.
func TestRestoredDevicesAndKeys(t *testing.T) {
	ctx := context.Background()
	r := exportFixture(t, "synapse-1.67", source.Options{AccessTokens: true, OneTimeKeys: true})
	s := testenv.NewSynapse(t, r.Core().ServerName)
	counts := restoreSlices(t, s, r, restoreUsers, restoreDevices, restoreE2EEKeys, restoreKeyBackups)
	s.Start(t)

	tokenOf := map[[2]string]string{} // (user, device) -> a token
	userToken := map[string]string{}
	archive.ReadSection(ctx, r, archive.SectionDevices, func(d *archive.Device) error {
		for _, tok := range d.AccessTokens {
			tokenOf[[2]string{d.UserID, d.DeviceID}] = tok.Token
			userToken[d.UserID] = tok.Token
		}
		return nil
	})
	if len(tokenOf) == 0 {
		t.Fatal("the migration export carries no access tokens")
	}
	for key, tok := range tokenOf {
		var who struct {
			UserID   string `json:"user_id"`
			DeviceID string `json:"device_id"`
		}
		if code := get(t, s, tok, "/_matrix/client/v3/account/whoami", &who); code != 200 || who.UserID != key[0] || who.DeviceID != key[1] {
			t.Errorf("old token of %s/%s: HTTP %d, %+v", key[0], key[1], code, who)
		}
	}

	// One user asks /keys/query. Synapse serves keys with the
	// cross-signing signatures of them merged in, a user-signing signature
	// only to its signer: the expected JSON is the stored one plus those.
	var asker string
	for u := range userToken {
		if asker == "" || u < asker {
			asker = u
		}
	}
	deviceJSON := map[[2]string]map[string]any{} // (user, device) -> keys
	crossJSON := map[[2]string]map[string]any{}  // (user, usage) -> key
	crossByPubkey := map[[2]string][2]string{}   // (user, public key) -> (user, usage)
	var signatures []archive.E2EEKey
	oneTime := map[[2]string]int{}
	users := map[string][]string{}
	archive.ReadSection(ctx, r, archive.SectionE2EEKeys, func(k *archive.E2EEKey) error {
		switch k.Kind {
		case archive.KeyKindDevice:
			var m map[string]any
			json.Unmarshal(k.JSON, &m)
			deviceJSON[[2]string{k.UserID, k.DeviceID}] = m
			users[k.UserID] = []string{}
		case archive.KeyKindSignature:
			signatures = append(signatures, *k)
		case archive.KeyKindCrossSigning:
			var m map[string]any
			json.Unmarshal(k.JSON, &m)
			crossJSON[[2]string{k.UserID, k.Usage}] = m
			for _, pub := range m["keys"].(map[string]any) {
				crossByPubkey[[2]string{k.UserID, pub.(string)}] = [2]string{k.UserID, k.Usage}
			}
			users[k.UserID] = []string{}
		case archive.KeyKindOneTime:
			oneTime[[2]string{k.UserID, k.DeviceID}]++
		}
		return nil
	})
	merge := func(m map[string]any, sig archive.E2EEKey) {
		if m["signatures"] == nil {
			m["signatures"] = map[string]any{}
		}
		sigs := m["signatures"].(map[string]any)
		if sigs[sig.UserID] == nil {
			sigs[sig.UserID] = map[string]any{}
		}
		sigs[sig.UserID].(map[string]any)[sig.KeyID] = sig.Signature
	}
	for _, sig := range signatures {
		if m := deviceJSON[[2]string{sig.TargetUserID, sig.TargetDeviceID}]; m != nil {
			merge(m, sig)
		} else if key, ok := crossByPubkey[[2]string{sig.TargetUserID, sig.TargetDeviceID}]; ok && (sig.UserID == sig.TargetUserID || sig.UserID == asker) {
			merge(crossJSON[key], sig)
		}
	}
	canonicalKeys := func(in map[[2]string]map[string]any) map[[2]string]string {
		out := map[[2]string]string{}
		for key, m := range in {
			data, _ := json.Marshal(m)
			out[key] = stripped(t, data)
		}
		return out
	}
	deviceKeys, crossSigning := canonicalKeys(deviceJSON), canonicalKeys(crossJSON)
	if len(deviceKeys) == 0 || len(crossSigning) == 0 || len(oneTime) == 0 {
		t.Fatalf("the fixture's archive lacks keys: %d device, %d cross-signing, %d one-time", len(deviceKeys), len(crossSigning), len(oneTime))
	}
	var q struct {
		DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
		MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
		SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
		UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	}
	if code := post(t, s, userToken[asker], "/_matrix/client/v3/keys/query", map[string]any{"device_keys": users}, &q); code != 200 {
		t.Fatalf("keys/query: HTTP %d", code)
	}
	for key, want := range deviceKeys {
		if got := q.DeviceKeys[key[0]][key[1]]; got == nil || stripped(t, got) != want {
			t.Errorf("device keys of %s/%s: %s", key[0], key[1], got)
		}
	}
	crossChecked := 0
	for key, want := range crossSigning {
		var got json.RawMessage
		switch key[1] {
		case "master":
			got = q.MasterKeys[key[0]]
		case "self_signing":
			got = q.SelfSigningKeys[key[0]]
		case "user_signing":
			got = q.UserSigningKeys[key[0]]
		}
		if got == nil {
			continue // user-signing keys are shown to their owner only
		}
		if stripped(t, got) != want {
			t.Errorf("%s key of %s: %s, want %s", key[1], key[0], got, want)
		}
		crossChecked++
	}
	if crossChecked == 0 {
		t.Error("no cross-signing key was served")
	}
	for key, n := range oneTime {
		tok := tokenOf[key]
		if tok == "" {
			continue
		}
		var up struct {
			Counts map[string]int `json:"one_time_key_counts"`
		}
		if code := post(t, s, tok, "/_matrix/client/v3/keys/upload", map[string]any{}, &up); code != 200 || up.Counts["signed_curve25519"] != n {
			t.Errorf("one-time keys of %s/%s: HTTP %d, %v, want %d", key[0], key[1], code, up.Counts, n)
		}
	}

	backups := 0
	archive.ReadSection(ctx, r, archive.SectionBackupVersions, func(v *archive.KeyBackupVersion) error {
		if v.Deleted || userToken[v.UserID] == "" {
			return nil
		}
		var got struct {
			Version  string          `json:"version"`
			AuthData json.RawMessage `json:"auth_data"`
			Count    int             `json:"count"`
		}
		if code := get(t, s, userToken[v.UserID], "/_matrix/client/v3/room_keys/version", &got); code != 200 || got.Version != v.Version ||
			canonical(t, got.AuthData) != canonical(t, v.AuthData) {
			t.Errorf("key backup of %s: HTTP %d, %+v, want version %s", v.UserID, code, got, v.Version)
		}
		var keys struct {
			Rooms map[string]struct {
				Sessions map[string]json.RawMessage `json:"sessions"`
			} `json:"rooms"`
		}
		get(t, s, userToken[v.UserID], "/_matrix/client/v3/room_keys/keys?version="+v.Version, &keys)
		for _, room := range keys.Rooms {
			backups += len(room.Sessions)
		}
		return nil
	})
	// INVENTORY.md: version 2 of oliver's backup holds 4 sessions.
	if backups != 4 || counts[3] != 6 {
		t.Errorf("backed-up sessions read back: %d; rows restored %d", backups, counts[3])
	}
}

// An ordinary (not migration) backup restored: the devices are gone, but
// every user's cross-signing identity is back, so a user who logs in again
// verifies the new device with it and the others keep trusting them.
func TestRestoredCrossSigningWithoutDevices(t *testing.T) {
	ctx := context.Background()
	r := exportFixture(t, "synapse-1.67", source.Options{})
	s := testenv.NewSynapse(t, r.Core().ServerName)
	restoreSlices(t, s, r, restoreUsers, restoreCrossSigning)
	s.Start(t)

	masters := map[string]string{} // user -> master public key
	archive.ReadSection(ctx, r, archive.SectionE2EEKeys, func(k *archive.E2EEKey) error {
		if k.Kind == archive.KeyKindCrossSigning && k.Usage == "master" {
			pub, err := crossSigningPubkey(k)
			if err != nil {
				t.Error(err)
			}
			masters[k.UserID] = pub
		}
		return nil
	})
	if len(masters) == 0 {
		t.Fatal("the fixture's archive has no master keys")
	}
	query := map[string][]string{}
	var asker string
	for u := range masters {
		query[u] = []string{}
		asker = u
	}
	token, code, err := s.Login(strings.TrimPrefix(strings.SplitN(asker, ":", 2)[0], "@"), strings.TrimPrefix(strings.SplitN(asker, ":", 2)[0], "@")+"-Fixtur3pw")
	if code != 200 {
		t.Fatalf("%s cannot log in: %d %v", asker, code, err)
	}
	var q struct {
		DeviceKeys map[string]map[string]json.RawMessage `json:"device_keys"`
		MasterKeys map[string]struct {
			Keys map[string]string `json:"keys"`
		} `json:"master_keys"`
	}
	if code := post(t, s, token, "/_matrix/client/v3/keys/query", map[string]any{"device_keys": query}, &q); code != 200 {
		t.Fatalf("keys/query: HTTP %d", code)
	}
	for u, pub := range masters {
		got := q.MasterKeys[u].Keys
		if len(got) != 1 || got["ed25519:"+pub] != pub {
			t.Errorf("master key of %s: %v, want %s", u, got, pub)
		}
		if n := len(q.DeviceKeys[u]); n != 0 && u != asker {
			t.Errorf("%s has %d device keys after a restore without devices", u, n)
		}
	}
}
