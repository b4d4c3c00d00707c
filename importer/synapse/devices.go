package synapse

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
)

// restoreDevices writes the users' devices and, where the archive carries
// them (migration exports), their access tokens, so that clients stay
// logged in. Access token IDs continue above the target's highest, as
// Synapse's own ID generator (max(id) at start) expects.
func restoreDevices(ctx context.Context, tx pgx.Tx, r *archive.Reader) (int64, error) {
	var nextToken int64
	if err := tx.QueryRow(ctx, `SELECT COALESCE(max(id), 0) + 1 FROM access_tokens`).Scan(&nextToken); err != nil {
		return 0, fmt.Errorf("read access token IDs: %w", err)
	}
	b := newBatcher(tx)
	err := readSection(ctx, r, archive.SectionDevices, func(d *archive.Device) error {
		var lastSeen any
		if d.LastSeenTS != 0 {
			lastSeen = d.LastSeenTS
		}
		if err := b.add(ctx, "devices", []string{"user_id", "device_id", "display_name", "last_seen", "ip", "user_agent", "hidden"},
			d.UserID, d.DeviceID, nullable(d.DisplayName), lastSeen, nullable(d.LastSeenIP), nullable(d.UserAgent), false); err != nil {
			return err
		}
		for _, tok := range d.AccessTokens {
			var validUntil any
			if tok.ValidUntilTS != 0 {
				validUntil = tok.ValidUntilTS
			}
			if err := b.add(ctx, "access_tokens", []string{"id", "user_id", "device_id", "token", "valid_until_ms"},
				nextToken, d.UserID, d.DeviceID, tok.Token, validUntil); err != nil {
				return err
			}
			nextToken++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("restore devices: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("restore devices: %w", err)
	}
	return b.copied("devices"), nil
}

// restoreE2EEKeys writes the public key material: device keys, the latest
// cross-signing keys (each with the hidden devices row Synapse keeps so
// that signatures, identified by device ID, cannot collide with a device,
// and a stream ID from e2e_cross_signing_keys_sequence), their signatures,
// fallback keys and, when the archive has them, one-time keys. Keys that
// were added at an unknown time get the archive's creation time. It goes
// with restoreDevices (a migration restore).
func restoreE2EEKeys(ctx context.Context, tx pgx.Tx, r *archive.Reader) (int64, error) {
	return writeE2EEKeys(ctx, tx, r, nil)
}

// restoreCrossSigning writes the users' cross-signing identities only: the
// cross-signing keys and the signatures of one cross-signing key by
// another (a master key's of its self-signing key, a user-signing key's
// of other users' master keys; not a device's of a master key), for a
// restore without devices. The identity outlives the devices: a user who
// logs in again verifies the new device with it (its private keys are in
// their secret storage, which is account data), and others keep trusting
// them. Device, fallback and one-time keys and the signatures of devices
// belong to devices, which such a restore leaves out.
func restoreCrossSigning(ctx context.Context, tx pgx.Tx, r *archive.Reader) (int64, error) {
	identities := map[[2]string]bool{} // (user, public key) of every cross-signing key
	if err := readSection(ctx, r, archive.SectionE2EEKeys, func(k *archive.E2EEKey) error {
		if k.Kind == archive.KeyKindCrossSigning {
			if pubkey, err := crossSigningPubkey(k); err == nil {
				identities[[2]string{k.UserID, pubkey}] = true
			}
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("restore cross-signing keys: %w", err)
	}
	return writeE2EEKeys(ctx, tx, r, func(k *archive.E2EEKey) bool {
		switch k.Kind {
		case archive.KeyKindCrossSigning:
			return true
		case archive.KeyKindSignature: // by a cross-signing key, of one
			_, signer, _ := strings.Cut(k.KeyID, ":")
			return identities[[2]string{k.UserID, signer}] && identities[[2]string{k.TargetUserID, k.TargetDeviceID}]
		}
		return false
	})
}

// crossSigningPubkey is the one public key a cross-signing key holds.
func crossSigningPubkey(k *archive.E2EEKey) (string, error) {
	var key struct {
		Keys map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(k.JSON, &key); err != nil || len(key.Keys) != 1 {
		return "", fmt.Errorf("%s cross-signing key of %s: its \"keys\" must hold exactly one public key", k.Usage, k.UserID)
	}
	var pubkey string
	for _, v := range key.Keys {
		pubkey = v
	}
	return pubkey, nil
}

// writeE2EEKeys writes the E2EE key records that keep says to (nil: all).
func writeE2EEKeys(ctx context.Context, tx pgx.Tx, r *archive.Reader, keep func(*archive.E2EEKey) bool) (int64, error) {
	added := r.Manifest().CreatedAt.UnixMilli()
	var stream int64
	if err := tx.QueryRow(ctx, `SELECT GREATEST(
		(SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM e2e_cross_signing_keys_sequence),
		(SELECT COALESCE(max(stream_id), 0) + 1 FROM e2e_cross_signing_keys))`).Scan(&stream); err != nil {
		return 0, fmt.Errorf("read the cross-signing stream position: %w", err)
	}
	lastStream := int64(0)
	b := newBatcher(tx)
	var n int64
	err := readSection(ctx, r, archive.SectionE2EEKeys, func(k *archive.E2EEKey) error {
		if keep != nil && !keep(k) {
			return nil
		}
		n++
		switch k.Kind {
		case archive.KeyKindDevice:
			return b.add(ctx, "e2e_device_keys_json", []string{"user_id", "device_id", "ts_added_ms", "key_json"}, k.UserID, k.DeviceID, added, string(k.JSON))
		case archive.KeyKindCrossSigning:
			pubkey, err := crossSigningPubkey(k)
			if err != nil {
				return err
			}
			if err := b.add(ctx, "devices", []string{"user_id", "device_id", "display_name", "hidden"}, k.UserID, pubkey, k.Usage+" signing key", true); err != nil {
				return err
			}
			lastStream = stream
			stream++
			return b.add(ctx, "e2e_cross_signing_keys", []string{"user_id", "keytype", "keydata", "stream_id"}, k.UserID, k.Usage, string(k.JSON), lastStream)
		case archive.KeyKindSignature:
			return b.add(ctx, "e2e_cross_signing_signatures", []string{"user_id", "key_id", "target_user_id", "target_device_id", "signature"},
				k.UserID, k.KeyID, k.TargetUserID, k.TargetDeviceID, k.Signature)
		case archive.KeyKindFallback, archive.KeyKindOneTime:
			algorithm, keyID, ok := strings.Cut(k.KeyID, ":")
			if !ok {
				return fmt.Errorf("%s key %q of %s's device %s: want algorithm:key_id", k.Kind, k.KeyID, k.UserID, k.DeviceID)
			}
			if k.Kind == archive.KeyKindFallback {
				return b.add(ctx, "e2e_fallback_keys_json", []string{"user_id", "device_id", "algorithm", "key_id", "key_json", "used"},
					k.UserID, k.DeviceID, algorithm, keyID, string(k.JSON), k.Used)
			}
			return b.add(ctx, "e2e_one_time_keys_json", []string{"user_id", "device_id", "algorithm", "key_id", "ts_added_ms", "key_json"},
				k.UserID, k.DeviceID, algorithm, keyID, added, string(k.JSON))
		default:
			return fmt.Errorf("e2ee key of %s: unknown kind %q", k.UserID, k.Kind)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("restore e2ee keys: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("restore e2ee keys: %w", err)
	}
	if lastStream > 0 {
		if _, err := tx.Exec(ctx, `SELECT setval('e2e_cross_signing_keys_sequence', GREATEST($1::bigint, (SELECT last_value FROM e2e_cross_signing_keys_sequence)))`, lastStream); err != nil {
			return 0, fmt.Errorf("advance e2e_cross_signing_keys_sequence: %w", err)
		}
	}
	return n, nil
}

// restoreKeyBackups writes server-side key backups: their versions (deleted
// ones too, so version numbers are never reused) and the client-encrypted
// sessions.
func restoreKeyBackups(ctx context.Context, tx pgx.Tx, r *archive.Reader) (int64, error) {
	b := newBatcher(tx)
	version := func(v, userID string) (int64, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("key backup version %q of %s: Synapse keeps numeric versions", v, userID)
		}
		return n, nil
	}
	err := readSection(ctx, r, archive.SectionBackupVersions, func(v *archive.KeyBackupVersion) error {
		n, err := version(v.Version, v.UserID)
		if err != nil {
			return err
		}
		var etag any
		if v.Etag != 0 {
			etag = v.Etag
		}
		return b.add(ctx, "e2e_room_keys_versions", []string{"user_id", "version", "algorithm", "auth_data", "deleted", "etag"},
			v.UserID, n, v.Algorithm, string(v.AuthData), smallint(v.Deleted), etag)
	})
	if err != nil {
		return 0, fmt.Errorf("restore key backup versions: %w", err)
	}
	err = readSection(ctx, r, archive.SectionBackupSessions, func(s *archive.KeyBackupSession) error {
		n, err := version(s.Version, s.UserID)
		if err != nil {
			return err
		}
		return b.add(ctx, "e2e_room_keys", []string{"user_id", "room_id", "session_id", "version", "first_message_index", "forwarded_count", "is_verified", "session_data"},
			s.UserID, s.RoomID, s.SessionID, n, s.FirstMessageIndex, s.ForwardedCount, s.IsVerified, string(s.SessionData))
	})
	if err != nil {
		return 0, fmt.Errorf("restore key backup sessions: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("restore key backups: %w", err)
	}
	return b.copied("e2e_room_keys_versions") + b.copied("e2e_room_keys"), nil
}
