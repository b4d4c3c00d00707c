package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

// A personal export (archive type "user", the bot's !mydata) holds one
// user's own data and the room history they are entitled to see:
//
//   - their account (without the password hash), profile, threepids,
//     devices (no access tokens), public
//     e2ee keys, key backups, pushers, filters, account data (tags, push
//     rules) and the media they uploaded: the source's user-keyed streams
//     with Filter{Users: [user], Media: all};
//   - of the rooms they have a membership in (joined, left, invited,
//     banned): the room records, memberships, state snapshots, their own
//     receipts, and the timeline events the homeserver's /messages shows
//     them, by the spec's history visibility rules as the source's
//     implementation applies them (Dendrite or Synapse, see visible);
//     redacted events only in redacted form;
//   - nothing else: no other user's account data, devices, receipts or
//     media, no vendor files, no private server key.
//
// The room streams run on the whole server and are filtered here, so a
// personal export reads every room's events once. Its memory grows with
// the state snapshots of the user's rooms (two event IDs each), not
// with their events.

// personalUserStreams are the source streams taken from a user-filtered
// export; personalRoomStreams from an unfiltered one, in this order
// (memberships first: the filter must know the user's rooms before the
// room records).
var (
	personalUserStreams = []string{source.StreamServerKeys, source.StreamUsers, source.StreamDevices, source.StreamE2EEKeys, source.StreamKeyBackups,
		source.StreamPushers, source.StreamFilters, source.StreamAccountData, source.StreamMedia}
	personalRoomStreams = []string{source.StreamMemberships, source.StreamRooms, source.StreamReceipts, source.StreamState, source.StreamEvents, source.StreamRedactions}
)

// personalStreams builds the stream list of a personal export of user.
func personalStreams(ctx context.Context, src source.Source, user string, o source.Options) ([]source.Stream, error) {
	mine, err := src.Streams(ctx, source.Filter{Users: []string{user}, Media: source.MediaAll}, o)
	if err != nil {
		return nil, err
	}
	all, err := src.Streams(ctx, source.Filter{Media: source.MediaNone}, o)
	if err != nil {
		return nil, err
	}
	byName := func(list []source.Stream, name string) (source.Stream, bool) {
		i := slices.IndexFunc(list, func(s source.Stream) bool { return s.Name == name })
		if i < 0 {
			return source.Stream{}, false
		}
		return list[i], true
	}
	var out []source.Stream
	for _, name := range personalUserStreams {
		if s, ok := byName(mine, name); ok {
			run := s.Run
			s.Run = func(ctx context.Context, cursor []byte, sink source.Sink) error {
				return run(ctx, cursor, noCredentials{sink})
			}
			out = append(out, s)
		}
	}
	memberships, ok := byName(all, source.StreamMemberships)
	if !ok {
		return nil, fmt.Errorf("personal export: the %s source has no memberships stream", src.Info().Implementation)
	}
	v := &visibility{user: user, rooms: map[string]string{}, snapshots: map[uint64]snapshotVis{},
		values: map[string]string{}, redacted: map[string]bool{},
		synapse: src.Info().Implementation == "synapse", left: map[string]string{}, closed: map[string]bool{}}
	// First pass: the user's rooms and current memberships.
	if err := memberships.Run(ctx, nil, &membershipScan{v: v}); err != nil {
		return nil, fmt.Errorf("personal export: find %s's rooms: %w", user, err)
	}
	for _, name := range personalRoomStreams {
		s, ok := byName(all, name)
		if !ok {
			continue
		}
		run := s.Run
		s.Run = func(ctx context.Context, cursor []byte, sink source.Sink) error {
			return run(ctx, cursor, &visibleSink{Sink: sink, v: v})
		}
		s.Count = nil // the whole server's counts would mislead the progress
		out = append(out, s)
	}
	return out, nil
}

// noCredentials drops the password hash and any access token from a
// personal export: it is the user's data, not a way to log in.
type noCredentials struct{ source.Sink }

func (n noCredentials) Record(section string, rec any) error {
	switch r := rec.(type) {
	case *archive.User:
		c := *r
		c.PasswordHash = ""
		rec = &c
	case *archive.Device:
		c := *r
		c.AccessTokens = nil
		rec = &c
	}
	return n.Sink.Record(section, rec)
}

// visibility is what the filter knows while the room streams pass.
type visibility struct {
	user string
	// rooms: the user's rooms and their current membership there.
	rooms map[string]string
	// snapshots of the user's rooms: the user's membership event and the
	// history visibility event in each.
	snapshots map[uint64]snapshotVis
	// values of the events those point at: membership or visibility.
	values map[string]string
	// redacted events kept (their redaction records are kept too).
	redacted map[string]bool
	// synapse: the rules as Synapse applies them (visibleSynapse), with
	// left, the leave event of each room the user has left, and closed,
	// the rooms whose leave event has passed.
	synapse bool
	left    map[string]string
	closed  map[string]bool
}

type snapshotVis struct{ member, historyVisibility string }

// membershipScan is the first pass's sink: it only learns.
type membershipScan struct{ v *visibility }

func (m *membershipScan) Record(section string, rec any) error {
	if mem, ok := rec.(*archive.Membership); ok && mem.UserID == m.v.user {
		m.v.rooms[mem.RoomID] = mem.Membership
		if mem.Membership == "leave" {
			m.v.left[mem.RoomID] = mem.EventID
		}
	}
	return nil
}
func (m *membershipScan) Blob(string, int64, io.Reader) (string, error) { return "", nil }
func (m *membershipScan) File(string, []byte, int64, []string) error    { return nil }
func (m *membershipScan) Omit(archive.Omission) error                   { return nil }
func (m *membershipScan) Checkpoint([]byte) error                       { return nil }

// visibleSink passes on what the user may see.
type visibleSink struct {
	source.Sink
	v *visibility
}

func (s *visibleSink) Record(section string, rec any) error {
	v := s.v
	switch r := rec.(type) {
	case *archive.Membership:
		if _, mine := v.rooms[r.RoomID]; !mine {
			return nil
		}
	case *archive.Room:
		if _, mine := v.rooms[r.RoomID]; !mine {
			return nil
		}
	case *archive.Receipt:
		if r.UserID != v.user {
			return nil
		}
	case *archive.StateSnapshot:
		if _, mine := v.rooms[r.RoomID]; !mine {
			return nil
		}
		sv := v.snapshots[r.Parent]
		for _, k := range r.Remove {
			v.clear(&sv, k.Type, k.StateKey)
		}
		for _, e := range r.Set {
			switch {
			case e.Type == "m.room.member" && e.StateKey == v.user:
				sv.member = e.EventID
			case e.Type == "m.room.history_visibility" && e.StateKey == "":
				sv.historyVisibility = e.EventID
			}
		}
		v.snapshots[r.ID] = sv
	case *archive.Event:
		if _, mine := v.rooms[r.RoomID]; !mine || !v.visible(r) {
			return nil
		}
		if r.Redacted {
			v.redacted[r.EventID] = true
		}
	case *archive.Redaction:
		if !v.redacted[r.EventID] {
			return nil
		}
	}
	return s.Sink.Record(section, rec)
}

func (v *visibility) clear(sv *snapshotVis, typ, key string) {
	switch {
	case typ == "m.room.member" && key == v.user:
		sv.member = ""
	case typ == "m.room.history_visibility" && key == "":
		sv.historyVisibility = ""
	}
}

// eventFields are the parts of an event the rules read.
type eventFields struct {
	Type     string  `json:"type"`
	StateKey *string `json:"state_key"`
	Content  struct {
		Membership        string `json:"membership"`
		HistoryVisibility string `json:"history_visibility"`
	} `json:"content"`
}

// historyVisibilityRank orders visibilities from least to most restrictive.
var historyVisibilityRank = map[string]int{"world_readable": 0, "shared": 1, "invited": 2, "joined": 3}

// visible applies the history visibility rules to a timeline event, as
// Dendrite's /messages does (syncapi/internal/history_visibility.go): the
// user's own membership events are always visible; otherwise the
// visibility in force before the event decides (for a visibility change,
// the less restrictive of old and new), with the user's membership before
// the event and their current one: world_readable: always; shared: joined
// then or now; invited: joined or invited then; joined: joined then. The
// default visibility is shared and the default membership leave. Outliers,
// rejected and soft-failed events are never in a timeline.
func (v *visibility) visible(e *archive.Event) bool {
	var f eventFields
	if err := json.Unmarshal(e.JSON, &f); err != nil || e.Rejected != "" {
		return false
	}
	// Remember what later snapshots may point at, outliers included.
	isState := f.StateKey != nil
	ownMembership := isState && f.Type == "m.room.member" && *f.StateKey == v.user
	isVisibility := isState && f.Type == "m.room.history_visibility" && *f.StateKey == ""
	switch {
	case ownMembership:
		v.values[e.EventID] = f.Content.Membership
	case isVisibility:
		v.values[e.EventID] = f.Content.HistoryVisibility
	}
	if e.Outlier || e.SoftFailed {
		return false
	}
	if v.synapse {
		return v.visibleSynapse(e, &f)
	}
	if ownMembership {
		return true
	}
	before := v.snapshots[e.StateBefore]
	hv := v.values[before.historyVisibility]
	if hv == "" {
		hv = "shared"
	}
	if next, ok := historyVisibilityRank[f.Content.HistoryVisibility]; isVisibility && ok && next < historyVisibilityRank[hv] {
		hv = f.Content.HistoryVisibility
	}
	at := v.values[before.member]
	if at == "" {
		at = "leave"
	}
	switch hv {
	case "world_readable":
		return true
	case "shared":
		return at == "join" || v.rooms[e.RoomID] == "join"
	case "invited":
		return at == "join" || at == "invite"
	case "joined":
		return at == "join"
	}
	return false
}

// membershipRank orders memberships from most to least joined (Synapse's
// MEMBERSHIP_PRIORITY).
var membershipRank = map[string]int{"join": 0, "invite": 1, "knock": 2, "leave": 3, "ban": 4}

// visibleSynapse applies the rules as Synapse 1.160's /messages does
// (synapse/handlers/pagination.py, synapse/visibility.py), where they
// differ from Dendrite's:
//   - a user who has left a room sees its timeline up to their leave
//     event, nothing after it (the pagination token is clamped there);
//   - shared history is shown to every user with a membership event in the
//     room who is not peeking, that is who is joined now or has left (a
//     rejected invite included), not only to one joined now; a user who is
//     invited, knocking or banned now is peeking: /messages refuses them
//     (unless the room is world readable), and Ferry gives them what they
//     could see at the time, as for Dendrite;
//   - the user's own membership event: a leave after a join or an invite
//     is always shown; otherwise the more joined of the old and new
//     membership counts as theirs at the event.
//
// Otherwise as visible: the visibility in force (for a change, the less
// restrictive of old and new); world_readable: always; joined then:
// always; invited: invited then; an unknown visibility: only joined then.
func (v *visibility) visibleSynapse(e *archive.Event, f *eventFields) bool {
	if v.closed[e.RoomID] {
		return false
	}
	if e.EventID == v.left[e.RoomID] {
		v.closed[e.RoomID] = true
	}
	before := v.snapshots[e.StateBefore]
	hv := v.values[before.historyVisibility]
	if hv == "" {
		hv = "shared"
	}
	isState := f.StateKey != nil
	if next, ok := historyVisibilityRank[f.Content.HistoryVisibility]; isState && f.Type == "m.room.history_visibility" && *f.StateKey == "" && ok && next < historyVisibilityRank[hv] {
		hv = f.Content.HistoryVisibility
	}
	at := v.values[before.member]
	if _, ok := membershipRank[at]; !ok {
		at = "leave"
	}
	if isState && f.Type == "m.room.member" && *f.StateKey == v.user {
		now := f.Content.Membership
		if _, ok := membershipRank[now]; !ok {
			now = "leave"
		}
		if now == "leave" && (at == "join" || at == "invite") {
			return true
		}
		if membershipRank[now] < membershipRank[at] {
			at = now
		}
	}
	peeking := v.rooms[e.RoomID] != "join" && v.rooms[e.RoomID] != "leave"
	switch {
	case hv == "world_readable", hv == "shared" && !peeking, at == "join":
		return true
	case hv == "invited":
		return at == "invite"
	}
	return false
}
