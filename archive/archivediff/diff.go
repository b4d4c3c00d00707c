// Package archivediff compares two archives record by record, matching
// records by their natural key (a user by user ID, an event by event ID, a
// device by user and device ID, ...) rather than by position, so that two
// exports of the same server made by different tools or at different times
// can be compared.
//
// Normalisations (docs/FORMAT.md, "Comparing archives"):
//   - state snapshot IDs are local to an export: snapshots are not compared
//     as records; an event's state_before and a room's current_state are
//     replaced by a digest of the full state they resolve to;
//   - stream orderings are local to the source and ignored;
//   - lists that are sets (aliases, extremities) are compared sorted;
//   - JSON held in records other than events (account data, pusher data,
//     filters, keys, backups) is compared in canonical form; event JSON is
//     compared byte for byte, as the format carries it;
//   - the blob index is writer-made and ignored; media files are compared by
//     the SHA-256 their media records carry; m.core.json by its fields.
//
// Memory: a 32-byte digest per record of both archives plus the snapshots
// (their deltas), so a diff of two huge archives needs memory in
// proportion to their record counts.
package archivediff

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/fxamacker/cbor/v2"
	"maunium.net/go/mautrix/crypto/canonicaljson"

	"github.com/ferry-matrix/ferry/archive"
)

// Kind of a difference.
type Kind string

const (
	OnlyInA Kind = "only_in_a"
	OnlyInB Kind = "only_in_b"
	Changed Kind = "changed"
)

// Difference is one record that differs.
type Difference struct {
	Kind    Kind     `json:"kind"`
	Section string   `json:"section"`
	Key     string   `json:"key"`
	Fields  []string `json:"fields,omitempty"` // for Changed: "field: A -> B"
}

func (d Difference) String() string {
	s := fmt.Sprintf("%s %s %s", d.Kind, d.Section, d.Key)
	for _, f := range d.Fields {
		s += "\n    " + f
	}
	return s
}

// Result of a comparison.
type Result struct {
	Compared    int64        `json:"compared"` // records seen in A
	Differences []Difference `json:"differences"`
	Total       int64        `json:"total"` // all differences, also those past MaxDifferences
}

// Equal reports whether no difference was found.
func (r *Result) Equal() bool { return r.Total == 0 }

// MaxDifferences caps how many differences are listed with field details.
const MaxDifferences = 1000

// Compare compares archives a and b.
func Compare(ctx context.Context, a, b *archive.Reader) (*Result, error) {
	da, err := digest(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("archive A: %w", err)
	}
	db, err := digest(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("archive B: %w", err)
	}
	res := &Result{Compared: int64(len(da.sums))}
	changed := map[recordKey]bool{}
	var keys []recordKey
	for k := range da.sums {
		keys = append(keys, k)
	}
	for k := range db.sums {
		if _, ok := da.sums[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].section != keys[j].section {
			return keys[i].section < keys[j].section
		}
		return keys[i].key < keys[j].key
	})
	for _, k := range keys {
		sa, inA := da.sums[k]
		sb, inB := db.sums[k]
		var kind Kind
		switch {
		case !inB:
			kind = OnlyInA
		case !inA:
			kind = OnlyInB
		case sa != sb:
			kind = Changed
		default:
			continue
		}
		res.Total++
		if len(res.Differences) < MaxDifferences {
			res.Differences = append(res.Differences, Difference{Kind: kind, Section: k.section, Key: k.key})
			if kind == Changed {
				changed[k] = true
			}
		}
	}
	if len(changed) > 0 {
		va, err := values(ctx, a, da, changed)
		if err != nil {
			return nil, err
		}
		vb, err := values(ctx, b, db, changed)
		if err != nil {
			return nil, err
		}
		for i, d := range res.Differences {
			if d.Kind == Changed {
				k := recordKey{d.Section, d.Key}
				res.Differences[i].Fields = fieldDiff("", va[k], vb[k])
			}
		}
	}
	return res, nil
}

type recordKey struct{ section, key string }

type digests struct {
	sums  map[recordKey][32]byte
	state *stateDigests
}

// digest reads every record of r once and keeps a digest per natural key.
func digest(ctx context.Context, r *archive.Reader) (*digests, error) {
	st, err := loadSnapshots(ctx, r)
	if err != nil {
		return nil, err
	}
	d := &digests{sums: map[recordKey][32]byte{}, state: st}
	err = eachRecord(ctx, r, st, func(section, key string, normal any) error {
		b, err := json.Marshal(normal)
		if err != nil {
			return err
		}
		d.sums[recordKey{section, key}] = sha256.Sum256(b)
		return nil
	})
	return d, err
}

// values re-reads r for the records in want, as generic maps.
func values(ctx context.Context, r *archive.Reader, d *digests, want map[recordKey]bool) (map[recordKey]any, error) {
	out := map[recordKey]any{}
	err := eachRecord(ctx, r, d.state, func(section, key string, normal any) error {
		k := recordKey{section, key}
		if !want[k] {
			return nil
		}
		b, err := json.Marshal(normal)
		if err != nil {
			return err
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		out[k] = showJSONFields(v)
		return nil
	})
	return out, err
}

// eachRecord calls fn with every record's section, natural key and
// normalised form.
func eachRecord(ctx context.Context, r *archive.Reader, st *stateDigests, fn func(section, key string, normal any) error) error {
	return r.Walk(ctx, func(f *archive.File) error {
		if f.Blob != nil {
			return nil // media files are compared through their records' SHA-256
		}
		path := f.Entry.Path
		section := archive.SectionOf(path)
		switch {
		case path == archive.CoreFile:
			var core map[string]any
			if err := json.Unmarshal(f.Data, &core); err != nil {
				return err
			}
			return fn(archive.CoreFile, "core", core)
		case section == archive.SectionStateSnapshots || section == "m.media/blob_index":
			return nil
		case !f.Known || !strings.HasPrefix(path, "m.") || !strings.HasSuffix(path, ".cbor"):
			sum := sha256.Sum256(f.Data)
			return fn(archive.ItemOf(path), path, fmt.Sprintf("%x", sum))
		}
		return archive.RawRecords(r, f, func(raw cbor.RawMessage) error {
			key, normal, err := normalise(r, st, section, raw)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			return fn(section, key, normal)
		})
	})
}

func normalise(r *archive.Reader, st *stateDigests, section string, raw cbor.RawMessage) (string, any, error) {
	switch section {
	case archive.SectionServerKeys:
		var v archive.ServerKey
		return decode(r, raw, &v, func() string { return v.ServerName + " " + v.KeyID })
	case archive.SectionUsers:
		var v archive.User
		return decode(r, raw, &v, func() string { return v.UserID })
	case archive.SectionDevices:
		var v archive.Device
		return decode(r, raw, &v, func() string { return v.UserID + " " + v.DeviceID })
	case archive.SectionPushers:
		var v archive.Pusher
		return decode(r, raw, &v, func() string { v.Data = canon(v.Data); return v.UserID + " " + v.AppID + " " + v.PushKey })
	case archive.SectionFilters:
		var v archive.Filter
		return decode(r, raw, &v, func() string { v.JSON = canon(v.JSON); return v.UserID + " " + v.FilterID })
	case archive.SectionAccountData:
		var v archive.AccountData
		return decode(r, raw, &v, func() string {
			v.Content = canon(v.Content)
			return strings.Join([]string{v.UserID, v.RoomID, v.Type}, " ")
		})
	case archive.SectionE2EEKeys:
		var v archive.E2EEKey
		return decode(r, raw, &v, func() string {
			v.JSON = canon(v.JSON)
			return strings.Join([]string{v.Kind, v.UserID, v.DeviceID, v.KeyID, v.Usage, v.TargetUserID, v.TargetDeviceID}, " ")
		})
	case archive.SectionBackupVersions:
		var v archive.KeyBackupVersion
		return decode(r, raw, &v, func() string { v.AuthData = canon(v.AuthData); return v.UserID + " " + v.Version })
	case archive.SectionBackupSessions:
		var v archive.KeyBackupSession
		return decode(r, raw, &v, func() string {
			v.SessionData = canon(v.SessionData)
			return strings.Join([]string{v.UserID, v.Version, v.RoomID, v.SessionID}, " ")
		})
	case archive.SectionRooms:
		var v archive.Room
		key, _, err := decode(r, raw, &v, func() string { return v.RoomID })
		if err != nil {
			return "", nil, err
		}
		slices.Sort(v.Aliases)
		slices.Sort(v.ForwardExtremities)
		slices.Sort(v.BackwardExtremities)
		return key, fields(&v, map[string]any{"current_state": st.of(v.CurrentState)}), nil
	case archive.SectionMemberships:
		var v archive.Membership
		return decode(r, raw, &v, func() string { return v.RoomID + " " + v.UserID })
	case archive.SectionReceipts:
		var v archive.Receipt
		return decode(r, raw, &v, func() string {
			v.Data = canon(v.Data)
			return strings.Join([]string{v.RoomID, v.UserID, v.Type, v.ThreadID}, " ")
		})
	case archive.SectionEvents:
		var v archive.Event
		key, _, err := decode(r, raw, &v, func() string { return v.EventID })
		if err != nil {
			return "", nil, err
		}
		return key, fields(&v, map[string]any{"json": string(v.JSON), "state_before": st.of(v.StateBefore), "stream_ordering": nil}), nil
	case archive.SectionRedactions:
		var v archive.Redaction
		return decode(r, raw, &v, func() string { return v.EventID })
	case archive.SectionMedia:
		var v archive.Media
		return decode(r, raw, &v, func() string { return v.Origin + "/" + v.MediaID })
	case archive.SectionOmissions:
		var v archive.Omission
		return decode(r, raw, &v, func() string { return strings.Join([]string{v.Code, v.Item, v.ID}, " ") })
	}
	var v any
	if err := r.DecodeRaw(raw, &v); err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(raw)
	return fmt.Sprintf("%x", sum[:8]), v, nil
}

func decode(r *archive.Reader, raw cbor.RawMessage, v any, key func() string) (string, any, error) {
	if err := r.DecodeRaw(raw, v); err != nil {
		return "", nil, err
	}
	k := key() // also normalises v
	return k, fields(v, nil), nil
}

var genericDec, _ = cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any(nil))}.DecMode()

// fields turns a record into a map keyed by its format field names, with
// overrides applied (a nil override removes the field).
func fields(v any, overrides map[string]any) map[string]any {
	b, err := cbor.Marshal(v)
	m := map[string]any{}
	if err == nil {
		err = genericDec.Unmarshal(b, &m)
	}
	if err != nil {
		m = map[string]any{"unencodable": err.Error()}
	}
	for k, o := range overrides {
		if o == nil {
			delete(m, k)
		} else {
			m[k] = o
		}
	}
	return m
}

// canon returns JSON in canonical form, or the input when it is not JSON.
func canon(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	out, err := canonicaljson.CanonicalJSON(bytes.Clone(b))
	if err != nil {
		return b
	}
	return out
}

// fieldDiff lists the fields that differ between two generic values.
func fieldDiff(prefix string, a, b any) []string {
	if reflect.DeepEqual(a, b) {
		return nil
	}
	ma, okA := a.(map[string]any)
	mb, okB := b.(map[string]any)
	if !okA || !okB {
		name := prefix
		if name == "" {
			name = "record"
		}
		if sa, ok := a.(string); ok {
			if sb, ok := b.(string); ok && (len(sa) > 120 || len(sb) > 120) {
				return []string{fmt.Sprintf("%s: differs from byte %d: %s -> %s", name, commonPrefix(sa, sb), around(sa, sb), around(sb, sa))}
			}
		}
		return []string{fmt.Sprintf("%s: %s -> %s", name, short(a), short(b))}
	}
	var names []string
	for k := range ma {
		names = append(names, k)
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var out []string
	for _, k := range names {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		out = append(out, fieldDiff(p, ma[k], mb[k])...)
	}
	return out
}

// commonPrefix is the length of the common prefix of a and b.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// around shows a from a little before where it first differs from b.
func around(a, b string) string {
	start := max(commonPrefix(a, b)-40, 0)
	end := min(start+120, len(a))
	out := fmt.Sprintf("%q", a[start:end])
	if start > 0 {
		out = "..." + out
	}
	if end < len(a) {
		out += "..."
	}
	return out
}

func short(v any) string {
	if v == nil {
		return "(absent)"
	}
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		return string(b[:117]) + "..."
	}
	return string(b)
}

// jsonFields hold JSON as bytes in records; Go's JSON shows them as base64.
var jsonFields = []string{"content", "data", "json", "auth_data", "session_data"}

// showJSONFields turns base64-encoded JSON fields back into JSON, so that a
// field difference reads as JSON.
func showJSONFields(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for _, name := range jsonFields {
		s, ok := m[name].(string)
		if !ok {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(s)
		var parsed any
		if err == nil && json.Unmarshal(raw, &parsed) == nil {
			m[name] = parsed
		}
	}
	return m
}
