package seed

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/id"

	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// e2ee uploads device keys, one-time keys and a fallback key for u's
// device (signed with a key derived from the seed, as a client would), and
// makes a key backup: version A deleted, version B holding one session.
func e2ee(ctx context.Context, u *user, room id.RoomID, g *sourcetest.GroundTruth) error {
	who, err := u.cli.Whoami(ctx)
	if err != nil {
		return err
	}
	dev := string(who.DeviceID)
	seed := sha256.Sum256([]byte("ferry seed device " + string(u.id)))
	priv := ed25519.NewKeyFromSeed(seed[:])
	ed := base64.RawStdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	curveSeed := sha256.Sum256([]byte("curve " + string(u.id)))
	curve := base64.RawStdEncoding.EncodeToString(curveSeed[:])
	sign := func(obj map[string]any) (map[string]any, error) {
		raw, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		canon, err := canonicaljson.CanonicalJSON(raw)
		if err != nil {
			return nil, err
		}
		obj["signatures"] = map[string]any{string(u.id): map[string]string{"ed25519:" + dev: base64.RawStdEncoding.EncodeToString(ed25519.Sign(priv, canon))}}
		return obj, nil
	}
	deviceKeys, err := sign(map[string]any{"user_id": string(u.id), "device_id": dev,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]string{"curve25519:" + dev: curve, "ed25519:" + dev: ed}})
	if err != nil {
		return err
	}
	otks := map[string]any{}
	for i := 0; i < 3; i++ {
		k := sha256.Sum256([]byte(fmt.Sprintf("otk %d %s", i, u.id)))
		signed, err := sign(map[string]any{"key": base64.RawStdEncoding.EncodeToString(k[:])})
		if err != nil {
			return err
		}
		otks[fmt.Sprintf("signed_curve25519:OTK%d", i)] = signed
	}
	fb := sha256.Sum256([]byte("fallback " + string(u.id)))
	fallback, err := sign(map[string]any{"key": base64.RawStdEncoding.EncodeToString(fb[:]), "fallback": true})
	if err != nil {
		return err
	}
	body := map[string]any{"device_keys": deviceKeys, "one_time_keys": otks, "fallback_keys": map[string]any{"signed_curve25519:FB1": fallback}}
	if _, err := u.cli.MakeRequest(ctx, "POST", u.cli.BuildClientURL("v3", "keys", "upload"), body, nil); err != nil {
		return fmt.Errorf("keys upload: %w", err)
	}
	// Not every server keeps fallback keys (Dendrite 0.15 ignores them):
	// the ground truth says what this one reports back through /sync.
	var sync struct {
		Unused []string `json:"device_unused_fallback_key_types"`
	}
	syncURL := u.cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, map[string]string{"timeout": "0"})
	if _, err := u.cli.MakeRequest(ctx, "GET", syncURL, nil, &sync); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	hasFallback := false
	for _, t := range sync.Unused {
		hasFallback = hasFallback || t == "signed_curve25519"
	}
	if g.E2E.DeviceKeys == nil {
		g.E2E.DeviceKeys = map[string]sourcetest.TruthDeviceKeys{}
	}
	g.E2E.DeviceKeys[dev] = sourcetest.TruthDeviceKeys{UserID: string(u.id), Ed25519: ed, Curve25519: curve, FallbackKey: hasFallback}
	g.OneTimeKeysRemaining = append(g.OneTimeKeysRemaining, sourcetest.TruthOneTimeKeys{UserID: string(u.id), DeviceID: dev, Count: 3})

	if err := crossSigning(ctx, u, dev, deviceKeys, g); err != nil {
		return err
	}

	// Key backup: one version deleted, one with a session.
	newVersion := func() (string, error) {
		var out struct {
			Version string `json:"version"`
		}
		_, err := u.cli.MakeRequest(ctx, "POST", u.cli.BuildClientURL("v3", "room_keys", "version"),
			map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]string{"public_key": curve}}, &out)
		return out.Version, err
	}
	first, err := newVersion()
	if err != nil {
		return fmt.Errorf("backup version: %w", err)
	}
	if _, err := u.cli.MakeRequest(ctx, "DELETE", u.cli.BuildClientURL("v3", "room_keys", "version", first), nil, nil); err != nil {
		return fmt.Errorf("delete backup version: %w", err)
	}
	second, err := newVersion()
	if err != nil {
		return err
	}
	session := "c2Vzc2lvbi1vZi10aGUtc2VlZA"
	url := u.cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "room_keys", "keys", string(room), session}, map[string]string{"version": second})
	if _, err := u.cli.MakeRequest(ctx, "PUT", url, map[string]any{"first_message_index": 2, "forwarded_count": 0, "is_verified": true,
		"session_data": map[string]string{"ephemeral": "e", "ciphertext": "c", "mac": "m"}}, nil); err != nil {
		return fmt.Errorf("backup a session: %w", err)
	}
	g.E2E.Backup.UserID, g.E2E.Backup.DeletedVersion, g.E2E.Backup.Version = string(u.id), first, second
	g.E2E.RoomKeys = append(g.E2E.RoomKeys, sourcetest.TruthRoomKey{RoomID: string(room), SessionID: session, Version: second})
	return nil
}

// crossSigning uploads u's master, self-signing and user-signing keys (the
// latter two signed by the master key; upload behind user-interactive auth
// with the password), then signs the device's keys with the self-signing
// key, as a client does when it sets up cross-signing.
func crossSigning(ctx context.Context, u *user, dev string, deviceKeys map[string]any, g *sourcetest.GroundTruth) error {
	key := func(usage string) (ed25519.PrivateKey, string) {
		seed := sha256.Sum256([]byte("ferry seed " + usage + " " + string(u.id)))
		priv := ed25519.NewKeyFromSeed(seed[:])
		return priv, base64.RawStdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	}
	masterPriv, masterPub := key("master")
	signWith := func(priv ed25519.PrivateKey, pub string, obj map[string]any) (map[string]any, error) {
		unsigned := map[string]any{}
		for k, v := range obj {
			if k != "signatures" && k != "unsigned" {
				unsigned[k] = v
			}
		}
		raw, err := json.Marshal(unsigned)
		if err != nil {
			return nil, err
		}
		canon, err := canonicaljson.CanonicalJSON(raw)
		if err != nil {
			return nil, err
		}
		sigs, _ := obj["signatures"].(map[string]any)
		if sigs == nil {
			sigs = map[string]any{}
		}
		mine, _ := sigs[string(u.id)].(map[string]string)
		out := map[string]string{"ed25519:" + pub: base64.RawStdEncoding.EncodeToString(ed25519.Sign(priv, canon))}
		for k, v := range mine {
			out[k] = v
		}
		sigs[string(u.id)] = out
		obj["signatures"] = sigs
		return obj, nil
	}
	keyObj := func(usage, pub string) map[string]any {
		return map[string]any{"user_id": string(u.id), "usage": []string{usage}, "keys": map[string]string{"ed25519:" + pub: pub}}
	}
	body := map[string]any{"master_key": keyObj("master", masterPub)}
	truth := map[string]string{"master": masterPub}
	var selfPriv ed25519.PrivateKey
	var selfPub string
	for _, usage := range []string{"self_signing", "user_signing"} {
		priv, pub := key(usage)
		signed, err := signWith(masterPriv, masterPub, keyObj(usage, pub))
		if err != nil {
			return err
		}
		body[usage+"_key"] = signed
		truth[usage] = pub
		if usage == "self_signing" {
			selfPriv, selfPub = priv, pub
		}
	}
	uploadURL := u.cli.BuildClientURL("v3", "keys", "device_signing", "upload")
	var uia struct {
		Session string `json:"session"`
	}
	// The first try gets the user-interactive auth session.
	if _, err := u.cli.MakeRequest(ctx, "POST", uploadURL, body, nil); err != nil {
		var herr mautrix.HTTPError
		if !errors.As(err, &herr) || herr.Response == nil || herr.Response.StatusCode != 401 {
			return fmt.Errorf("cross-signing upload: %w", err)
		}
		json.Unmarshal([]byte(herr.ResponseBody), &uia)
		body["auth"] = map[string]any{"type": "m.login.password", "session": uia.Session,
			"identifier": map[string]string{"type": "m.id.user", "user": u.local}, "password": Password(u.local)}
		if _, err := u.cli.MakeRequest(ctx, "POST", uploadURL, body, nil); err != nil {
			return fmt.Errorf("cross-signing upload (with auth): %w", err)
		}
	}
	signedDevice, err := signWith(selfPriv, selfPub, deviceKeys)
	if err != nil {
		return err
	}
	if _, err := u.cli.MakeRequest(ctx, "POST", u.cli.BuildClientURL("v3", "keys", "signatures", "upload"),
		map[string]any{string(u.id): map[string]any{dev: signedDevice}}, nil); err != nil {
		return fmt.Errorf("signature upload: %w", err)
	}
	if g.E2E.CrossSigning == nil {
		g.E2E.CrossSigning = map[string]map[string]string{}
	}
	g.E2E.CrossSigning[string(u.id)] = truth
	return nil
}
