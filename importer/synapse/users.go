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
//
// A pipelined batcher (newPipelinedBatcher) copies a full batch of every
// table on another goroutine while the caller builds the next, so that
// PostgreSQL loads one batch while the restore decodes the next; one batch
// is in flight at a time, its tables copied in the order they were first
// used (parents first). Its transaction is the batcher's alone until
// flush returns. A failed COPY is returned by a later add or by flush.
//
// Tables in freeze, which the transaction truncated, are copied with
// COPY ... FREEZE (copyFrozen).
type batcher struct {
	tx     pgx.Tx
	tables map[string]*pendingRows
	order  []string
	freeze map[string]bool
	types  map[string][]uint32 // the column types of the freeze tables
	// pipelined: batches go to a goroutine; inFlight is the one running,
	// inFlightJobs its tables' rows.
	pipelined    bool
	batch        int
	inFlight     chan error
	inFlightJobs []copyJob
}

// pendingRows are a table's rows waiting for their COPY. The values of
// the rows are copied into vals, back to back, each row a slice of it:
// the caller's row does not outlive add, and once a batch is copied its
// two arrays, cleared, take the next batch's rows (spareRows, spareVals),
// so that a load of millions of rows allocates a few arrays a table, not
// one a row.
type pendingRows struct {
	columns   []string
	rows      [][]any
	vals      []any
	copied    int64
	spareRows [][]any
	spareVals []any
}

func (p *pendingRows) add(row []any) {
	if len(p.vals)+len(row) > cap(p.vals) {
		// A new array; the rows so far keep the one they are in.
		p.vals = make([]any, 0, max(2*cap(p.vals), 64*len(row)))
	}
	start := len(p.vals)
	p.vals = append(p.vals, row...)
	p.rows = append(p.rows, p.vals[start:len(p.vals):len(p.vals)])
}

// cleared returns a copied batch's arrays emptied and cleared, for
// another batch: their values (the archive's JSON among them) would keep
// memory otherwise.
func cleared(rows [][]any, vals []any) ([][]any, []any) {
	clear(rows)
	clear(vals)
	return rows[:0], vals[:0]
}

func newBatcher(tx pgx.Tx) *batcher {
	return &batcher{tx: tx, tables: map[string]*pendingRows{}, batch: copyBatch}
}

// pipelinedBatch is how many rows of one table a pipelined batcher
// gathers before handing the batch over: two batches (the one being
// built, the one being copied) of some tens of MB at most.
const pipelinedBatch = 10000

// newPipelinedBatcher returns a pipelined batcher that copies the tables
// in freeze (truncated in tx's current subtransaction) frozen.
func newPipelinedBatcher(tx pgx.Tx, freeze map[string]bool) *batcher {
	b := newBatcher(tx)
	b.pipelined, b.batch, b.freeze = true, pipelinedBatch, freeze
	return b
}

// add queues a row of table (with these columns, the same on every call).
func (b *batcher) add(ctx context.Context, table string, columns []string, row ...any) error {
	p := b.tables[table]
	if p == nil {
		p = &pendingRows{columns: columns}
		b.tables[table] = p
		b.order = append(b.order, table)
	}
	p.add(row)
	if len(p.rows) >= b.batch {
		// Tables used earlier are parents (foreign keys): flush them first.
		if b.pipelined {
			return b.handOff(ctx)
		}
		return b.flush(ctx)
	}
	return nil
}

func (b *batcher) flushTable(ctx context.Context, table string) error {
	p := b.tables[table]
	if len(p.rows) == 0 {
		return nil
	}
	n, err := b.copy(ctx, table, p.columns, p.rows)
	if err != nil {
		return fmt.Errorf("copy %d rows into %s: %w", len(p.rows), table, err)
	}
	p.copied += n
	p.rows, p.vals = cleared(p.rows, p.vals)
	return nil
}

// copy copies rows into table, frozen when the table is in b.freeze.
func (b *batcher) copy(ctx context.Context, table string, columns []string, rows [][]any) (int64, error) {
	if !b.freeze[table] {
		return b.tx.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(rows))
	}
	oids, ok := b.types[table]
	if !ok {
		var err error
		if oids, err = columnTypes(ctx, b.tx, table, columns); err != nil {
			return 0, err
		}
		if b.types == nil {
			b.types = map[string][]uint32{}
		}
		b.types[table] = oids
	}
	return copyFrozen(ctx, b.tx, table, columns, oids, rows)
}

// copyJob is one table's share of a batch handed over.
type copyJob struct {
	table   string
	columns []string
	rows    [][]any
	vals    []any // the array of rows' values, to recycle
}

// wait waits for the batch in flight, if any.
func (b *batcher) wait() error {
	if b.inFlight == nil {
		return nil
	}
	err := <-b.inFlight
	b.inFlight = nil
	if err == nil {
		for _, j := range b.inFlightJobs {
			p := b.tables[j.table]
			p.spareRows, p.spareVals = cleared(j.rows, j.vals)
		}
	}
	b.inFlightJobs = nil
	return err
}

// handOff waits for the batch in flight, then hands over what is pending.
func (b *batcher) handOff(ctx context.Context) error {
	if err := b.wait(); err != nil {
		return err
	}
	var jobs []copyJob
	for _, table := range b.order {
		p := b.tables[table]
		if len(p.rows) == 0 {
			continue
		}
		jobs = append(jobs, copyJob{table, p.columns, p.rows, p.vals})
		p.copied += int64(len(p.rows))
		p.rows, p.vals = p.spareRows, p.spareVals
		p.spareRows, p.spareVals = nil, nil
	}
	if len(jobs) == 0 {
		return nil
	}
	done := make(chan error, 1)
	b.inFlight, b.inFlightJobs = done, jobs
	go func() {
		for _, j := range jobs {
			if _, err := b.copy(ctx, j.table, j.columns, j.rows); err != nil {
				done <- fmt.Errorf("copy %d rows into %s: %w", len(j.rows), j.table, err)
				return
			}
		}
		done <- nil
	}()
	return nil
}

// flush copies what is left, in the order the tables were first used
// (parents before children), and returns once it is copied.
func (b *batcher) flush(ctx context.Context) error {
	if b.pipelined {
		if err := b.handOff(ctx); err != nil {
			return err
		}
		return b.wait()
	}
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
	err := readSection(ctx, r, archive.SectionUsers, func(u *archive.User) error {
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
