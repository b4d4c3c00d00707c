// Package dendrite imports a Ferry archive into a stopped, empty Dendrite
// v0.15.2 homeserver: Target is Dendrite's importer.Target (NewTarget), run
// through importer.Run.
//
// Events go through Dendrite's own roomserver input, so that Dendrite's
// sync API and federation API build their tables as they would for events
// arriving over federation; users, devices, account data, key backups and
// media go through Dendrite's user and media APIs. Both run in a helper
// binary (ferry-dendrite-import, tools/dendrite/importhelper) built against
// Dendrite's packages in its own module, driven over a pipe. Federation is
// disabled in the helper: nothing is sent to other servers.
//
// Order per room: outliers (and events the source rejected or soft-failed)
// as outliers, then every other event in the archive's topological order as
// a new event with the archive's state-before given explicitly.
//
// An import is idempotent: everything already in the target is skipped, so
// an interrupted import run again completes without duplicates. The target
// must be empty when an import starts (no users, no rooms), unless it is a
// rerun of the same archive (a marker file beside dendrite.yaml says so) or
// the caller allows a non-empty target explicitly.
package dendrite

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/importer/dendrite/wire"
	"github.com/ferry-matrix/ferry/source"
	dsource "github.com/ferry-matrix/ferry/source/dendrite"
)

// Config says where the target Dendrite lives.
type Config struct {
	// ConfigPath is the target's dendrite.yaml.
	ConfigPath string
	// Helper is the ferry-dendrite-import binary; empty: FindHelper.
	Helper string
	// The import helper's own lines (progress of its long waits, notes
	// for the person running the import) go to the context's logger
	// (zerolog.Ctx); phases and counts go to each import's
	// importer.Progress.
}

// Target is a stopped Dendrite v0.15.2 as an importer.Target. It holds no
// state between calls: every call reads the target afresh.
type Target struct {
	cfg Config
}

var (
	_ importer.Target  = (*Target)(nil)
	_ importer.Planner = (*Target)(nil)
)

// NewTarget returns the Dendrite that c describes as an import target.
// Nothing is read until a method is called.
func NewTarget(c Config) *Target {
	return &Target{cfg: c}
}

// SupportedRoomVersions are the room versions Dendrite v0.15.2 supports.
var SupportedRoomVersions = []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}

// Capabilities says what Dendrite cannot hold or rebuilds itself, for
// previews and fidelity reports: a new value each call.
func (t *Target) Capabilities() *fidelity.Target {
	return &fidelity.Target{
		Name:         targetName,
		RoomVersions: SupportedRoomVersions,
		Itemized:     []string{synapseVendor},
		Sections: map[string]fidelity.Handling{
			archive.SectionPushers:     fidelity.Rebuilds, // clients register their pushers again on start
			archive.SectionFilters:     fidelity.Rebuilds, // clients create filters again
			archive.SectionMemberships: fidelity.Rebuilds, // derived from room state
			archive.SectionRedactions:  fidelity.Rebuilds, // derived from the redaction events
		},
		Notes: map[string]string{
			archive.SectionPushers:        "none kept: clients register their pushers again when they next start",
			archive.SectionFilters:        "none kept: clients upload their filters again",
			archive.SectionStateSnapshots: "Dendrite keeps each distinct room state once (Synapse's state groups repeat some)",
		},
	}
}

// targetName is what this package imports into.
const targetName = "Dendrite v0.15.2"

// ErrRefused marks checks that stop an import before it writes anything:
// importer.ErrRefused itself.
var ErrRefused = importer.ErrRefused

func refuse(format string, args ...any) error { return importer.Refuse(format, args...) }

// markerName is the file beside dendrite.yaml recording an import in
// progress or done, so that a rerun of the same archive may resume.
const markerName = "ferry-import.json"

type marker struct {
	ArchiveID string    `json:"archive_id"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished,omitzero"`
}

func (t *Target) markerPath() string {
	return filepath.Join(filepath.Dir(t.cfg.ConfigPath), markerName)
}

// resuming reads the marker: an import of this archive was started here.
func (t *Target) resuming(r *archive.Reader) (*marker, bool) {
	prev, _ := readMarker(t.markerPath())
	return prev, prev != nil && prev.ArchiveID == r.Manifest().ArchiveID
}

// Check reads the target, never writing: its config must name the
// archive's server, its databases must be initialised by Dendrite, and it
// must hold no users or rooms, unless this is a rerun of the same archive
// (the marker beside dendrite.yaml says so) or opts.AllowNonEmpty.
func (t *Target) Check(ctx context.Context, r *archive.Reader, opts importer.Options) (*importer.State, error) {
	cfg, err := dsource.LoadConfig(t.cfg.ConfigPath)
	if err != nil {
		return nil, refuse("%v", err)
	}
	if name := r.Core().ServerName; name != cfg.Global.ServerName {
		return nil, refuse("the archive is of server %q but the target Dendrite is %q: event IDs, signatures and user IDs name the server, so an archive can only be imported into a server of the same name (set global.server_name in %s)",
			name, cfg.Global.ServerName, t.cfg.ConfigPath)
	}
	_, resuming := t.resuming(r)
	state := &importer.State{Name: targetName, Resuming: resuming}
	src, err := dsource.Open(ctx, t.cfg.ConfigPath)
	if err != nil && resuming {
		// An import of this archive was killed here: its unfinished SQLite
		// transaction blocks read-only access until the helper, which
		// writes, rolls it back. The target is known to be ours.
		return state, nil
	}
	if err != nil {
		return nil, refuse("cannot read the target Dendrite (%v): its databases must exist and be initialised by Dendrite v0.15.2 (start it once on them, then stop it)", err)
	}
	defer src.Close()
	if state.Users, state.Rooms, err = src.Census(ctx); err != nil {
		return nil, refuse("the target's databases are not initialised by Dendrite v0.15.2 (%v): start Dendrite once on them, then stop it", err)
	}
	if (state.Users > 0 || state.Rooms > 0) && !resuming && !opts.AllowNonEmpty {
		return nil, refuse("the target Dendrite is not empty (%d users, %d rooms) and no import of this archive was started there: import into a fresh Dendrite, or allow a non-empty target explicitly (--force-non-empty)", state.Users, state.Rooms)
	}
	return state, nil
}

// Plan counts what an import would write (res.InArchive) and adds to
// res.Report what Dendrite will not take, writing nothing: a dry run's
// account. Import does the same itself.
func (t *Target) Plan(ctx context.Context, r *archive.Reader, opts importer.Options, res *importer.Result) error {
	if res.Report == nil {
		res.Report = &fidelity.Report{}
	}
	_, err := plan(ctx, r, opts, res)
	return err
}

// Import writes r into the target, which Check passed: the marker first,
// then the archive's signing key, then everything else through the import
// helper. Run again after an interruption, it skips what the target has.
func (t *Target) Import(ctx context.Context, r *archive.Reader, opts importer.Options, p importer.Progress, res *importer.Result) error {
	if p == nil {
		p = importer.NoProgress
	}
	if res.Report == nil {
		res.Report = &fidelity.Report{}
	}
	cfg, err := dsource.LoadConfig(t.cfg.ConfigPath)
	if err != nil {
		return refuse("%v", err)
	}
	pl, err := plan(ctx, r, opts, res)
	if err != nil {
		return err
	}
	bin, err := FindHelper(t.cfg.Helper)
	if err != nil {
		return err
	}
	// The first write.
	started := time.Now().UTC()
	if prev, resuming := t.resuming(r); resuming {
		started = prev.Started
	}
	m := &marker{ArchiveID: r.Manifest().ArchiveID, Started: started}
	if err := writeMarker(t.markerPath(), m); err != nil {
		return err
	}
	res.Files = append(res.Files, t.markerPath()+" (records this import, so that a rerun of the same archive resumes)")
	if err := installSigningKey(ctx, cfg, r, res); err != nil {
		return err
	}
	p.Phase("starting Dendrite's components (import helper)", 0)
	h, err := startHelper(ctx, bin, t.cfg.ConfigPath)
	if err != nil {
		return err
	}
	defer h.close()
	hello, err := h.call(&wire.Request{Op: "hello"})
	if err != nil {
		return err
	}
	switch {
	case hello.Version != wire.Version:
		return refuse("the import helper speaks protocol %d, this Ferry %d: rebuild it from this Ferry's tools/dendrite", hello.Version, wire.Version)
	case hello.ServerName != cfg.Global.ServerName:
		return refuse("the helper reports server %q, the config %q", hello.ServerName, cfg.Global.ServerName)
	}
	w := &writer{ctx: ctx, r: r, h: h, opts: opts, cfg: cfg, res: res, plan: pl, p: p}
	if err := w.run(); err != nil {
		return err
	}
	if err := h.close(); err != nil {
		return err
	}
	m.Finished = time.Now().UTC()
	return writeMarker(t.markerPath(), m)
}

// ReadBack counts what the target holds, per section, with Ferry's own
// Dendrite export (never from the importer's counters).
func (t *Target) ReadBack(ctx context.Context, opts importer.Options) (map[string]int64, error) {
	src, err := dsource.Open(ctx, t.cfg.ConfigPath)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	sopts := source.Options{AccessTokens: opts.Migration, Encrypted: true}
	streams, err := src.Streams(ctx, source.Filter{}, sopts)
	if err != nil {
		return nil, err
	}
	if len(opts.Rooms) == 0 {
		return importer.CountRecords(ctx, streams)
	}
	// An import of some rooms writes the server-wide data too (users,
	// devices, keys, media): read those back whole, and only the rooms'
	// own streams through the rooms' selection, which carries no accounts.
	selected, err := src.Streams(ctx, source.Filter{Rooms: opts.Rooms}, sopts)
	if err != nil {
		return nil, err
	}
	streams = slices.DeleteFunc(streams, func(s source.Stream) bool { return roomStreams[s.Name] })
	for _, s := range selected {
		if roomStreams[s.Name] {
			streams = append(streams, s)
		}
	}
	return importer.CountRecords(ctx, streams)
}

// roomStreams are the streams a rooms selection narrows to its rooms.
var roomStreams = map[string]bool{source.StreamRooms: true, source.StreamMemberships: true, source.StreamReceipts: true,
	source.StreamState: true, source.StreamEvents: true, source.StreamRedactions: true}

func readMarker(path string) (*marker, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m marker
	return &m, json.Unmarshal(data, &m)
}

func writeMarker(path string, m *marker) error {
	data, _ := json.MarshalIndent(m, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// installSigningKey makes the archive's signing key the target's: Dendrite
// keeps it as a "MATRIX PRIVATE KEY" PEM block with a Key-ID header. The
// target's previous key file is kept beside it, and res.Files says so.
// Retired keys of the archive cannot be added to dendrite.yaml without
// rewriting the admin's file, so res.ConfigAdvice carries the lines to add.
func installSigningKey(ctx context.Context, cfg *dsource.Config, r *archive.Reader, res *importer.Result) error {
	own, old, err := importer.SigningKeys(ctx, r)
	if err != nil {
		return err
	}
	if cur, err := os.ReadFile(cfg.KeyPath()); err == nil {
		if block, _ := pem.Decode(cur); block != nil {
			old = importer.WithoutKeyID(old, block.Headers["Key-ID"])
		}
	}
	var b strings.Builder
	for _, k := range old {
		fmt.Fprintf(&b, "    - key_id: %s\n      public_key: %s\n      expired_at: %d\n", k.KeyID, k.PublicKey, k.ExpiredTS)
	}
	if b.Len() > 0 {
		res.ConfigAdvice = "# dendrite.yaml: the archive's retired signing keys, so that what they signed stays verifiable\n" +
			"global:\n  old_private_keys:\n" + b.String()
	}
	if own == nil {
		res.Report.Add(fidelity.ExcludedByDefault, archive.SectionServerKeys, cfg.Global.ServerName,
			importer.NoPrivateKey)
		return nil
	}
	keyPath := cfg.KeyPath()
	data := pem.EncodeToMemory(&pem.Block{Type: "MATRIX PRIVATE KEY", Headers: map[string]string{"Key-ID": own.KeyID}, Bytes: own.PrivateKey})
	saved := ""
	if cur, err := os.ReadFile(keyPath); err == nil {
		if string(cur) == string(data) {
			return nil // a rerun: in place already
		}
		saved = keyPath + ".before-ferry"
		if _, err := os.Stat(saved); err == nil {
			// A second archive imported here (--force-non-empty): the key
			// saved first is the target's own; keep it.
			saved = fmt.Sprintf("%s.before-ferry-%d", keyPath, time.Now().Unix())
		}
		if err := os.WriteFile(saved, cur, 0o600); err != nil {
			return err
		}
	}
	tmp := keyPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, keyPath); err != nil {
		return err
	}
	line := fmt.Sprintf("%s (the archive's signing key %s", keyPath, own.KeyID)
	if saved != "" {
		line += "; the previous key saved as " + saved
	}
	res.Files = append(res.Files, line+")")
	return nil
}
