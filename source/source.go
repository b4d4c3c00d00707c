// Package source is the contract between a homeserver implementation's
// data and the exporter: a Source turns one consistent view of a server's
// database (and media store and keys) into the portable records of the
// archive format, as a list of streams. Adapters live below (synapse,
// dendrite); sourcetest is the conformance suite every adapter passes.
//
// A Source only reads. It is opened on one consistent snapshot of the
// database, so everything it emits describes one moment, while the
// homeserver keeps running.
package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ferry-matrix/ferry/archive"
)

// Info describes the server a Source reads.
type Info struct {
	ServerName         string
	Implementation     string // "synapse", "dendrite"
	Version            string // of the implementation, when known
	SchemaVersion      int
	DefaultRoomVersion string
	// SnapshotTime is when the consistent view was taken.
	SnapshotTime time.Time
	// Warnings are things an admin should know before trusting the export,
	// e.g. a schema newer than this Ferry was tested with.
	Warnings []string
}

// Media choices of a filter.
const (
	MediaAll        = "all"        // every local media file (the default of a full export)
	MediaReferenced = "referenced" // only media referenced by exported events and profiles, local or cached remote
	MediaNone       = "none"       // metadata of nothing, no files
)

// Filter selects a partial export; the zero Filter selects everything.
// Every adapter reads it the same way, and the conformance suite
// (sourcetest) checks each part on every adapter whose Capabilities
// declare it:
//
//   - Rooms selects rooms by ID: their room records, state snapshots,
//     events (of every sender), memberships, receipts and redactions, and
//     the room account data of exported users in them. A room that does
//     not exist is an error naming it. Rooms alone carry no accounts: no
//     users, devices, keys, key backups, pushers, filters or global
//     account data.
//   - Users selects users by ID: their accounts, profiles, devices, e2ee
//     keys, key backups, pushers, filters and account data, and of the
//     rooms only their own memberships and receipts. Without Rooms, the
//     rooms are those the users have a current membership in (joined,
//     invited, left or banned), with every sender's events; with Rooms,
//     those rooms only. Users never narrow events to their senders.
//   - Since and Until select timeline events by origin_server_ts, Since
//     included, Until excluded; every state event of a selected room is
//     kept whatever its time, so the room's state stays whole. They
//     combine with Rooms and Users.
//   - Media (see MediaMode for the default): MediaAll exports every local
//     media file, or with Users only the files those users uploaded;
//     MediaReferenced the local files and cached remote copies whose
//     mxc:// URI appears in an exported, unredacted event's content or in
//     an exported user's avatar, whoever uploaded them; MediaNone no
//     media at all.
//
// A source that cannot export part of a selection exactly so says it in
// its Capabilities and refuses it with ErrUnsupported, never with an
// approximation.
type Filter struct {
	Rooms []string  // room IDs; empty: all rooms
	Users []string  // user IDs; empty: all users
	Since time.Time // timeline events at or after (origin_server_ts); zero: open
	Until time.Time // timeline events before; zero: open
	Media string    // MediaAll, MediaReferenced or MediaNone; default: all for a full export, referenced for a partial one
}

// HasTimeRange reports whether f selects events by time.
func (f Filter) HasTimeRange() bool { return !f.Since.IsZero() || !f.Until.IsZero() }

// IsFull reports whether f selects the whole server.
func (f Filter) IsFull() bool {
	return len(f.Rooms) == 0 && len(f.Users) == 0 && !f.HasTimeRange() && (f.Media == "" || f.Media == MediaAll)
}

// MediaMode returns the media choice with its default: all media for a
// full export, referenced media for a partial one.
func (f Filter) MediaMode() string {
	switch {
	case f.Media != "":
		return f.Media
	case len(f.Rooms) == 0 && len(f.Users) == 0 && !f.HasTimeRange():
		return MediaAll
	}
	return MediaReferenced
}

// Validate checks a filter for contradictions.
func (f Filter) Validate() error {
	if !slices.Contains([]string{"", MediaAll, MediaReferenced, MediaNone}, f.Media) {
		return fmt.Errorf("media filter %q: use all, referenced or none", f.Media)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return fmt.Errorf("time range is empty: --until (%s) is not after --since (%s)", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	return nil
}

// Archive describes the filter in the manifest's terms.
func (f Filter) Archive() *archive.Filters {
	if f.IsFull() {
		return nil
	}
	out := &archive.Filters{Rooms: f.Rooms, Users: f.Users, Media: f.MediaMode()}
	if !f.Since.IsZero() {
		out.Since = f.Since.UnixMilli()
	}
	if !f.Until.IsZero() {
		out.Until = f.Until.UnixMilli()
	}
	return out
}

// Options ask for data that is left out by default.
type Options struct {
	AccessTokens      bool // device access tokens (for migrations); sensitive
	OneTimeKeys       bool // e2ee one-time keys
	RedactedOriginals bool // unredacted content of redacted events; sensitive, encrypted archives only
	PrivateServerKey  bool // the server's private signing key; sensitive
	// Encrypted is set by the exporter when the archive is encrypted:
	// sources then include secrets of vendor data (config secrets), marked
	// sensitive, and leave them out otherwise.
	Encrypted bool
}

// Archive lists the options in the manifest's terms.
func (o Options) Archive() map[string]bool {
	m := map[string]bool{}
	for name, on := range map[string]bool{archive.OptAccessTokens: o.AccessTokens, archive.OptOneTimeKeys: o.OneTimeKeys,
		archive.OptRedactedOriginals: o.RedactedOriginals, archive.OptPrivateServerKey: o.PrivateServerKey} {
		if on {
			m[name] = true
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// Sink receives what streams emit. The exporter's sink writes an archive;
// the conformance suite's collects.
type Sink interface {
	// Record emits one record of an m.* section (rec is a pointer to the
	// section's record type). rec, and the memory it points to (an
	// event's JSON), lasts only the call: a source may reuse it for the
	// next record, so a sink that keeps a record keeps a copy.
	Record(section string, rec any) error
	// Blob emits a media file of exactly size bytes and returns its SHA-256 (hex).
	Blob(path string, size int64, r io.Reader) (string, error)
	// File emits a whole file of a vendor namespace; sensitive names
	// fields in it that hold secrets ("org.matrix.synapse/config.json#macaroon_secret_key").
	File(path string, data []byte, records int64, sensitive []string) error
	// Omit records something deliberately or unavoidably left out.
	Omit(o archive.Omission) error
	// Checkpoint says the stream can resume after what it has emitted,
	// by being run again with cursor. Streams call it between records.
	Checkpoint(cursor []byte) error
}

// Stream names: stable, they key resume cursors (a checkpoint names its
// stream) and the personal export picks streams by them. A source emits
// the streams it has in this order; a vendor stream (its own files) is
// named after the implementation ("synapse") and comes last.
const (
	StreamServerKeys  = "server_keys"
	StreamUsers       = "users"
	StreamDevices     = "devices"
	StreamE2EEKeys    = "e2ee_keys"
	StreamKeyBackups  = "key_backups"
	StreamPushers     = "pushers"
	StreamFilters     = "filters"
	StreamAccountData = "account_data"
	StreamRooms       = "rooms"
	StreamMemberships = "memberships"
	StreamReceipts    = "receipts"
	StreamState       = "state"
	StreamEvents      = "events"
	StreamRedactions  = "redactions"
	StreamMedia       = "media"
)

// Stream is one record stream of a Source.
type Stream struct {
	// Name is short and stable (a Stream* constant, or the implementation's
	// name for its vendor stream); it keys resume cursors.
	Name string
	// Count estimates how many records Run will emit, for progress. It may
	// be approximate and is called before Run.
	Count func(ctx context.Context) (int64, error)
	// Run emits the stream's records, starting after cursor (nil: from the
	// start). It stops with ctx.Err() when ctx is cancelled.
	Run func(ctx context.Context, cursor []byte, sink Sink) error
}

// Source is a server's data as streams.
type Source interface {
	Info() Info
	// Capabilities says which parts of a Filter the source exports; the
	// same for every Source of an implementation, so that a selection can
	// be checked before a source is opened (Capabilities.Check).
	Capabilities() Capabilities
	// Streams returns the streams of an export with filter f and options o,
	// in the order an exporter should run them. A filter the capabilities
	// do not cover fails with ErrUnsupported.
	Streams(ctx context.Context, f Filter, o Options) ([]Stream, error)
	// Close ends the snapshot and releases connections.
	Close() error
}

// Capabilities are the parts of a Filter a source exports exactly as
// Filter's documentation says. A whole-server export is always supported.
type Capabilities struct {
	// Implementation names the source in refusals ("synapse", "dendrite").
	Implementation string
	Rooms          bool // Filter.Rooms
	Users          bool // Filter.Users
	TimeRange      bool // Filter.Since and Filter.Until
	// ReferencedMedia: MediaReferenced. MediaAll and MediaNone are always
	// supported.
	ReferencedMedia bool
}

// Check refuses, with ErrUnsupported, a filter whose parts the source
// cannot export. Every surface calls it when a selection is submitted (so
// chat, the API and the CLI refuse with the same message), and Streams
// again (a refusal at run time is as permanent).
func (c Capabilities) Check(f Filter) error {
	name := c.Implementation
	if name == "" {
		name = "this"
	}
	var refused []string
	if len(f.Rooms) > 0 && !c.Rooms {
		refused = append(refused, "a room selection (rooms): export the whole server instead")
	}
	if len(f.Users) > 0 && !c.Users {
		refused = append(refused, "a user selection (users): export the whole server instead")
	}
	if f.HasTimeRange() && !c.TimeRange {
		refused = append(refused, "a time range (since, until): export whole rooms or users without one instead")
	}
	if f.MediaMode() == MediaReferenced && !c.ReferencedMedia {
		refused = append(refused, "only referenced media: choose media all or none instead")
	}
	if len(refused) == 0 {
		return nil
	}
	return fmt.Errorf("%w: the %s source cannot export %s", ErrUnsupported, name, strings.Join(refused, "; nor "))
}

// ErrUnsupported means a source cannot export a selection (Capabilities).
// It is permanent: retrying the same selection fails the same way.
var ErrUnsupported = errors.New("selection not supported")

// Estimator is implemented by sources that can predict the size of an
// export's archive before it starts (for progress and disk planning).
type Estimator interface {
	EstimateSize(ctx context.Context, f Filter, o Options) (int64, error)
}

// ErrSchema means the database's schema is not one this adapter can read.
var ErrSchema = errors.New("unsupported database schema")

// Cursor helpers: streams keep their resume position as JSON.

// EncodeCursor encodes a stream's resume position.
func EncodeCursor(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("source: cursor %T does not encode: %v", v, err))
	}
	return b
}

// DecodeCursor decodes a cursor into v; a nil cursor leaves v unchanged.
func DecodeCursor(cursor []byte, v any) error {
	if len(cursor) == 0 {
		return nil
	}
	if err := json.Unmarshal(cursor, v); err != nil {
		return fmt.Errorf("resume cursor %q is not valid: %w", cursor, err)
	}
	return nil
}
