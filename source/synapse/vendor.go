package synapse

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/ferry-matrix/ferry/source"
)

// VendorItem is the namespace for Synapse-only data.
const VendorItem = "org.matrix.synapse"

// vendorTables are Synapse tables with no m.* form, exported as JSON
// arrays of rows (columns as Synapse names them) into org.matrix.synapse/.
// Secret tables (registration tokens let anyone register) go only into
// encrypted archives, marked sensitive.
var vendorTables = []struct {
	table, file, order string
	secret             bool
}{
	{"registration_tokens", "registration_tokens.json", "token", true},
	{"event_reports", "event_reports.json", "id", false},
	{"room_retention", "room_retention.json", "room_id, event_id", false},
	{"ratelimit_override", "ratelimit_override.json", "user_id", false},
	{"users_pending_deactivation", "users_pending_deactivation.json", "user_id", false},
}

// vendorStream exports Synapse-only tables and the homeserver config
// (full exports only). Importers into other implementations report these
// with the reason code target_no_place.
func (p *plan) vendorStream() source.Stream {
	s := p.s
	return source.Stream{
		Name:  "synapse",
		Count: func(context.Context) (int64, error) { return int64(len(vendorTables) + 1), nil },
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			for _, vt := range vendorTables {
				exists, err := s.count(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`, vt.table)
				if err != nil {
					return err
				}
				if exists == 0 {
					continue
				}
				var data []byte
				var n int64
				err = s.tx.QueryRow(ctx, `SELECT COALESCE(json_agg(t ORDER BY `+vt.order+`), '[]'::json)::text, count(*) FROM `+vt.table+` t`).Scan(&data, &n)
				if err != nil {
					return fmt.Errorf("%s: %w", vt.table, err)
				}
				if n == 0 {
					continue
				}
				if len(data) > 32<<20 {
					if err := omit(sink, "excluded_by_default", VendorItem+"/"+vt.file, "", fmt.Sprintf("%d rows, too large for one vendor file", n)); err != nil {
						return err
					}
					continue
				}
				var sensitive []string
				if vt.secret {
					if !p.o.Encrypted {
						if err := omit(sink, "excluded_by_default", VendorItem+"/"+vt.file, "", fmt.Sprintf("%d rows of secrets: exported only into encrypted archives", n)); err != nil {
							return err
						}
						continue
					}
					sensitive = []string{VendorItem + "/" + vt.file}
				}
				if err := sink.File(VendorItem+"/"+vt.file, data, n, sensitive); err != nil {
					return err
				}
			}
			if s.hsConf == nil {
				return nil
			}
			var found []string
			cfg := redactConfig(s.hsConf.raw, "", p.o.Encrypted, &found)
			data, err := json.MarshalIndent(cfg, "", "  ")
			if err != nil {
				return fmt.Errorf("homeserver config: %w", err)
			}
			sort.Strings(found)
			var sensitive []string
			if p.o.Encrypted {
				for _, f := range found {
					sensitive = append(sensitive, VendorItem+"/homeserver.json#"+f)
				}
			}
			return sink.File(VendorItem+"/homeserver.json", data, 1, sensitive)
		},
	}
}
