// Package dendrite imports a Ferry archive into a stopped, empty Dendrite
// v0.15.2 homeserver.
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
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/source"
	dsource "github.com/ferry-matrix/ferry/source/dendrite"
)

// Options configure an import.
type Options struct {
	// Config is the target's dendrite.yaml.
	Config string
	// Helper is the ferry-dendrite-import binary; empty: FindHelper.
	Helper string
	// DryRun validates and checks the target, and reports what would be
	// imported, without writing anything.
	DryRun bool
	// Migration carries access tokens and device IDs (and the devices' keys),
	// so clients stay logged in. Encrypted archives with access tokens only.
	Migration bool
	// Rooms limits the import to these rooms (users, media and other
	// server-wide data are still imported).
	Rooms []string
	// AllowNonEmpty lets the import write into a target that already has
	// users or rooms (and was not started by an import of this archive).
	AllowNonEmpty bool
	// Log receives one line per phase; nil: none.
	Log func(format string, args ...any)
}

// Result is what an import did.
type Result struct {
	Validation *archive.ValidationReport
	// Report lists everything that did not arrive unchanged, with the
	// format's reason codes.
	Report *fidelity.Report
	// InArchive counts records per section of the archive (of the imported
	// rooms); InTarget counts them in the target after the import, read back
	// with Ferry's Dendrite export (nil after a dry run).
	InArchive map[string]int64
	InTarget  map[string]int64
	// TargetUsers and TargetRooms are what the target held before.
	TargetUsers, TargetRooms int64
	// Skipped counts requests the target already had (a rerun).
	Skipped int64
	// OldKeysConfig is what to add to dendrite.yaml's global section so
	// that the archive's retired signing keys stay verifiable (empty if none).
	OldKeysConfig string
}

// SupportedRoomVersions are the room versions Dendrite v0.15.2 supports.
var SupportedRoomVersions = []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}

// Target is how Dendrite holds an archive's sections, for fidelity previews.
var Target = &fidelity.Target{
	Name:         "Dendrite v0.15.2",
	RoomVersions: SupportedRoomVersions,
	Itemized:     []string{synapseVendor},
	Sections: map[string]fidelity.Handling{
		archive.SectionPushers:     fidelity.Rebuilds, // clients register their pushers again on start
		archive.SectionFilters:     fidelity.Rebuilds, // clients create filters again
		archive.SectionMemberships: fidelity.Rebuilds, // derived from room state
		archive.SectionRedactions:  fidelity.Rebuilds, // derived from the redaction events
	},
}

// ErrRefused marks checks that stop an import before it writes anything.
var ErrRefused = errors.New("import refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// markerName is the file beside dendrite.yaml recording an import in
// progress or done, so that a rerun of the same archive may resume.
const markerName = "ferry-import.json"

type marker struct {
	ArchiveID string    `json:"archive_id"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished,omitzero"`
}

// Import imports r into the Dendrite that opts.Config describes. Dendrite
// must be stopped. Everything is checked before the first write.
func Import(ctx context.Context, r *archive.Reader, opts Options) (*Result, error) {
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cfg, err := dsource.LoadConfig(opts.Config)
	if err != nil {
		return nil, refuse("%v", err)
	}
	core, m := r.Core(), r.Manifest()
	if core.ServerName != cfg.Global.ServerName {
		return nil, refuse("the archive is of server %q but the target Dendrite is %q: event IDs, signatures and user IDs name the server, so an archive can only be imported into a server of the same name (set global.server_name in %s)",
			core.ServerName, cfg.Global.ServerName, opts.Config)
	}
	if opts.Migration {
		if m.Encryption == archive.EncryptionNone {
			return nil, refuse("--migration needs an encrypted archive (access tokens are secrets)")
		}
		if !m.Export.Options[archive.OptAccessTokens] {
			return nil, refuse("--migration needs an archive exported with access tokens (bot export --migration)")
		}
	}
	logf("validating the archive")
	v, err := archive.Validate(ctx, r)
	if err != nil {
		return nil, err
	}
	if fatal := firstErrors(v, 3); fatal != "" {
		return &Result{Validation: v}, refuse("the archive failed validation (%s); run `bot archive verify` for the full list", fatal)
	}
	res := &Result{Validation: v, Report: fidelity.Preview(r, v, Target)}
	p, err := plan(ctx, r, opts, res)
	if err != nil {
		return res, err
	}
	markerPath := filepath.Join(filepath.Dir(opts.Config), markerName)
	prev, _ := readMarker(markerPath)
	resuming := prev != nil && prev.ArchiveID == m.ArchiveID
	if err := checkTarget(ctx, opts, resuming, res); err != nil {
		return res, err
	}
	if opts.DryRun {
		return res, nil
	}
	bin, err := FindHelper(opts.Helper)
	if err != nil {
		return res, err
	}
	// The first write.
	started := time.Now().UTC()
	if resuming {
		started = prev.Started
	}
	if err := writeMarker(markerPath, &marker{ArchiveID: m.ArchiveID, Started: started}); err != nil {
		return res, err
	}
	if err := installSigningKey(cfg, r, res); err != nil {
		return res, err
	}
	logf("starting Dendrite's components (import helper)")
	h, err := startHelper(ctx, bin, opts.Config, logf)
	if err != nil {
		return res, err
	}
	defer h.close()
	hello, err := h.call(&request{Op: "hello"})
	if err != nil {
		return res, err
	}
	switch {
	case hello.Version != helperVersion:
		return res, refuse("the import helper speaks protocol %d, this Ferry %d: rebuild it from this Ferry's tools/dendrite", hello.Version, helperVersion)
	case hello.ServerName != cfg.Global.ServerName:
		return res, refuse("the helper reports server %q, the config %q", hello.ServerName, cfg.Global.ServerName)
	}
	w := &writer{ctx: ctx, r: r, h: h, opts: opts, cfg: cfg, res: res, plan: p, logf: logf}
	if err := w.run(); err != nil {
		return res, err
	}
	if err := h.close(); err != nil {
		return res, err
	}
	if err := writeMarker(markerPath, &marker{ArchiveID: m.ArchiveID, Started: started, Finished: time.Now().UTC()}); err != nil {
		return res, err
	}
	logf("reading the target back")
	res.InTarget, err = readBack(ctx, opts.Config, opts)
	return res, err
}

// firstErrors lists up to n validation errors that stop an import. A room
// of a version this Ferry cannot check is not one: the room is skipped and
// reported (room_version_unsupported), the rest imported.
func firstErrors(v *archive.ValidationReport, n int) string {
	var out []string
	for _, p := range v.Problems {
		if p.Severity == archive.SeverityError && p.Check != archive.CheckUnsupportedRoomVersion {
			out = append(out, fmt.Sprintf("%s: %s", p.Check, p.Message))
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "; ")
}

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

// checkTarget reads the target (never writing): its databases must be
// initialised by Dendrite, and it must hold no users or rooms, unless this
// is a rerun of the same archive or the caller allows a non-empty target.
func checkTarget(ctx context.Context, opts Options, resuming bool, res *Result) error {
	src, err := dsource.Open(ctx, opts.Config)
	if err != nil && resuming {
		// An import of this archive was killed here: its unfinished SQLite
		// transaction blocks read-only access until the helper, which
		// writes, rolls it back. The target is known to be ours.
		return nil
	}
	if err != nil {
		return refuse("cannot read the target Dendrite (%v): its databases must exist and be initialised by Dendrite v0.15.2 (start it once on them, then stop it)", err)
	}
	defer src.Close()
	users, rooms, err := src.Census(ctx)
	if err != nil {
		return refuse("the target's databases are not initialised by Dendrite v0.15.2 (%v): start Dendrite once on them, then stop it", err)
	}
	res.TargetUsers, res.TargetRooms = users, rooms
	if (users > 0 || rooms > 0) && !resuming && !opts.AllowNonEmpty {
		return refuse("the target Dendrite is not empty (%d users, %d rooms) and no import of this archive was started there: import into a fresh Dendrite, or allow a non-empty target explicitly (--force-non-empty)", users, rooms)
	}
	return nil
}

// installSigningKey makes the archive's signing key the target's: Dendrite
// keeps it as a "MATRIX PRIVATE KEY" PEM block with a Key-ID header. The
// target's previous key file is kept beside it. Retired keys of the archive
// cannot be added to dendrite.yaml without rewriting the admin's file, so
// the Result carries the lines to add.
func installSigningKey(cfg *dsource.Config, r *archive.Reader, res *Result) error {
	var own *archive.ServerKey
	var old []archive.ServerKey
	err := archive.ReadSection(context.Background(), r, archive.SectionServerKeys, func(k *archive.ServerKey) error {
		switch k.Kind {
		case "own":
			c := *k
			own = &c
		case "own_old":
			old = append(old, *k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, k := range old {
		fmt.Fprintf(&b, "  - key_id: %s\n    public_key: %s\n    expired_at: %d\n", k.KeyID, k.PublicKey, k.ExpiredTS)
	}
	if b.Len() > 0 {
		res.OldKeysConfig = "old_private_keys:\n" + b.String()
	}
	if own == nil || len(own.PrivateKey) != ed25519.SeedSize {
		res.Report.Add(fidelity.ExcludedByDefault, archive.SectionServerKeys, cfg.Global.ServerName,
			"the archive holds no private signing key (export a full encrypted archive to carry it); the target keeps its own key, and other servers must learn it")
		return nil
	}
	keyPath := cfg.KeyPath()
	data := pem.EncodeToMemory(&pem.Block{Type: "MATRIX PRIVATE KEY", Headers: map[string]string{"Key-ID": own.KeyID}, Bytes: own.PrivateKey})
	if cur, err := os.ReadFile(keyPath); err == nil {
		if string(cur) == string(data) {
			return nil
		}
		if err := os.WriteFile(keyPath+".before-ferry", cur, 0o600); err != nil {
			return err
		}
	}
	tmp := keyPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, keyPath)
}

// readBack counts what the target holds, per section, with Ferry's own
// Dendrite export (never from the importer's counters).
func readBack(ctx context.Context, configPath string, opts Options) (map[string]int64, error) {
	src, err := dsource.Open(ctx, configPath)
	if err != nil {
		return nil, fmt.Errorf("reading the target back: %w", err)
	}
	defer src.Close()
	streams, err := src.Streams(ctx, source.Filter{Rooms: opts.Rooms}, source.Options{AccessTokens: opts.Migration, Encrypted: true})
	if err != nil {
		return nil, err
	}
	c := countingSink{}
	for _, s := range streams {
		if err := s.Run(ctx, nil, c); err != nil {
			return nil, fmt.Errorf("reading the target back (%s): %w", s.Name, err)
		}
	}
	return c, nil
}

type countingSink map[string]int64

func (c countingSink) Record(section string, _ any) error { c[section]++; return nil }
func (c countingSink) Blob(path string, size int64, r io.Reader) (string, error) {
	c["blobs"]++
	_, err := io.Copy(io.Discard, r)
	return "", err
}
func (c countingSink) File(string, []byte, int64, []string) error { return nil }
func (c countingSink) Omit(archive.Omission) error                { return nil }
func (c countingSink) Checkpoint([]byte) error                    { return nil }

// sortedKeys is for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
