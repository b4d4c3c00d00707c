package synapse

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/internal/testenv"
	"github.com/ferry-matrix/ferry/source"
)

// post sends JSON to a client-server API path as token and decodes the
// answer into v; it returns the HTTP status.
func post(t *testing.T, s *testenv.Synapse, token, path string, body, v any) int {
	t.Helper()
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", s.URL+path, bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

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

	var anyToken string
	for _, tok := range userToken {
		anyToken = tok
	}
	// Synapse serves a device's keys with the cross-signing signatures of
	// it merged in: the expected JSON is the stored one plus those.
	deviceJSON := map[[2]string]map[string]any{}
	var signatures []archive.E2EEKey
	crossSigning := map[[2]string]string{}
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
			crossSigning[[2]string{k.UserID, k.Usage}] = stripped(t, k.JSON)
			users[k.UserID] = []string{}
		case archive.KeyKindOneTime:
			oneTime[[2]string{k.UserID, k.DeviceID}]++
		}
		return nil
	})
	for _, sig := range signatures {
		if m := deviceJSON[[2]string{sig.TargetUserID, sig.TargetDeviceID}]; m != nil {
			sigs, _ := m["signatures"].(map[string]any)
			if sigs[sig.UserID] == nil {
				sigs[sig.UserID] = map[string]any{}
			}
			sigs[sig.UserID].(map[string]any)[sig.KeyID] = sig.Signature
		}
	}
	deviceKeys := map[[2]string]string{}
	for key, m := range deviceJSON {
		data, _ := json.Marshal(m)
		deviceKeys[key] = stripped(t, data)
	}
	if len(deviceKeys) == 0 || len(crossSigning) == 0 || len(oneTime) == 0 {
		t.Fatalf("the fixture's archive lacks keys: %d device, %d cross-signing, %d one-time", len(deviceKeys), len(crossSigning), len(oneTime))
	}
	var q struct {
		DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
		MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
		SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
		UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	}
	if code := post(t, s, anyToken, "/_matrix/client/v3/keys/query", map[string]any{"device_keys": users}, &q); code != 200 {
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
	if backups != 4 || counts["restoreKeyBackups"] != 6 {
		t.Errorf("backed-up sessions read back: %d; rows restored %d", backups, counts["restoreKeyBackups"])
	}
}
