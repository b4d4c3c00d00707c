package dendrite

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/importer/dendrite/wire"
	"github.com/ferry-matrix/ferry/matrixevent"
	dsource "github.com/ferry-matrix/ferry/source/dendrite"
)

// importPlan is what plan learned from the archive before any write.
type importPlan struct {
	rooms map[string]*archive.Room // rooms to import (supported version, selected)
}

// plan reads the rooms, decides which to import, counts what the archive
// holds of them, and adds to the report what Dendrite will not take.
func plan(ctx context.Context, r *archive.Reader, opts importer.Options, res *importer.Result) (*importPlan, error) {
	p := &importPlan{rooms: map[string]*archive.Room{}}
	res.InArchive = map[string]int64{}
	err := archive.ReadSection(ctx, r, archive.SectionRooms, func(room *archive.Room) error {
		if len(opts.Rooms) > 0 && !slices.Contains(opts.Rooms, room.RoomID) {
			return nil
		}
		if !slices.Contains(SupportedRoomVersions, room.Version) {
			return nil // reported by the preview, per room
		}
		c := *room
		p.rooms[room.RoomID] = &c
		res.InArchive[archive.SectionRooms]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, want := range opts.Rooms {
		if p.rooms[want] == nil {
			return nil, refuse("room %s is not in the archive (or its version is not supported by Dendrite)", want)
		}
	}
	for _, s := range []string{archive.SectionServerKeys, archive.SectionUsers, archive.SectionDevices, archive.SectionAccountData,
		archive.SectionE2EEKeys, archive.SectionBackupVersions, archive.SectionBackupSessions, archive.SectionMedia, archive.SectionPushers, archive.SectionFilters} {
		res.InArchive[s] = r.Manifest().Records(s)
	}
	for _, s := range []string{archive.SectionEvents, archive.SectionReceipts, archive.SectionMemberships, archive.SectionStateSnapshots} {
		s := s
		var n int64
		if err := readRoomSection(ctx, r, s, p, func() { n++ }); err != nil {
			return nil, err
		}
		res.InArchive[s] = n
	}
	if res.InArchive[archive.SectionEvents] > 0 {
		res.Report.Add(fidelity.TargetRebuilds, archive.SectionEvents+"#notifications", "",
			"Dendrite counts notifications from events it receives after the import; imported history counts as read")
	}
	if err := reportVendorItems(ctx, r, res); err != nil {
		return nil, err
	}
	if n := r.Manifest().Records(archive.SectionDevices); n > 0 && !opts.Migration {
		res.Report.AddN(fidelity.TargetRebuilds, archive.SectionDevices, "",
			"devices are created again when users log in; import with --migration (from a migration export) to keep devices and access tokens", n)
	}
	return p, nil
}

// readRoomSection counts the records of a per-room section that belong to
// the imported rooms.
func readRoomSection(ctx context.Context, r *archive.Reader, section string, p *importPlan, fn func()) error {
	type roomOnly struct {
		RoomID string `cbor:"room_id"`
	}
	switch section {
	case archive.SectionEvents:
		return archive.ReadSection(ctx, r, section, func(e *archive.Event) error { countIf(p, e.RoomID, fn); return nil })
	case archive.SectionReceipts:
		return archive.ReadSection(ctx, r, section, func(e *archive.Receipt) error { countIf(p, e.RoomID, fn); return nil })
	case archive.SectionMemberships:
		return archive.ReadSection(ctx, r, section, func(e *archive.Membership) error { countIf(p, e.RoomID, fn); return nil })
	case archive.SectionStateSnapshots:
		return archive.ReadSection(ctx, r, section, func(e *archive.StateSnapshot) error { countIf(p, e.RoomID, fn); return nil })
	}
	return fmt.Errorf("not a room section: %s", section)
}

func countIf(p *importPlan, room string, fn func()) {
	if p.rooms[room] != nil {
		fn()
	}
}

// writer sends the archive to the helper, section by section, and counts
// each item done (sent, or left out and reported) to p.
type writer struct {
	ctx  context.Context
	r    *archive.Reader
	h    *helper
	opts importer.Options
	cfg  *dsource.Config
	res  *importer.Result
	plan *importPlan
	p    importer.Progress
	gaps int64 // events imported with an explicit state (after a gap)
	// stage is the media staging directory; staged maps the archive's
	// blob paths to their files there.
	stage  string
	staged map[string]string
}

func (w *writer) call(req *wire.Request) (*wire.Response, error) {
	res, err := w.h.call(req)
	if err == nil && res.Skipped {
		w.res.Skipped++
	}
	return res, err
}

// counted wraps a per-record function: each record it finishes counts
// one item of the current phase.
func counted[T any](w *writer, fn func(*T) error) func(*T) error {
	return func(rec *T) error {
		if err := fn(rec); err != nil {
			return err
		}
		w.p.Add(1)
		return nil
	}
}

func (w *writer) run() error {
	m := w.r.Manifest()
	devices := m.Records(archive.SectionDevices)
	if !w.opts.Migration {
		devices = -1 // not imported: no phase
	}
	media, blobs := m.Records(archive.SectionMedia), m.Blobs()
	if media == 0 {
		media, blobs = -1, -1
	}
	defer func() {
		if w.stage != "" {
			os.RemoveAll(w.stage)
		}
	}()
	for _, step := range []struct {
		name  string
		total int64
		fn    func() error
	}{
		{"users", m.Records(archive.SectionUsers), w.users},
		{"devices", devices, w.devices},
		{"account data", m.Records(archive.SectionAccountData), w.accountData},
		{"end-to-end keys", m.Records(archive.SectionE2EEKeys), w.e2eeKeys},
		{"key backups", m.Records(archive.SectionBackupVersions) + m.Records(archive.SectionBackupSessions), w.keyBackups},
		{"events", w.res.InArchive[archive.SectionEvents], w.events},
		{"rooms", int64(len(w.plan.rooms)), w.rooms},
		{"receipts", w.res.InArchive[archive.SectionReceipts], w.receipts},
		{"media files", blobs, w.stageMedia},
		{"media", media, w.media},
	} {
		if step.total < 0 {
			continue
		}
		w.p.Phase("importing "+step.name, step.total)
		if err := step.fn(); err != nil {
			return fmt.Errorf("importing %s: %w", step.name, err)
		}
	}
	w.p.Phase("waiting for Dendrite's sync API to catch up", 0)
	_, err := w.call(&wire.Request{Op: "drain"})
	return err
}

// Dendrite's account types (userapi/api.AccountType).
const (
	accountUser       = 1
	accountGuest      = 2
	accountAdmin      = 3
	accountAppservice = 4
)

func (w *writer) users() error {
	return archive.ReadSection(w.ctx, w.r, archive.SectionUsers, counted(w, func(u *archive.User) error {
		kind := accountUser
		switch {
		case u.AppserviceID != "":
			kind = accountAppservice
		case u.Admin:
			kind = accountAdmin
		case u.Guest:
			kind = accountGuest
		}
		if _, err := w.call(&wire.Request{Op: "account", UserID: u.UserID, PasswordHash: u.PasswordHash, AccountType: kind,
			AppserviceID: u.AppserviceID, Deactivated: u.Deactivated, TS: u.CreatedTS}); err != nil {
			return err
		}
		if _, err := w.call(&wire.Request{Op: "profile", UserID: u.UserID, DisplayName: u.DisplayName, AvatarURL: u.AvatarURL}); err != nil {
			return err
		}
		for _, flag := range []struct {
			on   bool
			what string
		}{{u.Erased, "erased (GDPR): Dendrite has no erasure flag; keep honouring the request by hand"},
			{u.ShadowBanned, "shadow-banned"}, {u.Locked, "locked"}, {u.Suspended, "suspended"},
			{u.Approved != nil && !*u.Approved, "awaiting approval"}} {
			if flag.on {
				w.res.Report.Add(fidelity.TargetNoPlace, archive.SectionUsers, u.UserID, "user is "+flag.what+"; Dendrite has no such state")
			}
		}
		for _, t := range u.Threepids {
			w.res.Report.Add(fidelity.TargetNoPlace, archive.SectionUsers, u.UserID,
				fmt.Sprintf("threepid %s %s: not imported (Dendrite keeps threepids only for identity-server binding)", t.Medium, t.Address))
		}
		for _, x := range u.ExternalIDs {
			w.res.Report.Add(fidelity.TargetNoPlace, archive.SectionUsers, u.UserID,
				fmt.Sprintf("external ID %s/%s: Dendrite has no SSO logins", x.AuthProvider, x.ExternalID))
		}
		if strings.HasPrefix(u.PasswordHash, "$2") || u.PasswordHash == "" {
			return nil
		}
		w.res.Report.Add(fidelity.PasswordUnusable, archive.SectionUsers, u.UserID, "the password hash is not bcrypt, which Dendrite checks: the user must reset their password")
		return nil
	}))
}

func (w *writer) devices() error {
	if !w.opts.Migration {
		return nil
	}
	return archive.ReadSection(w.ctx, w.r, archive.SectionDevices, counted(w, func(d *archive.Device) error {
		if len(d.AccessTokens) == 0 {
			w.res.Report.Add(fidelity.ExcludedByDefault, archive.SectionDevices, d.UserID+" "+d.DeviceID, "no access token in the archive: the device is not kept")
			return nil
		}
		for i, t := range d.AccessTokens {
			if i > 0 {
				w.res.Report.Add(fidelity.TargetNoPlace, archive.SectionDevices, d.UserID+" "+d.DeviceID, "Dendrite keeps one access token per device; this one is dropped")
				continue
			}
			if _, err := w.call(&wire.Request{Op: "device", UserID: d.UserID, DeviceID: d.DeviceID, AccessToken: t.Token,
				DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, UserAgent: d.UserAgent, TS: d.LastSeenTS}); err != nil {
				return err
			}
		}
		return nil
	}))
}

// e2eeKeys imports cross-signing keys and signatures, and (with the
// migration profile, which keeps devices) the devices' keys. One-time and
// fallback keys are left for the devices to upload again.
func (w *writer) e2eeKeys() error {
	crossSigningKeys := map[string]bool{} // "user pubkey" of the cross-signing keys seen
	signature := func(signer, keyID, target, targetKeyID, sig string) error {
		// Dendrite names a signed cross-signing key by its full key ID
		// ("ed25519:<key>"), a signed device by its device ID; Synapse names
		// both bare.
		if crossSigningKeys[target+" "+targetKeyID] {
			targetKeyID = "ed25519:" + targetKeyID
		}
		_, err := w.call(&wire.Request{Op: "cross_signing_signature", UserID: signer, KeyID: keyID,
			TargetUserID: target, TargetKeyID: targetKeyID, Signature: sig})
		return err
	}
	return archive.ReadSection(w.ctx, w.r, archive.SectionE2EEKeys, counted(w, func(k *archive.E2EEKey) error {
		switch k.Kind {
		case archive.KeyKindDevice:
			if !w.opts.Migration {
				return nil // the device is not kept; reported with the devices
			}
			_, err := w.call(&wire.Request{Op: "device_keys", UserID: k.UserID, DeviceID: k.DeviceID, Content: k.JSON})
			return err
		case archive.KeyKindCrossSigning:
			var obj struct {
				Keys       map[string]string            `json:"keys"`
				Signatures map[string]map[string]string `json:"signatures"`
			}
			if err := json.Unmarshal(k.JSON, &obj); err != nil || len(obj.Keys) != 1 {
				w.res.Report.Add(fidelity.SourceCorrupt, archive.SectionE2EEKeys, k.UserID+" "+k.Usage, "a cross-signing key that is not one ed25519 key object")
				return nil
			}
			var pub string
			for _, p := range obj.Keys {
				pub = p
			}
			crossSigningKeys[k.UserID+" "+pub] = true
			if _, err := w.call(&wire.Request{Op: "cross_signing_key", UserID: k.UserID, Usage: k.Usage, PublicKey: pub}); err != nil {
				return err
			}
			// Signatures inside the key object (Synapse keeps the master
			// key's signature of the other two there; Dendrite apart).
			for signer, sigs := range obj.Signatures {
				for keyID, sig := range sigs {
					if err := signature(signer, keyID, k.UserID, pub, sig); err != nil {
						return err
					}
				}
			}
		case archive.KeyKindSignature:
			return signature(k.UserID, k.KeyID, k.TargetUserID, k.TargetDeviceID, k.Signature)
		case archive.KeyKindFallback, archive.KeyKindOneTime:
			w.res.Report.Add(fidelity.TargetRebuilds, archive.SectionE2EEKeys+"#"+k.Kind, k.UserID+" "+k.DeviceID,
				"the device uploads new "+strings.ReplaceAll(k.Kind, "_", "-")+" keys when it next syncs")
		}
		return nil
	}))
}

func (w *writer) accountData() error {
	return archive.ReadSection(w.ctx, w.r, archive.SectionAccountData, counted(w, func(a *archive.AccountData) error {
		if a.RoomID != "" && len(w.opts.Rooms) > 0 && w.plan.rooms[a.RoomID] == nil {
			return nil
		}
		_, err := w.call(&wire.Request{Op: "account_data", UserID: a.UserID, RoomID: a.RoomID, Type: a.Type, Content: a.Content})
		return err
	}))
}

// keyBackups creates the backup versions in numeric order, deleted ones
// too (deleted again at once), so that a fresh Dendrite, which numbers
// versions from one counter for all users, gives them their old numbers;
// then it uploads the sessions of each user's current version (Dendrite
// takes sessions for the current version only).
func (w *writer) keyBackups() error {
	var versions []archive.KeyBackupVersion
	err := archive.ReadSection(w.ctx, w.r, archive.SectionBackupVersions, func(b *archive.KeyBackupVersion) error {
		versions = append(versions, *b) // one or two per user: small
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortStableFunc(versions, func(a, b archive.KeyBackupVersion) int {
		if c := cmp.Compare(len(a.Version), len(b.Version)); c != 0 {
			return c
		}
		return cmp.Compare(a.Version, b.Version)
	})
	current := map[string]string{} // user -> archive version
	target := map[string]string{}  // user -> the number Dendrite gave it
	for _, b := range versions {
		res, err := w.call(&wire.Request{Op: "key_backup_version", UserID: b.UserID, Version: b.Version, Algorithm: b.Algorithm, AuthData: b.AuthData, Deleted: b.Deleted})
		if err != nil {
			return err
		}
		if res.BackupVersion != b.Version {
			w.res.Report.Add(fidelity.TargetRebuilds, archive.SectionBackupVersions, b.UserID+" "+b.Version,
				"Dendrite numbered this backup version "+res.BackupVersion+" (it numbers versions of all users from one counter)")
		}
		if !b.Deleted {
			current[b.UserID], target[b.UserID] = b.Version, res.BackupVersion
		}
		w.p.Add(1)
	}
	return archive.ReadSection(w.ctx, w.r, archive.SectionBackupSessions, counted(w, func(s *archive.KeyBackupSession) error {
		if current[s.UserID] != s.Version {
			w.res.Report.Add(fidelity.TargetNoPlace, archive.SectionBackupSessions, s.UserID+" "+s.Version+" "+s.SessionID,
				"a session of an older backup version: Dendrite keeps sessions of the current version only")
			return nil
		}
		_, err := w.call(&wire.Request{Op: "key_backup_sessions", UserID: s.UserID, Version: target[s.UserID], Sessions: []wire.BackupSession{{
			RoomID: s.RoomID, SessionID: s.SessionID, FirstMessageIndex: s.FirstMessageIndex, ForwardedCount: s.ForwardedCount,
			IsVerified: s.IsVerified, SessionData: s.SessionData}}})
		return err
	}))
}

// events feeds the events: first every outlier (and every event the source
// rejected or soft-failed, which must not join the timeline), then the
// rest in the archive's topological order.
//
// Dendrite treats an event given with an explicit state as a state rewrite
// (a federated join: forward extremities reset, the sync API purges and
// reloads the room, invites are issued again and never retired). So the
// archive's state-before is given only where Dendrite cannot derive it
// from the prev events: after a gap, where a prev event is one of the
// room's backward extremities (not in the archive) or was fed as an
// outlier. Timeline events are queued (Dendrite's asynchronous input,
// processed in order per room) so that the roomserver and the components
// consuming its output work at the same time; a drain waits for all of it
// (aliases, the directory and receipts refer to rooms and events the
// roomserver must have processed).
func (w *writer) events() error {
	var states *snapshots // loaded at the first gap, if there is one
	sidelined := map[string]bool{}
	for _, room := range w.plan.rooms {
		for _, id := range room.BackwardExtremities {
			sidelined[id] = true
		}
	}
	isSidelined := func(e *archive.Event) bool { return e.Outlier || e.Rejected != "" || e.SoftFailed }
	feed := func(outliers bool) error {
		return archive.ReadSection(w.ctx, w.r, archive.SectionEvents, func(e *archive.Event) (err error) {
			room := w.plan.rooms[e.RoomID]
			if room == nil || isSidelined(e) != outliers {
				return nil
			}
			defer func() {
				if err == nil {
					w.p.Add(1)
				}
			}()
			req := &wire.Request{Op: "event", Kind: "new", RoomID: e.RoomID, RoomVersion: room.Version, EventID: e.EventID,
				Event: e.JSON, Redacted: e.Redacted}
			if outliers {
				req.Kind = "outlier"
				sidelined[e.EventID] = true
			} else {
				fields, err := matrixevent.Parse(e.JSON)
				if err != nil {
					return fmt.Errorf("event %s: %w", e.EventID, err)
				}
				gap := false
				for _, prev := range fields.PrevEvents {
					gap = gap || sidelined[prev]
				}
				if gap && e.StateBefore != 0 {
					if states == nil {
						if states, err = loadSnapshots(w.ctx, w.r, w.plan); err != nil {
							return err
						}
					}
					if req.State, err = states.eventIDs(e.StateBefore); err != nil {
						return fmt.Errorf("event %s: %w", e.EventID, err)
					}
					req.HasState = true
					w.gaps++
				}
				req.Async = true
			}
			res, err := w.call(req)
			if err != nil {
				return err
			}
			if res.Rejected != "" && e.Rejected == "" {
				w.res.Report.Add(fidelity.SignatureInvalid, archive.SectionEvents, e.EventID, "Dendrite rejected the event on import: "+res.Rejected)
			}
			return nil
		})
	}
	if err := feed(true); err != nil {
		return err
	}
	if err := feed(false); err != nil {
		return err
	}
	w.p.Phase("waiting for Dendrite's roomserver to process the events", 0)
	_, err := w.call(&wire.Request{Op: "drain"})
	return err
}

// rooms adds the rooms' aliases and publishes the public ones.
func (w *writer) rooms() error {
	for _, id := range slices.Sorted(maps.Keys(w.plan.rooms)) {
		room := w.plan.rooms[id]
		for _, alias := range room.Aliases {
			if _, err := w.call(&wire.Request{Op: "alias", Alias: alias, RoomID: id, UserID: room.Creator}); err != nil {
				return err
			}
		}
		if room.Public {
			if _, err := w.call(&wire.Request{Op: "publish", RoomID: id}); err != nil {
				return err
			}
		}
		if room.Blocked {
			w.res.Report.Add(fidelity.TargetNoPlace, archive.SectionRooms, id, "the room is blocked on the source; Dendrite has no room blocking")
		}
		w.p.Add(1)
	}
	return nil
}

func (w *writer) receipts() error {
	return archive.ReadSection(w.ctx, w.r, archive.SectionReceipts, func(rc *archive.Receipt) error {
		if w.plan.rooms[rc.RoomID] == nil {
			return nil
		}
		if rc.ThreadID != "" {
			w.res.Report.Add(fidelity.TargetNoPlace, archive.SectionReceipts, rc.UserID+" "+rc.EventID, "a threaded receipt ("+rc.ThreadID+"): Dendrite keeps unthreaded receipts only")
		} else if _, err := w.call(&wire.Request{Op: "receipt", RoomID: rc.RoomID, UserID: rc.UserID, Type: rc.Type, EventID: rc.EventID, TS: rc.TS}); err != nil {
			return err
		}
		w.p.Add(1)
		return nil
	})
}

// stageMedia unpacks the archive's media blobs into a staging directory
// inside Dendrite's media store, so that the helper moves them into place
// with a rename (media then records each file with its thumbnails).
func (w *writer) stageMedia() error {
	w.stage = filepath.Join(w.cfg.MediaPath(), "ferry-import-staging")
	if err := os.MkdirAll(w.stage, 0o700); err != nil {
		return err
	}
	w.staged = map[string]string{}
	return w.r.Walk(w.ctx, func(f *archive.File) error {
		if f.Blob == nil {
			return nil
		}
		path := filepath.Join(w.stage, fmt.Sprintf("blob-%d", len(w.staged)+1))
		out, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, f.Blob); err != nil {
			out.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		w.staged[f.BlobPath] = path
		w.p.Add(1)
		return nil
	})
}

func (w *writer) media() error {
	return archive.ReadSection(w.ctx, w.r, archive.SectionMedia, counted(w, func(m *archive.Media) error {
		file := w.staged[m.Path]
		if m.Path == "" || file == "" {
			return nil // the exporter's omission record already says why
		}
		req := &wire.Request{Op: "media", Origin: m.Origin, MediaID: m.MediaID, ContentType: m.ContentType, Size: m.Size,
			SHA256: m.SHA256, UploadName: m.UploadName, UserID: m.UserID, TS: m.CreatedTS, File: file}
		for _, t := range m.Thumbnails {
			if tf := w.staged[t.Path]; tf != "" {
				req.Thumbnails = append(req.Thumbnails, wire.Thumbnail{Width: t.Width, Height: t.Height, Method: t.Method, ContentType: t.ContentType, Size: t.Size, File: tf})
			}
		}
		_, err := w.call(req)
		return err
	}))
}

// snapshots resolves the archive's delta-encoded state snapshots into the
// event IDs of the full state, caching recent ones.
type snapshots struct {
	byID  map[uint64]*archive.StateSnapshot
	cache map[uint64]map[archive.StateKey]string
}

func loadSnapshots(ctx context.Context, r *archive.Reader, p *importPlan) (*snapshots, error) {
	s := &snapshots{byID: map[uint64]*archive.StateSnapshot{}, cache: map[uint64]map[archive.StateKey]string{}}
	err := archive.ReadSection(ctx, r, archive.SectionStateSnapshots, func(sn *archive.StateSnapshot) error {
		if p.rooms[sn.RoomID] != nil {
			c := *sn
			s.byID[sn.ID] = &c
		}
		return nil
	})
	return s, err
}

func (s *snapshots) state(id uint64) (map[archive.StateKey]string, error) {
	if st, ok := s.cache[id]; ok {
		return st, nil
	}
	// Walk up to a cached ancestor (or the root), then apply the deltas down.
	var chain []*archive.StateSnapshot
	base := map[archive.StateKey]string{}
	for cur := id; cur != 0; {
		if st, ok := s.cache[cur]; ok {
			base = st
			break
		}
		sn := s.byID[cur]
		if sn == nil {
			return nil, fmt.Errorf("state snapshot %d is not in the archive", cur)
		}
		chain = append(chain, sn)
		cur = sn.Parent
	}
	st := make(map[archive.StateKey]string, len(base))
	for k, v := range base {
		st[k] = v
	}
	for i := len(chain) - 1; i >= 0; i-- {
		for _, k := range chain[i].Remove {
			delete(st, k)
		}
		for _, e := range chain[i].Set {
			st[archive.StateKey{Type: e.Type, StateKey: e.StateKey}] = e.EventID
		}
	}
	if len(s.cache) >= 256 {
		clear(s.cache)
	}
	s.cache[id] = st
	return st, nil
}

func (s *snapshots) eventIDs(id uint64) ([]string, error) {
	st, err := s.state(id)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(st))
	for _, e := range st {
		ids = append(ids, e)
	}
	slices.Sort(ids)
	return ids, nil
}

// synapseVendor is Synapse's vendor namespace; Dendrite has no place for
// any of it.
const synapseVendor = "org.matrix.synapse"

// vendorRowID names a row of a Synapse vendor table by its key columns.
var vendorRowID = map[string][]string{
	"registration_tokens.json":        {"token"},
	"event_reports.json":              {"id", "event_id"},
	"room_retention.json":             {"room_id", "event_id"},
	"ratelimit_override.json":         {"user_id"},
	"users_pending_deactivation.json": {"user_id"},
}

// reportVendorItems lists, one entry per row, the Synapse-only data of the
// archive (tables exported as JSON rows into org.matrix.synapse/), so an
// admin sees by ID what stays behind. Registration tokens are secrets:
// they are named by position, not by value.
func reportVendorItems(ctx context.Context, r *archive.Reader, res *importer.Result) error {
	var paths []string
	for _, f := range r.Manifest().Files {
		if archive.ItemOf(f.Path) == synapseVendor {
			paths = append(paths, f.Path)
		}
	}
	return r.ReadFiles(ctx, paths, func(path string, data []byte) error {
		name := strings.TrimPrefix(path, synapseVendor+"/")
		keys, isTable := vendorRowID[name]
		if !isTable {
			res.Report.Add(fidelity.TargetNoPlace, path, "", "Synapse-only data; Dendrite has no place for it (kept in the archive)")
			return nil
		}
		var rows []map[string]any
		if err := json.Unmarshal(data, &rows); err != nil {
			res.Report.Add(fidelity.SourceCorrupt, path, "", "not a JSON list of rows: "+err.Error())
			return nil
		}
		for i, row := range rows {
			var id []string
			for _, k := range keys {
				if v, ok := row[k]; ok && v != nil {
					id = append(id, fmt.Sprint(v))
				}
			}
			if name == "registration_tokens.json" {
				id = []string{fmt.Sprintf("token #%d", i+1)}
			}
			res.Report.Add(fidelity.TargetNoPlace, path, strings.Join(id, " "), "Synapse-only; Dendrite has no place for it (kept in the archive)")
		}
		return nil
	})
}
