package dendrite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

// Dendrite's cross-signing key types (keyserver: KeyType).
var crossSigningUsage = map[int]string{1: "master", 2: "self_signing", 3: "user_signing"}

func (s *Source) wantUser(users []string, userID string) bool {
	return len(users) == 0 || contains(users, userID)
}

// e2eeStream exports device keys, fallback keys, cross-signing keys and
// signatures, and (with the option) one-time keys; otherwise one omission
// per device with its count.
func (s *Source) e2eeStream(users []string, o source.Options) source.Stream {
	return source.Stream{Name: source.StreamE2EEKeys,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			emit := func(k *archive.E2EEKey) error {
				if !s.wantUser(users, k.UserID) || !strings.HasSuffix(k.UserID, ":"+s.info.ServerName) {
					return nil
				}
				return sink.Record(archive.SectionE2EEKeys, k)
			}
			err := s.keyserver.each(ctx, `SELECT user_id, device_id, key_json FROM keyserver_device_keys WHERE key_json <> '' ORDER BY user_id, device_id`, nil,
				func(rows *sql.Rows) error {
					k := archive.E2EEKey{Kind: archive.KeyKindDevice}
					var js string
					if err := rows.Scan(&k.UserID, &k.DeviceID, &js); err != nil {
						return err
					}
					k.JSON = []byte(js)
					return emit(&k)
				})
			if err != nil {
				return err
			}
			err = s.keyserver.each(ctx, `SELECT user_id, device_id, algorithm || ':' || key_id, key_json, used FROM keyserver_fallback_keys ORDER BY user_id, device_id`, nil,
				func(rows *sql.Rows) error {
					k := archive.E2EEKey{Kind: archive.KeyKindFallback}
					var js string
					if err := rows.Scan(&k.UserID, &k.DeviceID, &k.KeyID, &js, &k.Used); err != nil {
						return err
					}
					k.JSON = []byte(js)
					return emit(&k)
				})
			if err != nil {
				return err
			}
			err = s.keyserver.each(ctx, `SELECT user_id, key_type, key_data FROM keyserver_cross_signing_keys ORDER BY user_id, key_type`, nil,
				func(rows *sql.Rows) error {
					k := archive.E2EEKey{Kind: archive.KeyKindCrossSigning}
					var typ int
					var data string
					if err := rows.Scan(&k.UserID, &typ, &data); err != nil {
						return err
					}
					k.Usage = crossSigningUsage[typ]
					// Dendrite stores the public key alone; the portable form is the key object.
					obj, _ := json.Marshal(map[string]any{"user_id": k.UserID, "usage": []string{k.Usage}, "keys": map[string]string{"ed25519:" + data: data}})
					k.KeyID, k.JSON = "ed25519:"+data, obj
					return emit(&k)
				})
			if err != nil {
				return err
			}
			err = s.keyserver.each(ctx, `SELECT origin_user_id, origin_key_id, target_user_id, target_key_id, signature FROM keyserver_cross_signing_sigs
				ORDER BY origin_user_id, origin_key_id, target_user_id, target_key_id`, nil, func(rows *sql.Rows) error {
				k := archive.E2EEKey{Kind: archive.KeyKindSignature}
				if err := rows.Scan(&k.UserID, &k.KeyID, &k.TargetUserID, &k.TargetDeviceID, &k.Signature); err != nil {
					return err
				}
				return emit(&k)
			})
			if err != nil {
				return err
			}
			if o.OneTimeKeys {
				return s.keyserver.each(ctx, `SELECT user_id, device_id, algorithm || ':' || key_id, key_json FROM keyserver_one_time_keys
					ORDER BY user_id, device_id, key_id`, nil, func(rows *sql.Rows) error {
					k := archive.E2EEKey{Kind: archive.KeyKindOneTime}
					var js string
					if err := rows.Scan(&k.UserID, &k.DeviceID, &k.KeyID, &js); err != nil {
						return err
					}
					k.JSON = []byte(js)
					return emit(&k)
				})
			}
			var omissions []archive.Omission
			err = s.keyserver.each(ctx, `SELECT user_id, device_id, count(*) FROM keyserver_one_time_keys GROUP BY user_id, device_id ORDER BY user_id, device_id`, nil,
				func(rows *sql.Rows) error {
					var user, device string
					var n int
					if err := rows.Scan(&user, &device, &n); err != nil {
						return err
					}
					if s.wantUser(users, user) {
						omissions = append(omissions, archive.Omission{Code: "excluded_by_default", Item: archive.SectionE2EEKeys + "#one_time",
							ID: user + " " + device, Detail: fmt.Sprintf("%d unclaimed one-time keys; the device uploads new ones", n)})
					}
					return nil
				})
			if err != nil {
				return err
			}
			for _, om := range omissions {
				if err := sink.Omit(om); err != nil {
					return err
				}
			}
			return nil
		}}
}

// backupsStream exports key backup versions and (encrypted archives only)
// the backed-up sessions.
func (s *Source) backupsStream(users []string, o source.Options) source.Stream {
	full := func(u string) string {
		if strings.HasPrefix(u, "@") {
			return u
		}
		return "@" + u + ":" + s.info.ServerName
	}
	return source.Stream{Name: source.StreamKeyBackups,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			err := s.userapi.each(ctx, `SELECT user_id, version, algorithm, auth_data, etag, deleted FROM userapi_key_backup_versions ORDER BY user_id, version`, nil,
				func(rows *sql.Rows) error {
					var v archive.KeyBackupVersion
					var version int64
					var auth, etag string
					var deleted int
					if err := rows.Scan(&v.UserID, &version, &v.Algorithm, &auth, &etag, &deleted); err != nil {
						return err
					}
					v.UserID, v.Version, v.AuthData, v.Deleted = full(v.UserID), fmt.Sprint(version), []byte(auth), deleted != 0
					fmt.Sscan(etag, &v.Etag)
					if !s.wantUser(users, v.UserID) {
						return nil
					}
					return sink.Record(archive.SectionBackupVersions, &v)
				})
			if err != nil {
				return err
			}
			left := 0
			err = s.userapi.each(ctx, `SELECT user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
				FROM userapi_key_backups ORDER BY user_id, version, room_id, session_id`, nil, func(rows *sql.Rows) error {
				var k archive.KeyBackupSession
				var data string
				if err := rows.Scan(&k.UserID, &k.Version, &k.RoomID, &k.SessionID, &k.FirstMessageIndex, &k.ForwardedCount, &k.IsVerified, &data); err != nil {
					return err
				}
				k.UserID = full(k.UserID)
				if !s.wantUser(users, k.UserID) {
					return nil
				}
				if !o.Encrypted {
					left++
					return nil
				}
				k.SessionData = []byte(data)
				return sink.Record(archive.SectionBackupSessions, &k)
			})
			if err != nil {
				return err
			}
			if left > 0 {
				return sink.Omit(archive.Omission{Code: "excluded_by_default", Item: archive.SectionBackupSessions,
					Detail: fmt.Sprintf("%d backed-up room keys left out: exported only into encrypted archives", left)})
			}
			return nil
		}}
}
