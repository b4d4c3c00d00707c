package synapse

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
)

// accountDataStream allocates stream IDs of Synapse's account data stream
// (account_data, room_account_data and room_tags_revisions share
// account_data_sequence), above anything the target already holds, and
// advances the sequence past what it handed out: Synapse refuses to start
// when a table holds a stream ID beyond its sequence.
type accountDataStream struct {
	next, last int64
}

func newAccountDataStream(ctx context.Context, tx pgx.Tx) (*accountDataStream, error) {
	var next int64
	err := tx.QueryRow(ctx, `SELECT GREATEST(
		(SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM account_data_sequence),
		(SELECT COALESCE(max(stream_id), 0) + 1 FROM account_data),
		(SELECT COALESCE(max(stream_id), 0) + 1 FROM room_account_data),
		(SELECT COALESCE(max(stream_id), 0) + 1 FROM room_tags_revisions))`).Scan(&next)
	if err != nil {
		return nil, fmt.Errorf("read the account data stream position: %w", err)
	}
	return &accountDataStream{next: next}, nil
}

func (s *accountDataStream) take() int64 {
	s.last = s.next
	s.next++
	return s.last
}

func (s *accountDataStream) commit(ctx context.Context, tx pgx.Tx) error {
	if s.last == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `SELECT setval('account_data_sequence', GREATEST($1::bigint, (SELECT last_value FROM account_data_sequence)))`, s.last)
	if err != nil {
		return fmt.Errorf("advance account_data_sequence: %w", err)
	}
	return nil
}

// tagContent is m.tag's content: {"tags": {"<tag>": {...}}}.
type tagContent struct {
	Tags map[string]json.RawMessage `json:"tags"`
}

// ignoredUsers is m.ignored_user_list's content.
type ignoredUsers struct {
	IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
}

// restoreAccountData writes the archive's account data as Synapse keeps it:
// global data in account_data, room data in room_account_data, m.tag as one
// room_tags row per tag with a room_tags_revisions row, and
// m.ignored_user_list also into ignored_users, which Synapse reads to hide
// messages. Push rules (global m.push_rules, the effective rule set) are
// not account data in Synapse: the user's own rules, changed defaults and
// flags go to push_rules and push_rules_enable (pushRuleWriter). It
// returns the number of records written.
func restoreAccountData(ctx context.Context, tx pgx.Tx, r *archive.Reader) (int64, error) {
	return writeAccountData(ctx, tx, r, nil)
}

// writeAccountData is restoreAccountData of the records keep accepts (nil:
// all).
func writeAccountData(ctx context.Context, tx pgx.Tx, r *archive.Reader, keep func(*archive.AccountData) (bool, error)) (int64, error) {
	stream, err := newAccountDataStream(ctx, tx)
	if err != nil {
		return 0, err
	}
	b := newBatcher(tx)
	rules, err := newPushRuleWriter(ctx, b)
	if err != nil {
		return 0, err
	}
	var n int64
	err = readSection(ctx, r, archive.SectionAccountData, func(a *archive.AccountData) error {
		if keep != nil {
			if ok, err := keep(a); err != nil || !ok {
				return err
			}
		}
		if !json.Valid(a.Content) {
			return fmt.Errorf("account data %s of %s is not JSON", a.Type, a.UserID)
		}
		switch {
		case a.RoomID == "" && a.Type == "m.push_rules":
			n++
			return rules.write(ctx, a.UserID, a.Content)
		case a.RoomID == "":
			n++
			if a.Type == "m.ignored_user_list" {
				var ig ignoredUsers
				if err := json.Unmarshal(a.Content, &ig); err != nil {
					return fmt.Errorf("m.ignored_user_list of %s: %w", a.UserID, err)
				}
				for ignored := range ig.IgnoredUsers {
					if err := b.add(ctx, "ignored_users", []string{"ignorer_user_id", "ignored_user_id"}, a.UserID, ignored); err != nil {
						return err
					}
				}
			}
			return b.add(ctx, "account_data", []string{"user_id", "account_data_type", "stream_id", "content"},
				a.UserID, a.Type, stream.take(), string(a.Content))
		case a.Type == "m.tag":
			n++
			var tc tagContent
			if err := json.Unmarshal(a.Content, &tc); err != nil {
				return fmt.Errorf("m.tag of %s in %s: %w", a.UserID, a.RoomID, err)
			}
			for tag, content := range tc.Tags {
				if err := b.add(ctx, "room_tags", []string{"user_id", "room_id", "tag", "content"}, a.UserID, a.RoomID, tag, string(content)); err != nil {
					return err
				}
			}
			return b.add(ctx, "room_tags_revisions", []string{"user_id", "room_id", "stream_id"}, a.UserID, a.RoomID, stream.take())
		default:
			n++
			return b.add(ctx, "room_account_data", []string{"user_id", "room_id", "account_data_type", "stream_id", "content"},
				a.UserID, a.RoomID, a.Type, stream.take(), string(a.Content))
		}
	})
	if err != nil {
		return 0, fmt.Errorf("restore account data: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("restore account data: %w", err)
	}
	return n, stream.commit(ctx, tx)
}

// restoreFilters writes the users' filters (user_filters keeps the
// localpart and the full user ID).
func restoreFilters(ctx context.Context, tx pgx.Tx, r *archive.Reader) (int64, error) {
	b := newBatcher(tx)
	err := readSection(ctx, r, archive.SectionFilters, func(f *archive.Filter) error {
		localpart, _, _ := strings.Cut(strings.TrimPrefix(f.UserID, "@"), ":")
		var id int64
		if _, err := fmt.Sscan(f.FilterID, &id); err != nil || fmt.Sprint(id) != f.FilterID {
			return fmt.Errorf("filter %q of %s: Synapse keeps numeric filter IDs", f.FilterID, f.UserID)
		}
		return b.add(ctx, "user_filters", []string{"user_id", "full_user_id", "filter_id", "filter_json"}, localpart, f.UserID, id, f.JSON)
	})
	if err != nil {
		return 0, fmt.Errorf("restore filters: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("restore filters: %w", err)
	}
	return b.copied("user_filters"), nil
}

// restorePushers writes the users' pushers with IDs from pushers_sequence
// (advanced past them). A pusher's last_stream_ordering is the highest
// event stream ordering in the target when it is restored, so that
// Synapse does not push the restored history: restore pushers after the
// events. The access token a pusher was made with is not linked (the
// archive does not say which).
func restorePushers(ctx context.Context, tx pgx.Tx, r *archive.Reader) (int64, error) {
	var next, streamOrdering int64
	if err := tx.QueryRow(ctx, `SELECT GREATEST(
		(SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM pushers_sequence),
		(SELECT COALESCE(max(id), 0) + 1 FROM pushers)), (SELECT COALESCE(max(stream_ordering), 0) FROM events)`).Scan(&next, &streamOrdering); err != nil {
		return 0, fmt.Errorf("read pusher IDs: %w", err)
	}
	added := r.Manifest().CreatedAt.UnixMilli()
	b := newBatcher(tx)
	last := int64(0)
	err := readSection(ctx, r, archive.SectionPushers, func(p *archive.Pusher) error {
		var data any
		if len(p.Data) > 0 {
			data = string(p.Data)
		}
		last = next
		next++
		return b.add(ctx, "pushers", []string{"id", "user_name", "profile_tag", "kind", "app_id", "app_display_name", "device_display_name",
			"pushkey", "ts", "lang", "data", "last_stream_ordering", "enabled", "device_id"},
			last, p.UserID, p.ProfileTag, p.Kind, p.AppID, p.AppDisplayName, p.DeviceDisplayName, p.PushKey, added, nullable(p.Lang), data,
			streamOrdering, p.Enabled, nullable(p.DeviceID))
	})
	if err != nil {
		return 0, fmt.Errorf("restore pushers: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("restore pushers: %w", err)
	}
	if last > 0 {
		if _, err := tx.Exec(ctx, `SELECT setval('pushers_sequence', GREATEST($1::bigint, (SELECT last_value FROM pushers_sequence)))`, last); err != nil {
			return 0, fmt.Errorf("advance pushers_sequence: %w", err)
		}
	}
	return b.copied("pushers"), nil
}
