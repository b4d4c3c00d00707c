package synapse

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/pushrules"
)

// userCursor resumes per-user streams after a user (and, for streams with
// several rows per user, a second key).
type userCursor struct {
	User string `json:"user"`
	Key  string `json:"key,omitempty"`
}

// localpartSQL is the localpart of users.name, for tables keyed by it
// (profiles, user_filters).
const localpartSQL = `substring(u.name from 2 for position(':' in u.name) - 2)`

func (p *plan) usersStream() source.Stream {
	s := p.s
	cols := []string{"u.name", "u.password_hash", "COALESCE(u.creation_ts, 0)", "u.admin = 1", "u.is_guest = 1", "u.deactivated = 1",
		"COALESCE(u.shadow_banned, false)", "COALESCE(u.user_type, '')", "COALESCE(u.appservice_id, '')",
		s.optional("users", "locked", "u.locked", "false"), s.optional("users", "suspended", "u.suspended", "false"),
		s.optional("users", "approved", "u.approved", "NULL::boolean"),
		"COALESCE(pr.displayname, '')", "COALESCE(pr.avatar_url, '')",
		s.optional("erased_users", "user_id", "EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = u.name)", "false"),
		s.optional("user_threepids", "user_id", `(SELECT json_agg(json_build_object('medium', t.medium, 'address', t.address,
			'validated_ts', t.validated_at, 'added_ts', t.added_at) ORDER BY t.medium, t.address) FROM user_threepids t WHERE t.user_id = u.name)`, "NULL::json"),
		s.optional("user_external_ids", "user_id", `(SELECT json_agg(json_build_object('auth_provider', x.auth_provider,
			'external_id', x.external_id) ORDER BY x.auth_provider, x.external_id) FROM user_external_ids x WHERE x.user_id = u.name)`, "NULL::json"),
	}
	query := `SELECT ` + strings.Join(cols, ", ") + ` FROM users u
		LEFT JOIN profiles pr ON pr.user_id = ` + localpartSQL + `
		WHERE ($1::text[] IS NULL OR u.name = ANY($1)) AND u.name > $2 ORDER BY u.name`
	return source.Stream{
		Name: source.StreamUsers,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT count(*) FROM users u WHERE ($1::text[] IS NULL OR u.name = ANY($1))`, p.users)
		},
		Run: func(ctx context.Context, cursor []byte, sink source.Sink) error {
			var c userCursor
			if err := source.DecodeCursor(cursor, &c); err != nil {
				return err
			}
			pepper := s.hsConf != nil && s.hsConf.PasswordConfig.Pepper != ""
			var hashesLeftOut int
			err := s.each(ctx, query, []any{p.users, c.User}, func(rows pgx.Rows) error {
				var u archive.User
				var hash *string
				var creationTS int64
				var threepids, externalIDs []byte
				if err := rows.Scan(&u.UserID, &hash, &creationTS, &u.Admin, &u.Guest, &u.Deactivated, &u.ShadowBanned, &u.UserType,
					&u.AppserviceID, &u.Locked, &u.Suspended, &u.Approved, &u.DisplayName, &u.AvatarURL, &u.Erased, &threepids, &externalIDs); err != nil {
					return err
				}
				u.CreatedTS = creationTS * 1000 // Synapse stores seconds
				if len(threepids) > 0 {
					if err := json.Unmarshal(threepids, &u.Threepids); err != nil {
						return fmt.Errorf("threepids of %s: %w", u.UserID, err)
					}
				}
				if len(externalIDs) > 0 {
					if err := json.Unmarshal(externalIDs, &u.ExternalIDs); err != nil {
						return fmt.Errorf("external IDs of %s: %w", u.UserID, err)
					}
				}
				if hash != nil && *hash != "" {
					if p.o.Encrypted {
						u.PasswordHash = *hash
						if pepper {
							if err := omit(sink, "password_unusable", archive.SectionUsers+"#password_hash", u.UserID,
								"Synapse's password_config.pepper was mixed into this hash: it will not verify elsewhere; the user must reset their password"); err != nil {
								return err
							}
						}
					} else {
						hashesLeftOut++
					}
				}
				if err := sink.Record(archive.SectionUsers, &u); err != nil {
					return err
				}
				return sink.Checkpoint(source.EncodeCursor(userCursor{User: u.UserID}))
			})
			if err != nil {
				return err
			}
			if hashesLeftOut > 0 {
				return omit(sink, "excluded_by_default", archive.SectionUsers+"#password_hash", "",
					fmt.Sprintf("%d password hashes left out: they are exported only into encrypted archives", hashesLeftOut))
			}
			return nil
		},
	}
}

func (p *plan) devicesStream() source.Stream {
	s := p.s
	hidden := s.optional("devices", "hidden", "NOT COALESCE(d.hidden, false)", "true")
	query := `SELECT d.user_id, d.device_id, COALESCE(d.display_name, ''), COALESCE(d.last_seen, 0), COALESCE(d.ip, ''), COALESCE(d.user_agent, ''),
		(SELECT json_agg(json_build_object('token', a.token, 'valid_until_ts', COALESCE(a.valid_until_ms, 0)) ORDER BY a.id)
		   FROM access_tokens a WHERE a.user_id = d.user_id AND a.device_id = d.device_id)
		FROM devices d WHERE ` + hidden + ` AND ($1::text[] IS NULL OR d.user_id = ANY($1)) AND (d.user_id, d.device_id) > ($2, $3)
		ORDER BY d.user_id, d.device_id`
	return source.Stream{
		Name: source.StreamDevices,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT count(*) FROM devices d WHERE `+hidden+` AND ($1::text[] IS NULL OR d.user_id = ANY($1))`, p.users)
		},
		Run: func(ctx context.Context, cursor []byte, sink source.Sink) error {
			var c userCursor
			if err := source.DecodeCursor(cursor, &c); err != nil {
				return err
			}
			tokensLeftOut := 0
			err := s.each(ctx, query, []any{p.users, c.User, c.Key}, func(rows pgx.Rows) error {
				var d archive.Device
				var tokens []byte
				if err := rows.Scan(&d.UserID, &d.DeviceID, &d.DisplayName, &d.LastSeenTS, &d.LastSeenIP, &d.UserAgent, &tokens); err != nil {
					return err
				}
				if len(tokens) > 0 {
					if p.o.AccessTokens && p.o.Encrypted {
						if err := json.Unmarshal(tokens, &d.AccessTokens); err != nil {
							return fmt.Errorf("access tokens of %s %s: %w", d.UserID, d.DeviceID, err)
						}
					} else {
						tokensLeftOut++
					}
				}
				if err := sink.Record(archive.SectionDevices, &d); err != nil {
					return err
				}
				return sink.Checkpoint(source.EncodeCursor(userCursor{User: d.UserID, Key: d.DeviceID}))
			})
			if err != nil {
				return err
			}
			if tokensLeftOut > 0 {
				return omit(sink, "excluded_by_default", archive.SectionDevices+"#access_tokens", "",
					fmt.Sprintf("access tokens of %d devices left out: exported only with the access_tokens option into encrypted archives (migrations); users log in again", tokensLeftOut))
			}
			return nil
		},
	}
}

// e2eeStream emits device keys, cross-signing keys and signatures,
// fallback keys and (with the option) one-time keys. It is small per
// user, so it runs as one pass per kind without a cursor.
func (p *plan) e2eeStream() source.Stream {
	s := p.s
	return source.Stream{
		Name: source.StreamE2EEKeys,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT (SELECT count(*) FROM e2e_device_keys_json WHERE ($1::text[] IS NULL OR user_id = ANY($1)))
				+ (SELECT count(*) FROM e2e_cross_signing_signatures WHERE ($1::text[] IS NULL OR user_id = ANY($1)))
				+ (SELECT count(*) FROM e2e_fallback_keys_json WHERE ($1::text[] IS NULL OR user_id = ANY($1)))`, p.users)
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			emit := func(k *archive.E2EEKey) error { return sink.Record(archive.SectionE2EEKeys, k) }
			err := s.each(ctx, `SELECT user_id, device_id, key_json FROM e2e_device_keys_json
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) ORDER BY user_id, device_id`, []any{p.users}, func(rows pgx.Rows) error {
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
			// Only the newest key of each kind is in use.
			err = s.each(ctx, `SELECT DISTINCT ON (user_id, keytype) user_id, keytype, keydata FROM e2e_cross_signing_keys
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) ORDER BY user_id, keytype, stream_id DESC`, []any{p.users}, func(rows pgx.Rows) error {
				k := archive.E2EEKey{Kind: archive.KeyKindCrossSigning}
				var js string
				if err := rows.Scan(&k.UserID, &k.Usage, &js); err != nil {
					return err
				}
				k.JSON = []byte(js)
				var doc struct {
					Keys map[string]string `json:"keys"`
				}
				if json.Unmarshal(k.JSON, &doc) == nil {
					for id := range doc.Keys {
						k.KeyID = id
					}
				}
				return emit(&k)
			})
			if err != nil {
				return err
			}
			err = s.each(ctx, `SELECT user_id, key_id, target_user_id, target_device_id, signature FROM e2e_cross_signing_signatures
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) ORDER BY user_id, key_id, target_user_id, target_device_id`, []any{p.users}, func(rows pgx.Rows) error {
				k := archive.E2EEKey{Kind: archive.KeyKindSignature}
				if err := rows.Scan(&k.UserID, &k.KeyID, &k.TargetUserID, &k.TargetDeviceID, &k.Signature); err != nil {
					return err
				}
				return emit(&k)
			})
			if err != nil {
				return err
			}
			err = s.each(ctx, `SELECT user_id, device_id, algorithm || ':' || key_id, key_json, used FROM e2e_fallback_keys_json
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) ORDER BY user_id, device_id, algorithm`, []any{p.users}, func(rows pgx.Rows) error {
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
			if p.o.OneTimeKeys {
				return s.each(ctx, `SELECT user_id, device_id, algorithm || ':' || key_id, key_json FROM e2e_one_time_keys_json
					WHERE ($1::text[] IS NULL OR user_id = ANY($1)) ORDER BY user_id, device_id, algorithm, key_id`, []any{p.users}, func(rows pgx.Rows) error {
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
			err = s.each(ctx, `SELECT user_id, device_id, count(*) FROM e2e_one_time_keys_json
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) GROUP BY user_id, device_id ORDER BY user_id, device_id`, []any{p.users}, func(rows pgx.Rows) error {
				var user, device string
				var n int64
				if err := rows.Scan(&user, &device, &n); err != nil {
					return err
				}
				omissions = append(omissions, archive.Omission{Code: "excluded_by_default", Item: archive.SectionE2EEKeys + "#one_time",
					ID: user + " " + device, Detail: fmt.Sprintf("%d unclaimed one-time keys; the device uploads new ones", n)})
				return nil
			})
			if err != nil {
				return err
			}
			for _, o := range omissions {
				if err := sink.Omit(o); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (p *plan) backupsStream() source.Stream {
	s := p.s
	return source.Stream{
		Name: source.StreamKeyBackups,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT (SELECT count(*) FROM e2e_room_keys_versions WHERE ($1::text[] IS NULL OR user_id = ANY($1)))
				+ (SELECT count(*) FROM e2e_room_keys WHERE ($1::text[] IS NULL OR user_id = ANY($1)))`, p.users)
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			err := s.each(ctx, `SELECT user_id, version::text, algorithm, auth_data, COALESCE(etag, 0), deleted <> 0 FROM e2e_room_keys_versions
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) ORDER BY user_id, version`, []any{p.users}, func(rows pgx.Rows) error {
				var v archive.KeyBackupVersion
				var auth string
				if err := rows.Scan(&v.UserID, &v.Version, &v.Algorithm, &auth, &v.Etag, &v.Deleted); err != nil {
					return err
				}
				v.AuthData = []byte(auth)
				return sink.Record(archive.SectionBackupVersions, &v)
			})
			if err != nil {
				return err
			}
			var left int
			err = s.each(ctx, `SELECT user_id, version::text, room_id, session_id, COALESCE(first_message_index, 0), COALESCE(forwarded_count, 0),
				COALESCE(is_verified, false), session_data FROM e2e_room_keys
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) ORDER BY user_id, version, room_id, session_id`, []any{p.users}, func(rows pgx.Rows) error {
				var k archive.KeyBackupSession
				var data string
				if err := rows.Scan(&k.UserID, &k.Version, &k.RoomID, &k.SessionID, &k.FirstMessageIndex, &k.ForwardedCount, &k.IsVerified, &data); err != nil {
					return err
				}
				if !p.o.Encrypted {
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
				return omit(sink, "excluded_by_default", archive.SectionBackupSessions, "",
					fmt.Sprintf("%d backed-up room keys left out: exported only into encrypted archives", left))
			}
			return nil
		},
	}
}

func (p *plan) pushersStream() source.Stream {
	s := p.s
	enabled := s.optional("pushers", "enabled", "COALESCE(enabled, true)", "true")
	deviceID := s.optional("pushers", "device_id", "COALESCE(device_id, '')", "''")
	return source.Stream{
		Name: source.StreamPushers,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT count(*) FROM pushers WHERE ($1::text[] IS NULL OR user_name = ANY($1))`, p.users)
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			return s.each(ctx, `SELECT user_name, kind, app_id, pushkey, app_display_name, device_display_name, profile_tag,
				COALESCE(lang, ''), COALESCE(data, ''), `+deviceID+`, `+enabled+` FROM pushers
				WHERE ($1::text[] IS NULL OR user_name = ANY($1)) ORDER BY user_name, app_id, pushkey`, []any{p.users}, func(rows pgx.Rows) error {
				var ps archive.Pusher
				var data string
				if err := rows.Scan(&ps.UserID, &ps.Kind, &ps.AppID, &ps.PushKey, &ps.AppDisplayName, &ps.DeviceDisplayName, &ps.ProfileTag,
					&ps.Lang, &data, &ps.DeviceID, &ps.Enabled); err != nil {
					return err
				}
				if data != "" {
					ps.Data = []byte(data)
				}
				return sink.Record(archive.SectionPushers, &ps)
			})
		},
	}
}

func (p *plan) filtersStream() source.Stream {
	s := p.s
	userExpr := `'@' || f.user_id || ':' || $2`
	return source.Stream{
		Name: source.StreamFilters,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT count(*) FROM user_filters f WHERE ($1::text[] IS NULL OR `+userExpr+` = ANY($1))`, p.users, s.info.ServerName)
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			return s.each(ctx, `SELECT `+userExpr+`, f.filter_id::text, f.filter_json FROM user_filters f
				WHERE ($1::text[] IS NULL OR `+userExpr+` = ANY($1)) ORDER BY f.user_id, f.filter_id`, []any{p.users, s.info.ServerName}, func(rows pgx.Rows) error {
				var fl archive.Filter
				if err := rows.Scan(&fl.UserID, &fl.FilterID, &fl.JSON); err != nil {
					return err
				}
				return sink.Record(archive.SectionFilters, &fl)
			})
		},
	}
}

// accountDataStream emits global and per-room account data, room tags as
// m.tag room account data, and each user's effective push rules as
// m.push_rules.
func (p *plan) accountDataStream() source.Stream {
	s := p.s
	return source.Stream{
		Name: source.StreamAccountData,
		Count: func(ctx context.Context) (int64, error) {
			return s.count(ctx, `SELECT (SELECT count(*) FROM account_data WHERE ($1::text[] IS NULL OR user_id = ANY($1)))
				+ (SELECT count(*) FROM room_account_data WHERE ($1::text[] IS NULL OR user_id = ANY($1)))
				+ (SELECT count(DISTINCT (user_id, room_id)) FROM room_tags WHERE ($1::text[] IS NULL OR user_id = ANY($1)))
				+ (SELECT count(*) FROM users WHERE ($1::text[] IS NULL OR name = ANY($1)))`, p.users)
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			emit := func(a *archive.AccountData) error { return sink.Record(archive.SectionAccountData, a) }
			err := s.each(ctx, `SELECT user_id, account_data_type, content FROM account_data
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) AND account_data_type <> 'm.push_rules' ORDER BY user_id, account_data_type`, []any{p.users}, func(rows pgx.Rows) error {
				var a archive.AccountData
				var content string
				if err := rows.Scan(&a.UserID, &a.Type, &content); err != nil {
					return err
				}
				a.Content = []byte(content)
				return emit(&a)
			})
			if err != nil {
				return err
			}
			err = s.each(ctx, `SELECT user_id, room_id, account_data_type, content FROM room_account_data
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) AND ($2::text[] IS NULL OR room_id = ANY($2)) AND account_data_type <> 'm.tag'
				ORDER BY user_id, room_id, account_data_type`, []any{p.users, p.rooms}, func(rows pgx.Rows) error {
				var a archive.AccountData
				var content string
				if err := rows.Scan(&a.UserID, &a.RoomID, &a.Type, &content); err != nil {
					return err
				}
				a.Content = []byte(content)
				return emit(&a)
			})
			if err != nil {
				return err
			}
			err = s.each(ctx, `SELECT user_id, room_id, json_object_agg(tag, content::json ORDER BY tag)::text FROM room_tags
				WHERE ($1::text[] IS NULL OR user_id = ANY($1)) AND ($2::text[] IS NULL OR room_id = ANY($2))
				GROUP BY user_id, room_id ORDER BY user_id, room_id`, []any{p.users, p.rooms}, func(rows pgx.Rows) error {
				a := archive.AccountData{Type: "m.tag"}
				var tags string
				if err := rows.Scan(&a.UserID, &a.RoomID, &tags); err != nil {
					return err
				}
				a.Content = []byte(`{"tags":` + tags + `}`)
				return emit(&a)
			})
			if err != nil {
				return err
			}
			return p.pushRules(ctx, sink)
		},
	}
}

// pushRules reads the users' stored rule changes (small), then emits the
// effective rule set of every selected user.
func (p *plan) pushRules(ctx context.Context, sink source.Sink) error {
	s := p.s
	stored := map[string][]pushrules.Stored{}
	err := s.each(ctx, `SELECT user_name, rule_id, priority_class, priority, conditions, actions FROM push_rules
		WHERE ($1::text[] IS NULL OR user_name = ANY($1)) ORDER BY user_name, id`, []any{p.users}, func(rows pgx.Rows) error {
		var user, ruleID, conds, actions string
		var class, prio int
		if err := rows.Scan(&user, &ruleID, &class, &prio, &conds, &actions); err != nil {
			return err
		}
		r, err := storedRule(ruleID, class, prio, conds, actions)
		if err != nil {
			return omit(sink, "source_corrupt", archive.SectionAccountData+"#m.push_rules", user, fmt.Sprintf("rule %s: %v", ruleID, err))
		}
		stored[user] = append(stored[user], r)
		return nil
	})
	if err != nil {
		return err
	}
	enabled := map[string]map[string]bool{}
	err = s.each(ctx, `SELECT user_name, rule_id, enabled = 1 FROM push_rules_enable WHERE ($1::text[] IS NULL OR user_name = ANY($1))`, []any{p.users}, func(rows pgx.Rows) error {
		var user, ruleID string
		var on bool
		if err := rows.Scan(&user, &ruleID, &on); err != nil {
			return err
		}
		if enabled[user] == nil {
			enabled[user] = map[string]bool{}
		}
		enabled[user][strings.TrimPrefix(ruleID, "global/")] = on
		return nil
	})
	if err != nil {
		return err
	}
	users, err := s.strings(ctx, `SELECT name FROM users WHERE ($1::text[] IS NULL OR name = ANY($1)) ORDER BY name`, p.users)
	if err != nil {
		return err
	}
	for _, user := range users {
		rs, err := pushrules.Effective(user, stored[user], enabled[user])
		if err != nil {
			return err
		}
		content, err := json.Marshal(rs)
		if err != nil {
			return err
		}
		if err := sink.Record(archive.SectionAccountData, &archive.AccountData{UserID: user, Type: "m.push_rules", Content: content}); err != nil {
			return err
		}
	}
	return nil
}

// storedRule converts a push_rules row: rule IDs look like
// "global/<kind>/<id>"; priority class -1 changes a default rule's actions.
func storedRule(ruleID string, class, prio int, conds, actions string) (pushrules.Stored, error) {
	parts := strings.SplitN(ruleID, "/", 3)
	if len(parts) != 3 || parts[0] != "global" {
		return pushrules.Stored{}, fmt.Errorf("unexpected rule ID %q", ruleID)
	}
	r := pushrules.Stored{Kind: parts[1], RuleID: parts[2], Priority: prio, Default: class < 0}
	if err := json.Unmarshal([]byte(actions), &r.Actions); err != nil {
		return r, fmt.Errorf("actions: %w", err)
	}
	if err := json.Unmarshal([]byte(conds), &r.Conditions); err != nil {
		return r, fmt.Errorf("conditions: %w", err)
	}
	if r.Kind == "content" {
		for _, c := range r.Conditions {
			var cond struct {
				Pattern string `json:"pattern"`
			}
			if json.Unmarshal(c, &cond) == nil && cond.Pattern != "" {
				r.Pattern = cond.Pattern
			}
		}
	}
	return r, nil
}
