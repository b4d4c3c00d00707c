package synapse

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
)

// insertUser writes one user across several tables in one transaction, as
// Synapse's registration does.
func insertUser(t *testing.T, url, localpart string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	id := "@" + localpart + ":fixture.test"
	batch := `BEGIN;
		INSERT INTO users (name, creation_ts) VALUES ('` + id + `', 1795000000);
		INSERT INTO profiles (user_id, displayname) VALUES ('` + localpart + `', 'Late ` + localpart + `');
		INSERT INTO account_data (user_id, account_data_type, stream_id, content) VALUES ('` + id + `', 'org.example.late', 99999, '{"late":true}');
		INSERT INTO devices (user_id, device_id, display_name) VALUES ('` + id + `', 'LATEDEVICE', 'late device');
		COMMIT;`
	if _, err := conn.Exec(ctx, batch); err != nil {
		t.Fatal(err)
	}
}

// Rows committed while an export runs are wholly out of it; rows committed
// before it started are wholly in: the export reads one snapshot.
func TestExportReadsOneSnapshot(t *testing.T) {
	ctx := context.Background()
	cfg := fixture(t, "synapse-1.67")
	insertUser(t, cfg.Database, "early")
	src, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	streams, err := src.Streams(ctx, source.Filter{}, source.Options{Encrypted: true})
	if err != nil {
		t.Fatal(err)
	}
	// Commit a user in the middle of the export, after its first stream.
	records := sourcetest.Collect(t, streamsOnly{src, streams[:1]}, source.Filter{}, source.Options{})
	insertUser(t, cfg.Database, "late")
	for k, v := range sourcetest.Collect(t, streamsOnly{src, streams[1:]}, source.Filter{}, source.Options{}) {
		records[k] = append(records[k], v...)
	}
	seen := func(id string) (user, profile, data, device bool) {
		for _, r := range records[archive.SectionUsers] {
			if u := r.(*archive.User); u.UserID == id {
				user, profile = true, strings.HasPrefix(u.DisplayName, "Late ")
			}
		}
		for _, r := range records[archive.SectionAccountData] {
			data = data || r.(*archive.AccountData).UserID == id && r.(*archive.AccountData).Type == "org.example.late"
		}
		for _, r := range records[archive.SectionDevices] {
			device = device || r.(*archive.Device).UserID == id
		}
		return
	}
	if u, p, d, dev := seen("@early:fixture.test"); !u || !p || !d || !dev {
		t.Errorf("rows committed before the export: user %v profile %v account data %v device %v, want all", u, p, d, dev)
	}
	if u, p, d, dev := seen("@late:fixture.test"); u || p || d || dev {
		t.Errorf("rows committed during the export leaked in: user %v profile %v account data %v device %v", u, p, d, dev)
	}
}

// streamsOnly is a Source whose Streams are a fixed list.
type streamsOnly struct {
	source.Source
	streams []source.Stream
}

func (s streamsOnly) Streams(context.Context, source.Filter, source.Options) ([]source.Stream, error) {
	return s.streams, nil
}

// The export never writes: it runs in a READ ONLY transaction, and a role
// that may only SELECT is enough.
func TestExportNeedsOnlyRead(t *testing.T) {
	ctx := context.Background()
	cfg := fixture(t, "synapse-1.67")
	conn, err := pgx.Connect(ctx, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	db := conn.Config().Database
	for _, q := range []string{`DROP ROLE IF EXISTS ferry_reader_` + db, `CREATE ROLE ferry_reader_` + db + ` LOGIN`,
		`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ferry_reader_` + db} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	reader := cfg
	reader.Database = strings.Replace(cfg.Database, "postgres@", "ferry_reader_"+db+"@", 1)
	r, _ := export(t, reader, source.Filter{}, source.Options{})
	rep, err := archive.Validate(ctx, r)
	if err != nil || !rep.OK() || rep.Events != 1630 {
		t.Fatalf("export as a read-only role: %v %+v", err, rep)
	}
	src, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.tx.Exec(ctx, `DELETE FROM users`); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("a write inside the export's transaction: %v, want a read-only error", err)
	}
}
