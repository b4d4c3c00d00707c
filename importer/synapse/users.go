package synapse

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
)

// copyBatch is how many rows one COPY carries: memory stays bounded by it,
// whatever the archive's size.
const copyBatch = 5000

// batcher gathers rows per table and copies them in batches.
type batcher struct {
	tx     pgx.Tx
	tables map[string]*pendingRows
	order  []string
}

type pendingRows struct {
	columns []string
	rows    [][]any
	copied  int64
}

func newBatcher(tx pgx.Tx) *batcher {
	return &batcher{tx: tx, tables: map[string]*pendingRows{}}
}

// add queues a row of table (with these columns, the same on every call).
func (b *batcher) add(ctx context.Context, table string, columns []string, row ...any) error {
	p := b.tables[table]
	if p == nil {
		p = &pendingRows{columns: columns}
		b.tables[table] = p
		b.order = append(b.order, table)
	}
	p.rows = append(p.rows, row)
	if len(p.rows) >= copyBatch {
		// Tables used earlier are parents (foreign keys): flush them first.
		return b.flush(ctx)
	}
	return nil
}

func (b *batcher) flushTable(ctx context.Context, table string) error {
	p := b.tables[table]
	if len(p.rows) == 0 {
		return nil
	}
	n, err := b.tx.CopyFrom(ctx, pgx.Identifier{table}, p.columns, pgx.CopyFromRows(p.rows))
	if err != nil {
		return fmt.Errorf("copy %d rows into %s: %w", len(p.rows), table, err)
	}
	p.copied += n
	p.rows = p.rows[:0]
	return nil
}

// flush copies what is left, in the order the tables were first used
// (parents before children).
func (b *batcher) flush(ctx context.Context) error {
	for _, table := range b.order {
		if err := b.flushTable(ctx, table); err != nil {
			return err
		}
	}
	return nil
}

// copied counts the rows copied into table.
func (b *batcher) copied(table string) int64 {
	if p := b.tables[table]; p != nil {
		return p.copied
	}
	return 0
}

var (
	usersColumns = []string{"name", "password_hash", "creation_ts", "admin", "is_guest", "appservice_id", "user_type",
		"deactivated", "shadow_banned", "approved", "locked", "suspended"}
	profilesColumns    = []string{"user_id", "full_user_id", "displayname", "avatar_url"}
	threepidsColumns   = []string{"user_id", "medium", "address", "validated_at", "added_at"}
	externalIDsColumns = []string{"auth_provider", "external_id", "user_id"}
)

// restoreUsers writes the archive's users with what Synapse keeps beside
// them: the users row (password hash and flags), the profile (keyed by
// localpart, with full_user_id), threepids, external IDs and the erasure
// flag. It advances user_id_seq past every numeric localpart, as
// synapse_port_db does, so that guest registration finds free IDs.
func restoreUsers(ctx context.Context, tx pgx.Tx, r *archive.Reader) (int64, error) {
	b := newBatcher(tx)
	err := archive.ReadSection(ctx, r, archive.SectionUsers, func(u *archive.User) error {
		localpart, _, ok := strings.Cut(strings.TrimPrefix(u.UserID, "@"), ":")
		if !ok || !strings.HasPrefix(u.UserID, "@") {
			return fmt.Errorf("user %q is not a Matrix user ID", u.UserID)
		}
		var hash, appservice, userType any
		if u.PasswordHash != "" {
			hash = u.PasswordHash
		}
		if u.AppserviceID != "" {
			appservice = u.AppserviceID
		}
		if u.UserType != "" {
			userType = u.UserType
		}
		if err := b.add(ctx, "users", usersColumns, u.UserID, hash, u.CreatedTS/1000, smallint(u.Admin), smallint(u.Guest), appservice, userType,
			smallint(u.Deactivated), u.ShadowBanned, u.Approved, u.Locked, u.Suspended); err != nil {
			return err
		}
		if err := b.add(ctx, "profiles", profilesColumns, localpart, u.UserID, nullable(u.DisplayName), nullable(u.AvatarURL)); err != nil {
			return err
		}
		for _, t := range u.Threepids {
			if err := b.add(ctx, "user_threepids", threepidsColumns, u.UserID, t.Medium, t.Address, t.ValidatedTS, t.AddedTS); err != nil {
				return err
			}
		}
		for _, x := range u.ExternalIDs {
			if err := b.add(ctx, "user_external_ids", externalIDsColumns, x.AuthProvider, x.ExternalID, u.UserID); err != nil {
				return err
			}
		}
		if u.Erased {
			return b.add(ctx, "erased_users", []string{"user_id"}, u.UserID)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("restore users: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("restore users: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT setval('user_id_seq', GREATEST(
		(SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM user_id_seq),
		COALESCE((SELECT max(substring(name FROM '^@([0-9]+):')::bigint) FROM users WHERE name ~ '^@[0-9]+:'), 0) + 1), false)`); err != nil {
		return 0, fmt.Errorf("advance user_id_seq: %w", err)
	}
	return b.copied("users"), nil
}

func smallint(b bool) int16 {
	if b {
		return 1
	}
	return 0
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
