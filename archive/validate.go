package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/matrixevent"
)

// Check names one kind of defect Validate looks for. The list is closed and
// documented in docs/FORMAT.md ("Validation").
type Check string

const (
	CheckFile                   Check = "file"                     // a file, part or blob failed its size, count or hash check
	CheckEventUnparseable       Check = "event_unparseable"        // the stored JSON is not an event
	CheckEventIDMismatch        Check = "event_id_mismatch"        // the record's event ID is not the event's (reference hash) ID
	CheckUnknownRoom            Check = "unknown_room"             // an event or record names a room with no m.rooms record
	CheckUnsupportedRoomVersion Check = "unsupported_room_version" // a room version this reader cannot check
	CheckBadSignature           Check = "bad_signature"            // a signature by a known key does not verify
	CheckMissingSignature       Check = "missing_signature"        // the sender's server did not sign the event
	CheckContentHash            Check = "content_hash_mismatch"    // an unredacted event's content hash does not match
	CheckMissingAuthEvent       Check = "missing_auth_event"       // an auth event is not in the archive
	CheckMissingPrevEvent       Check = "missing_prev_event"       // a prev event is neither in the archive nor a backward extremity
	CheckSnapshotOutside        Check = "snapshot_outside_archive" // a state snapshot names an event not in the archive
	CheckMissingSnapshot        Check = "missing_snapshot"         // a snapshot reference (state_before, current_state, parent) has no snapshot
	CheckMembershipMismatch     Check = "membership_mismatch"      // a membership record disagrees with the room's current state
	CheckDanglingMedia          Check = "dangling_media"           // an event references local media with no m.media record
	CheckMissingMediaFile       Check = "missing_media_file"       // a media record names a file the archive does not hold
	CheckUnknownUser            Check = "unknown_user"             // a record names a local user with no m.users record
)

// AllChecks lists every check, in documentation order.
var AllChecks = []Check{CheckFile, CheckEventUnparseable, CheckEventIDMismatch, CheckUnknownRoom, CheckUnsupportedRoomVersion,
	CheckBadSignature, CheckMissingSignature, CheckContentHash, CheckMissingAuthEvent, CheckMissingPrevEvent,
	CheckSnapshotOutside, CheckMissingSnapshot, CheckMembershipMismatch, CheckDanglingMedia, CheckMissingMediaFile, CheckUnknownUser}

// Severity of a problem: errors make an archive fail validation; warnings
// are expected in some archives (a partial export lacks history).
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Problem is one defect found by Validate.
type Problem struct {
	Check    Check    `json:"check"`
	Severity Severity `json:"severity"`
	Where    string   `json:"where"` // a file, room, event or user ID
	Message  string   `json:"message"`
}

func (p Problem) String() string {
	return fmt.Sprintf("%s %s: %s: %s", p.Severity, p.Check, p.Where, p.Message)
}

// SignatureCounts counts events by the outcome of their checks.
type SignatureCounts struct {
	Valid        int64 `json:"valid"`
	Invalid      int64 `json:"invalid"`
	Missing      int64 `json:"missing"`
	Unverifiable int64 `json:"unverifiable_offline"`
	// RedactedHashUncheckable counts redacted events, whose content hash
	// cannot be checked ("hash not checkable: redacted"); not a failure.
	RedactedHashUncheckable int64 `json:"redacted_hash_not_checkable"`
}

// RoomSummary is what Validate saw of one room.
type RoomSummary struct {
	RoomID  string `json:"room_id"`
	Version string `json:"version"`
	Events  int64  `json:"events"`
	// Supported is false for a room version this reader does not know.
	Supported bool `json:"supported"`
}

// ValidationReport is the result of Validate.
type ValidationReport struct {
	Files           int64            `json:"files"`
	Records         int64            `json:"records"`
	Blobs           int64            `json:"blobs"`
	BlobBytes       int64            `json:"blob_bytes"`
	Events          int64            `json:"events"`
	Signatures      SignatureCounts  `json:"signatures"`
	Rooms           []RoomSummary    `json:"rooms"`
	Omissions       map[string]int64 `json:"omissions,omitempty"` // by fidelity code, from m.omissions
	Unknown         []string         `json:"unknown_items,omitempty"`
	Problems        []Problem        `json:"problems"`
	Counts          map[Check]int64  `json:"problem_counts"` // all problems, also those past MaxProblems
	OmissionRecords []Omission       `json:"-"`              // the first MaxProblems omission records
	// UnverifiableEvents lists (up to MaxProblems) events whose sender's
	// key is not in the archive: not an error, but worth a fidelity note.
	UnverifiableEvents []string `json:"unverifiable_events,omitempty"`
}

// MaxProblems caps how many problems (and omission records) a report lists;
// Counts still counts every one.
const MaxProblems = 1000

// OK reports whether validation found no errors.
func (r *ValidationReport) OK() bool {
	for _, p := range r.Problems {
		if p.Severity == SeverityError {
			return false
		}
	}
	return true
}

// Errors counts problems of severity error, including those past MaxProblems.
func (r *ValidationReport) Errors() int64 {
	var n int64
	for _, p := range r.Problems {
		if p.Severity == SeverityError {
			n++
		}
	}
	return n
}

func (r *ValidationReport) add(c Check, sev Severity, where, format string, args ...any) {
	if r.Counts == nil {
		r.Counts = map[Check]int64{}
	}
	r.Counts[c]++
	if len(r.Problems) < MaxProblems {
		r.Problems = append(r.Problems, Problem{Check: c, Severity: sev, Where: where, Message: fmt.Sprintf(format, args...)})
	}
}

// Validate checks a whole archive without importing it: every file, blob
// and part (as Walk does), then the graph the records describe: auth and
// prev events present, snapshots referring to events in the archive,
// memberships agreeing with current state, referenced media and users
// present, event IDs, signatures (with keys from m.server_keys, chosen by
// the key ID in each signature), content hashes of unredacted events, and
// room versions. A damaged file stops validation with a CheckFile problem;
// other problems are collected, and the error return is for I/O and
// cancellation only.
//
// Memory grows with the number of events (a 64-bit hash each, plus
// references not yet resolved), rooms, users, media and member-state
// entries, not with event sizes; no event body is kept, nor anything of a
// record no check can use (a membership of a room without current state, a
// thumbnail without a path): an archive may pack millions of those into a
// few hundred bytes.
func Validate(ctx context.Context, r *Reader) (*ValidationReport, error) {
	return newValidator(r).run(ctx)
}

func (v *validator) run(ctx context.Context) (*ValidationReport, error) {
	r := v.r
	if err := v.preload(ctx); err != nil || v.rep.Counts[CheckFile] > 0 {
		return v.rep, err
	}
	err := r.Walk(ctx, v.file)
	v.drainEvents()
	var fe *FormatError
	switch {
	case err == nil:
	case errors.As(err, &fe), isContainerError(err):
		v.rep.add(CheckFile, SeverityError, whereOf(err), "%v", err)
		return v.rep, nil
	default:
		return v.rep, err
	}
	v.finish()
	return v.rep, nil
}

type validator struct {
	r          *Reader
	rep        *ValidationReport
	server     string
	partial    bool
	personal   bool // type "user": snapshots may name events the user may not see
	seed       maphash.Seed
	keys       map[[2]string]ed25519.PublicKey
	rooms      map[string]*roomInfo
	events     map[uint64]struct{}
	members    map[uint64]string // member event hash -> membership
	pending    []pendingRef
	snaps      map[uint64]*snapInfo
	snapRefs   map[uint64]string // snapshot ID -> first referrer
	snapEvts   []pendingRef      // snapshot entries not yet seen as events
	users      map[string]bool
	userRefs   map[string]string // local user -> first referrer
	media      map[string]bool
	mediaRef   map[string]string // "origin/id" -> first referring event
	mediaFiles []mediaFile       // blob paths media records name, checked at the end
	blobs      map[string]bool
	mships     []membership // of rooms with a current state, checked at the end
	pipeline   eventPipeline
	// tap, when not nil, takes the checked events (ValidateTapped), ctx
	// bounding its waits; eventFilesLeft counts the events files not yet
	// decoded, so that the tap ends with the last of them.
	tap            *EventTap
	ctx            context.Context
	eventFilesLeft int
}

// membership is what checkMemberships needs of a Membership record.
type membership struct{ room, user, membership, event string }

// mediaFile is one blob path a media record names.
type mediaFile struct {
	mxc, path string
	thumbnail bool
}

type roomInfo struct {
	summary *RoomSummary
	version matrixevent.RoomVersion
	known   bool
	current uint64
	backExt map[string]bool
}

type snapInfo struct {
	room    string
	parent  uint64
	members map[string]string // user -> member event ID; "" when removed
}

type pendingRef struct {
	check Check
	from  string
	to    string
}

func newValidator(r *Reader) *validator {
	m := r.Manifest()
	return &validator{
		r: r, rep: &ValidationReport{Counts: map[Check]int64{}, Omissions: map[string]int64{}},
		server: m.Export.ServerName, partial: m.Export.Type != "full", personal: m.Export.Type == "user",
		seed: maphash.MakeSeed(), keys: map[[2]string]ed25519.PublicKey{}, rooms: map[string]*roomInfo{},
		events: map[uint64]struct{}{}, members: map[uint64]string{}, snaps: map[uint64]*snapInfo{},
		snapRefs: map[uint64]string{}, users: map[string]bool{}, userRefs: map[string]string{},
		media: map[string]bool{}, mediaRef: map[string]string{}, blobs: map[string]bool{},
	}
}

func (v *validator) hash(s string) uint64 { return maphash.String(v.seed, s) }

// preload reads the small sections events are checked against: server keys
// and rooms.
func (v *validator) preload(ctx context.Context) error {
	m := v.r.Manifest()
	for _, item := range m.UnknownItems() {
		v.rep.Unknown = append(v.rep.Unknown, item)
	}
	if len(m.FilesOf(SectionServerKeys)) > 0 && m.ItemKnown("m.server_keys") {
		err := ReadSection(ctx, v.r, SectionServerKeys, func(k *ServerKey) error {
			pub, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(k.PublicKey, "="))
			if err == nil && len(pub) == ed25519.PublicKeySize {
				v.keys[[2]string{k.ServerName, k.KeyID}] = pub
			}
			return nil
		})
		if err != nil {
			return v.fileErr(err)
		}
	}
	if len(m.FilesOf(SectionRooms)) > 0 && m.ItemKnown("m.rooms") {
		err := ReadSection(ctx, v.r, SectionRooms, func(room *Room) error {
			sum := RoomSummary{RoomID: room.RoomID, Version: room.Version}
			ri := &roomInfo{current: room.CurrentState, backExt: map[string]bool{}}
			if rv, err := matrixevent.LookupRoomVersion(room.Version); err == nil {
				ri.version, ri.known, sum.Supported = rv, true, true
			} else {
				v.rep.add(CheckUnsupportedRoomVersion, SeverityError, room.RoomID,
					"room version %q is unknown: its events cannot be checked and most targets cannot import it", room.Version)
			}
			for _, id := range room.BackwardExtremities {
				ri.backExt[id] = true
			}
			v.rep.Rooms = append(v.rep.Rooms, sum)
			ri.summary = &v.rep.Rooms[len(v.rep.Rooms)-1]
			v.rooms[room.RoomID] = ri
			return nil
		})
		if err != nil {
			return v.fileErr(err)
		}
		// Rooms grew by append: re-point summaries at their final slots.
		for i := range v.rep.Rooms {
			v.rooms[v.rep.Rooms[i].RoomID].summary = &v.rep.Rooms[i]
		}
	}
	return nil
}

func (v *validator) fileErr(err error) error {
	var fe *FormatError
	if errors.As(err, &fe) || isContainerError(err) {
		v.rep.add(CheckFile, SeverityError, whereOf(err), "%v", err)
		return nil
	}
	return err
}

func (v *validator) file(f *File) error {
	if !f.Known || f.Blob != nil || sectionOfPath(f.Entry.Path) != SectionEvents {
		v.drainEvents() // the events before it, in archive order
	}
	if f.Blob != nil {
		v.rep.Blobs++
		v.rep.BlobBytes += f.BlobSize
		v.blobs[f.BlobPath] = true
		return nil
	}
	v.rep.Files++
	v.rep.Records += f.Entry.Records
	if !f.Known {
		return nil
	}
	switch sectionOfPath(f.Entry.Path) {
	case SectionEvents:
		return v.eventFile(f)
	case SectionStateSnapshots:
		return DecodeRecords(v.r, f, func(s *StateSnapshot) error { v.snapshot(s); return nil })
	case SectionMemberships:
		return DecodeRecords(v.r, f, func(m *Membership) error {
			// Only memberships in rooms with a current state can be checked;
			// keeping no others keeps records an archive may pack by the
			// million (an empty map is one byte) from costing memory.
			if room := v.rooms[m.RoomID]; room != nil && room.current != 0 {
				v.mships = append(v.mships, membership{m.RoomID, m.UserID, m.Membership, m.EventID})
			}
			v.roomRef(m.RoomID, "membership of "+m.UserID)
			v.userRef(m.UserID, "membership in "+m.RoomID)
			return nil
		})
	case SectionUsers:
		return DecodeRecords(v.r, f, func(u *User) error { v.users[u.UserID] = true; return nil })
	case SectionDevices:
		return DecodeRecords(v.r, f, func(d *Device) error { v.userRef(d.UserID, "device "+d.DeviceID); return nil })
	case SectionAccountData:
		return DecodeRecords(v.r, f, func(a *AccountData) error {
			v.userRef(a.UserID, "account data "+a.Type)
			if a.RoomID != "" {
				v.roomRef(a.RoomID, "account data "+a.Type+" of "+a.UserID)
			}
			return nil
		})
	case SectionMedia:
		return DecodeRecords(v.r, f, func(m *Media) error {
			v.media[m.Origin+"/"+m.MediaID] = true
			// Only the paths are kept: a thumbnail without one costs nothing.
			mxc := "mxc://" + m.Origin + "/" + m.MediaID
			if m.Path != "" {
				v.mediaFiles = append(v.mediaFiles, mediaFile{mxc: mxc, path: m.Path})
			}
			for _, t := range m.Thumbnails {
				if t.Path != "" {
					v.mediaFiles = append(v.mediaFiles, mediaFile{mxc: mxc, path: t.Path, thumbnail: true})
				}
			}
			return nil
		})
	case SectionOmissions:
		return DecodeRecords(v.r, f, func(o *Omission) error {
			v.rep.Omissions[o.Code]++
			if len(v.rep.OmissionRecords) < MaxProblems {
				v.rep.OmissionRecords = append(v.rep.OmissionRecords, *o)
			}
			return nil
		})
	}
	return nil
}

func (v *validator) roomRef(roomID, what string) {
	if _, ok := v.rooms[roomID]; !ok {
		v.rep.add(CheckUnknownRoom, v.sev(), roomID, "%s names a room with no m.rooms record", what)
	}
}

func (v *validator) userRef(userID, what string) {
	if matrixevent.ServerOf(userID) != v.server {
		return
	}
	if _, seen := v.userRefs[userID]; !seen {
		v.userRefs[userID] = what
	}
}

// sev is the severity of a reference that a partial export may lack.
func (v *validator) sev() Severity {
	if v.partial {
		return SeverityWarning
	}
	return SeverityError
}

// mxcScheme starts every mxcPattern match: most events have none, and
// looking for it costs less than the regexp's setup.
var mxcScheme = []byte("mxc://")

var mxcPattern = regexp.MustCompile(`mxc://([A-Za-z0-9.:\-\[\]]+)/([A-Za-z0-9_\-]+)`)

// checkedEvent is an event with what can be computed of it apart from
// the others (parsing, its ID, signatures and content hash), which
// eventFile computes on every core, a batch's signatures verified
// together (matrixevent.Batch).
type checkedEvent struct {
	e      *Event
	room   *roomInfo
	fields *matrixevent.Fields
	// onePass: fields are the checks' one pass's (Checked.Fields), exact
	// to the member; otherwise matrixevent.Parse's, or nil.
	onePass  bool
	parseErr error
	checked  matrixevent.Checked
}

// eventBatch is how many events go to a core at once, their signatures
// verified in one equation, which costs less per signature the more it
// holds (matrixevent's BenchmarkVerifyLarge: 12.0 µs a signature at 256,
// 7.1-8.3 at 1,024, 6.8-7.1 at 2,048), while the batches in flight
// (one a core, and no more than maxInflightBytes of events unless one
// batch alone holds more) stay in memory: 1,024 events took 27 MB less
// peak RSS than 2,048 to verify the 1M-event benchmark archive. A batch
// also ends before eventBatchBytes of events (eventSize), and a bigger
// event makes a batch of its own.
const (
	eventBatch      = 1024
	eventBatchBytes = 4 << 20
)

// eventFile validates a file's events: each batch is parsed and its
// signatures and hashes checked on a spare core while the next batch is
// decoded, and the results are taken in archive order, so the report is
// the one a single pass would give. Batches run on across consecutive
// event files (a writer closes a file at 1 MiB, about a thousand events,
// so a file alone would keep one core busy); file drains them before any
// other file, and run after the walk.
//
// The events' JSON are slices of the file's data (decodeEvents with
// alias), not copies: a file stays in memory while any of its events is
// in a batch, here or in the tap; nothing keeps an event's JSON longer.
func (v *validator) eventFile(f *File) error {
	err := decodeEvents(v.r.codec, f.Entry, f.Data, true, func(e *Event) error {
		p := &v.pipeline
		size := eventSize(e)
		if len(p.cur) > 0 && p.size+size > eventBatchBytes {
			v.submitEvents() // a big event starts a batch of its own
		}
		p.cur = append(p.cur, checkedEvent{e: e, room: v.rooms[e.RoomID]})
		p.size += size
		if len(p.cur) == eventBatch || p.size >= eventBatchBytes {
			v.submitEvents()
		}
		return nil
	})
	if err == nil && v.tap != nil {
		if v.eventFilesLeft--; v.eventFilesLeft == 0 {
			v.drainEvents()
			v.tap.finish(nil) // the consumer need not wait for the other sections
		}
	}
	return err
}

// eventSize is what a decoded event holds in memory, roughly: the bytes of
// its variable-size fields.
func eventSize(e *Event) int {
	return len(e.EventID) + len(e.RoomID) + len(e.JSON) + len(e.Rejected) + len(e.OriginalJSON)
}

// eventPipeline is eventFile's batches: the one being decoded, and those
// being checked, oldest first.
type eventPipeline struct {
	cur           []checkedEvent
	size          int // of cur's events (eventSize)
	inflight      []eventJob
	inflightBytes int // of inflight's events
}

type eventJob struct {
	batch []checkedEvent
	size  int
	done  chan struct{}
}

// maxInflightBytes bounds the events of the batches being checked: the
// oldest are taken while they hold more (all but the newest), so that an
// archive of big events (a file may hold one of up to MaxFileSize) keeps
// few in memory, whatever the number of cores.
const maxInflightBytes = 16 << 20

// sigBatches are the signature batches of finished jobs, for the next:
// a Batch keeps its memory and decoded keys from one Verify to the next.
var sigBatches = sync.Pool{New: func() any { return new(matrixevent.Batch) }}

// submitEvents starts checking the batch being decoded, then takes the
// oldest batches while more than one a core, or more than
// maxInflightBytes, are being checked (never the one just started).
func (v *validator) submitEvents() {
	p := &v.pipeline
	j := eventJob{batch: p.cur, size: p.size, done: make(chan struct{})}
	p.cur, p.size = nil, 0
	p.inflight = append(p.inflight, j)
	p.inflightBytes += j.size
	go func() {
		defer close(j.done)
		sigs := sigBatches.Get().(*matrixevent.Batch)
		defer sigBatches.Put(sigs)
		for i := range j.batch {
			v.checkEvent(&j.batch[i], sigs)
		}
		sigs.Verify()
	}()
	for len(p.inflight) > 1 && (len(p.inflight) > runtime.GOMAXPROCS(0) || p.inflightBytes > maxInflightBytes) {
		v.takeEvents()
	}
}

// takeEvents waits for the oldest batch and takes its events in order.
func (v *validator) takeEvents() {
	p := &v.pipeline
	j := p.inflight[0]
	p.inflight[0] = eventJob{} // the events go with it
	p.inflight = p.inflight[1:]
	p.inflightBytes -= j.size
	<-j.done
	for i := range j.batch {
		v.event(&j.batch[i])
	}
	if v.tap != nil {
		v.tap.send(v.ctx, j.batch)
	}
}

// drainEvents checks and takes every event decoded so far.
func (v *validator) drainEvents() {
	if len(v.pipeline.cur) > 0 {
		v.submitEvents()
	}
	for len(v.pipeline.inflight) > 0 {
		v.takeEvents()
	}
}

// checkEvent computes what can be known of one event alone, its
// signatures verified in sigs (complete once sigs.Verify returns). It
// reads only what preload filled (rooms, keys), so it runs on any
// goroutine.
func (v *validator) checkEvent(c *checkedEvent, sigs *matrixevent.Batch) {
	if c.room == nil {
		return
	}
	if c.room.known {
		// The checks' one pass gives the fields too, mostly; the checks'
		// outcome is not reported for an event that does not parse.
		sigs.Add(c.room.version, c.e.JSON, v.keyLookup, !c.e.Redacted, &c.checked)
		if c.fields = c.checked.Fields; c.fields != nil {
			c.onePass = true
			return
		}
	}
	c.fields, c.parseErr = matrixevent.Parse(c.e.JSON)
}

func (v *validator) keyLookup(server, keyID string) (ed25519.PublicKey, bool) {
	k, ok := v.keys[[2]string{server, keyID}]
	return k, ok
}

func (v *validator) event(c *checkedEvent) {
	e := c.e
	v.rep.Events++
	v.events[v.hash(e.EventID)] = struct{}{}
	room := c.room
	if room == nil {
		v.rep.add(CheckUnknownRoom, SeverityError, e.EventID, "event in room %s, which has no m.rooms record", e.RoomID)
		return
	}
	room.summary.Events++
	fields, err := c.fields, c.parseErr
	if err != nil {
		v.rep.add(CheckEventUnparseable, SeverityError, e.EventID, "%v", err)
		return
	}
	if room.known {
		v.reportChecks(e, fields, c.checked)
	}
	if fields.Type == "m.room.member" && fields.StateKey != nil {
		v.members[v.hash(e.EventID)] = *fields.StateKey + "\x00" + membershipOf(fields.Content)
	}
	if e.StateBefore != 0 {
		if _, seen := v.snapRefs[e.StateBefore]; !seen {
			v.snapRefs[e.StateBefore] = "state_before of " + e.EventID
		}
	}
	for _, id := range fields.AuthEvents {
		v.ref(CheckMissingAuthEvent, e.EventID, id)
	}
	for _, id := range fields.PrevEvents {
		if !room.backExt[id] {
			v.ref(CheckMissingPrevEvent, e.EventID, id)
		}
	}
	if !e.Redacted && bytes.Contains(fields.Content, mxcScheme) {
		for _, m := range mxcPattern.FindAllSubmatch(fields.Content, -1) {
			if string(m[1]) != v.server {
				continue
			}
			key := string(m[1]) + "/" + string(m[2])
			if _, seen := v.mediaRef[key]; !seen {
				v.mediaRef[key] = e.EventID
			}
		}
	}
}

// membershipOf is a member event's content.membership as encoding/json
// decodes it into a string ("" when it is not one), read without
// encoding/json where the scan is sure to agree. The result may share
// content's bytes.
func membershipOf(content []byte) string {
	var m [1]string
	if matrixevent.ScanObject(unsafe.String(unsafe.SliceData(content), len(content)), membershipName, m[:]) {
		if m[0] == "" || m[0][0] != '"' {
			return "" // absent, or not a string: encoding/json leaves it ""
		}
		if s, ok := matrixevent.ScanString(m[0]); ok {
			return s
		}
	}
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(content, &c)
	return c.Membership
}

var membershipName = []string{"membership"}

func (v *validator) reportChecks(e *Event, fields *matrixevent.Fields, c matrixevent.Checked) {
	if id, err := c.ID, c.IDErr; err != nil || id != e.EventID {
		v.rep.add(CheckEventIDMismatch, SeverityError, e.EventID, "the event's own ID is %q (%v)", id, err)
	}
	status, err := c.Signatures, c.SigErr
	switch status {
	case matrixevent.SignatureValid:
		v.rep.Signatures.Valid++
	case matrixevent.SignatureInvalid:
		v.rep.Signatures.Invalid++
		v.rep.add(CheckBadSignature, SeverityError, e.EventID, "%v", err)
	case matrixevent.SignatureMissing:
		v.rep.Signatures.Missing++
		v.rep.add(CheckMissingSignature, SeverityError, e.EventID, "not signed by the sender's server %s", matrixevent.ServerOf(fields.Sender))
	case matrixevent.SignatureUnverifiable:
		v.rep.Signatures.Unverifiable++
		if len(v.rep.UnverifiableEvents) < MaxProblems {
			v.rep.UnverifiableEvents = append(v.rep.UnverifiableEvents, e.EventID)
		}
	}
	if e.Redacted {
		v.rep.Signatures.RedactedHashUncheckable++
	} else if err := c.HashErr; err != nil {
		v.rep.add(CheckContentHash, SeverityError, e.EventID, "%v", err)
	}
}

func (v *validator) ref(c Check, from, to string) {
	if _, ok := v.events[v.hash(to)]; ok {
		return
	}
	v.pending = append(v.pending, pendingRef{check: c, from: from, to: to})
}

func (v *validator) snapshot(s *StateSnapshot) {
	info := &snapInfo{room: s.RoomID, parent: s.Parent, members: map[string]string{}}
	v.snaps[s.ID] = info
	if s.Parent != 0 {
		if _, seen := v.snapRefs[s.Parent]; !seen {
			v.snapRefs[s.Parent] = fmt.Sprintf("parent of snapshot %d", s.ID)
		}
	}
	// Remove applies before Set, so a key in both ends up set.
	for _, k := range s.Remove {
		if k.Type == "m.room.member" {
			info.members[k.StateKey] = ""
		}
	}
	for _, e := range s.Set {
		if _, ok := v.events[v.hash(e.EventID)]; !ok {
			v.snapEvts = append(v.snapEvts, pendingRef{check: CheckSnapshotOutside, from: fmt.Sprintf("snapshot %d (%s)", s.ID, s.RoomID), to: e.EventID})
		}
		if e.Type == "m.room.member" {
			info.members[e.StateKey] = e.EventID
		}
	}
}

// finish resolves references that pointed forward in the archive.
func (v *validator) finish() {
	for _, p := range v.pending {
		if _, ok := v.events[v.hash(p.to)]; ok {
			continue
		}
		what := "auth event"
		if p.check == CheckMissingPrevEvent {
			what = "prev event"
		}
		v.rep.add(p.check, v.sev(), p.from, "%s %s is not in the archive", what, p.to)
	}
	for _, p := range v.snapEvts {
		if _, ok := v.events[v.hash(p.to)]; !ok {
			sev := SeverityError
			if v.personal {
				sev = SeverityWarning // an event the user may not see
			}
			v.rep.add(CheckSnapshotOutside, sev, p.from, "names event %s, which is not in the archive", p.to)
		}
	}
	for id, from := range v.snapRefs {
		if _, ok := v.snaps[id]; !ok {
			v.rep.add(CheckMissingSnapshot, SeverityError, from, "snapshot %d is not in the archive", id)
		}
	}
	for _, room := range v.sortedRooms() {
		if room.current != 0 {
			if _, ok := v.snaps[room.current]; !ok {
				v.rep.add(CheckMissingSnapshot, SeverityError, room.summary.RoomID, "current state snapshot %d is not in the archive", room.current)
			}
		}
	}
	v.checkMemberships()
	for key, from := range v.mediaRef {
		if !v.media[key] {
			v.rep.add(CheckDanglingMedia, v.sev(), from, "references mxc://%s, which has no m.media record", key)
		}
	}
	for _, m := range v.mediaFiles {
		if v.blobs[m.path] {
			continue
		}
		what := "file"
		if m.thumbnail {
			what = "thumbnail"
		}
		v.rep.add(CheckMissingMediaFile, SeverityError, m.mxc, "%s %s is not in the archive", what, m.path)
	}
	users := make([]string, 0, len(v.userRefs))
	for u := range v.userRefs {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if !v.users[u] {
			v.rep.add(CheckUnknownUser, v.sev(), u, "%s names this local user, who has no m.users record", v.userRefs[u])
		}
	}
	sort.SliceStable(v.rep.Problems, func(i, j int) bool { return v.rep.Problems[i].Check < v.rep.Problems[j].Check })
}

func (v *validator) sortedRooms() []*roomInfo {
	out := make([]*roomInfo, 0, len(v.rooms))
	for _, r := range v.rooms {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].summary.RoomID < out[j].summary.RoomID })
	return out
}

// checkMemberships compares each membership record with the member event
// the room's current state holds for that user.
func (v *validator) checkMemberships() {
	current := map[string]map[string]string{}
	for roomID, room := range v.rooms {
		if room.current == 0 {
			continue
		}
		current[roomID] = v.memberState(room.current)
	}
	for _, m := range v.mships {
		state, ok := current[m.room]
		if !ok {
			continue
		}
		where := m.user + " in " + m.room
		evID := state[m.user]
		if evID == "" {
			v.rep.add(CheckMembershipMismatch, SeverityError, where, "membership %q but the current state has no member event for the user", m.membership)
			continue
		}
		if evID != m.event {
			v.rep.add(CheckMembershipMismatch, SeverityError, where, "membership names event %s, the current state holds %s", m.event, evID)
			continue
		}
		if info, ok := v.members[v.hash(evID)]; ok {
			_, membership, _ := strings.Cut(info, "\x00")
			if membership != m.membership {
				v.rep.add(CheckMembershipMismatch, SeverityError, where, "membership %q but member event %s says %q", m.membership, evID, membership)
			}
		}
	}
}

// memberState composes the member entries of a snapshot from its chain of
// parents; a cycle or missing parent ends the chain (reported elsewhere).
func (v *validator) memberState(id uint64) map[string]string {
	var chain []*snapInfo
	seen := map[uint64]bool{}
	for id != 0 && !seen[id] {
		seen[id] = true
		s, ok := v.snaps[id]
		if !ok {
			break
		}
		chain = append(chain, s)
		id = s.parent
	}
	out := map[string]string{}
	for i := len(chain) - 1; i >= 0; i-- {
		for user, ev := range chain[i].members {
			if ev == "" {
				delete(out, user)
			} else {
				out[user] = ev
			}
		}
	}
	return out
}

func whereOf(err error) string {
	var fe *FormatError
	if errors.As(err, &fe) {
		return fe.File
	}
	var ce *container.Error
	if errors.As(err, &ce) {
		return ce.Part
	}
	return "archive"
}

func isContainerError(err error) bool {
	var ce *container.Error
	return errors.As(err, &ce)
}
