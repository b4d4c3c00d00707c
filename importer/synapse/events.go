package synapse

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/importer"
	"github.com/ferry-matrix/ferry/matrixevent"
)

// maxDeltaHops is Synapse's limit on a state group's delta chain
// (MAX_STATE_DELTA_HOPS): a longer chain is still read, only slowly.
const maxDeltaHops = 100

// The archive holds the state *before* each event; Synapse maps an
// accepted state event to the group *after* it, a rejected event and a
// non-state event to the group before it, and an outlier to no group.
//
// The restore reads the snapshots twice and the events twice, keeping in
// memory one small record per snapshot and the IDs of the snapshots that
// become groups (never the state itself):
//
//  1. snapshots, light: each one's parent, and for a snapshot that changes
//     one key of its parent, which key. Synapse archives write the state
//     before a state event that way, as the group after it (the parent)
//     less the event; so the parent is the after-group, and no new group is
//     needed.
//  2. events, light: which snapshots events stand on, and so which become
//     groups (with their ancestors, for delta chains).
//  3. snapshots: each needed one becomes a state group, a delta on its
//     parent's group, with an ID from state_group_id_seq (archive IDs can
//     be far larger than Synapse's).
//  4. events: the tables per event; a state event whose after-state is not
//     a snapshot gets a new one-row delta group on its before-group.
type statePlan struct {
	snaps  map[uint64]*snapInfo
	groups map[uint64]group // needed snapshot -> its group, once written
	// current holds each room's current-state snapshot ID.
	current map[uint64]string
	// shortcut: the archive is Synapse's, whose one-key snapshot before a
	// state event is the group after it less the event; expect lists, per
	// such after-group, the entries it must set (checked as it is written).
	shortcut bool
	expect   map[uint64][]archive.StateEntry
}

type snapInfo struct {
	parent  uint64
	oneKey  *archive.StateKey // the one key this snapshot changes, if one
	removes bool
	needed  bool
}

type group struct {
	id   int64
	hops int
}

// afterSnapshot says whether the state after accepted state event ev is a
// snapshot of the archive already (the parent of its one-key
// before-snapshot), and which.
func (sp *statePlan) afterSnapshot(ev *archive.Event, f *matrixevent.Fields) (uint64, bool) {
	s := sp.snaps[ev.StateBefore]
	if !sp.shortcut || s == nil || s.parent == 0 || s.oneKey == nil || f.StateKey == nil {
		return 0, false
	}
	if s.oneKey.Type != f.Type || s.oneKey.StateKey != *f.StateKey {
		return 0, false
	}
	return s.parent, true
}

// planState runs passes 1 and 2.
func planState(ctx context.Context, r *archive.Reader, rooms map[string]*roomPlan) (*statePlan, error) {
	sp := &statePlan{snaps: map[uint64]*snapInfo{}, groups: map[uint64]group{}, current: map[uint64]string{},
		shortcut: fromSynapse(r), expect: map[uint64][]archive.StateEntry{}}
	for id, rp := range rooms {
		if rp.room.CurrentState != 0 {
			sp.current[rp.room.CurrentState] = id
		}
	}
	err := archive.ReadSection(ctx, r, archive.SectionStateSnapshots, func(s *archive.StateSnapshot) error {
		if rooms[s.RoomID] == nil {
			return nil
		}
		info := &snapInfo{parent: s.Parent, removes: len(s.Remove) > 0}
		if s.Parent != 0 && len(s.Set)+len(s.Remove) == 1 {
			if len(s.Set) == 1 {
				info.oneKey = &archive.StateKey{Type: s.Set[0].Type, StateKey: s.Set[0].StateKey}
			} else {
				k := s.Remove[0]
				info.oneKey = &k
			}
		}
		sp.snaps[s.ID] = info
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read state snapshots: %w", err)
	}
	// need marks snapshot id and its ancestors needed by event eventID.
	need := func(id uint64, eventID string) error {
		for id != 0 {
			s := sp.snaps[id]
			if s == nil {
				return fmt.Errorf("event %s stands on state snapshot %d, which the archive lacks", eventID, id)
			}
			if s.needed {
				return nil
			}
			s.needed = true
			id = s.parent
		}
		return nil
	}
	err = archive.ReadSection(ctx, r, archive.SectionEvents, func(ev *archive.Event) error {
		if rooms[ev.RoomID] == nil || ev.Outlier || ev.StateBefore == 0 {
			return nil
		}
		if ev.Rejected == "" && mayBeState(ev.JSON) {
			f, _, err := parseEventRow(string(ev.JSON))
			if err != nil {
				return fmt.Errorf("event %s: %w", ev.EventID, err)
			}
			if after, ok := sp.afterSnapshot(ev, f); ok {
				// f's strings are substrings of the event's JSON: kept, they would keep it all.
				entry := archive.StateEntry{Type: strings.Clone(f.Type), StateKey: strings.Clone(*f.StateKey), EventID: ev.EventID}
				sp.expect[after] = append(sp.expect[after], entry)
				return need(after, ev.EventID)
			}
		}
		return need(ev.StateBefore, ev.EventID)
	})
	if err != nil {
		return nil, fmt.Errorf("plan state groups: %w", err)
	}
	for id, s := range sp.snaps {
		if s.needed && s.removes {
			// Synapse's deltas can only add or replace keys.
			return nil, fmt.Errorf("state snapshot %d removes keys from its parent and is the state of an event: this Ferry cannot restore such archives into Synapse yet", id)
		}
	}
	return sp, nil
}

// mayBeState says whether an event's JSON may have a state_key: false only
// when no key could decode as one (encoding/json matches keys without
// regard to case, with Unicode folding, and after unescaping), so that
// planning need not parse the many events that are not state.
//
// A key matches when its bytes are those of state_key with bit 0x20
// ignored (ASCII case; also DEL for the underscore): the candidates are
// found from the underscores, which bytes.IndexByte finds fast, and the
// rare JSON with a DEL byte is searched at every offset.
func mayBeState(js []byte) bool {
	if bytes.IndexByte(js, 0x7f) >= 0 {
		for i := 0; i+len(stateKey) <= len(js); i++ {
			if foldsTo(js[i:i+len(stateKey)], stateKey) {
				return true
			}
		}
	} else {
		const at = len("state") // the underscore's offset in state_key
		for off := 0; ; {
			i := bytes.IndexByte(js[off:], '_')
			if i < 0 {
				break
			}
			if start := off + i - at; start >= 0 && start+len(stateKey) <= len(js) && foldsTo(js[start:start+len(stateKey)], stateKey) {
				return true
			}
			off += i + 1
		}
	}
	return bytes.Contains(js, []byte(`\u`)) || bytes.Contains(js, []byte("\u212a")) || bytes.Contains(js, []byte("\u017f"))
}

const stateKey = "state_key"

// foldsTo says whether b equals key with bit 0x20 of every byte ignored.
func foldsTo(b []byte, key string) bool {
	for i := range len(key) {
		if b[i]|0x20 != key[i]|0x20 {
			return false
		}
	}
	return true
}

var (
	replacesColumns         = []string{"event_id", "before_group", "type", "state_key"}
	stateGroupsColumns      = []string{"id", "room_id", "event_id"}
	stateGroupEdgesColumns  = []string{"state_group", "prev_state_group"}
	stateGroupsStateColumns = []string{"state_group", "room_id", "type", "state_key", "event_id"}
	currentStagingColumns   = []string{"room_id", "type", "state_key", "event_id"}
)

// groupAllocator hands out state group IDs above the target's highest.
type groupAllocator struct{ next int64 }

func newGroupAllocator(ctx context.Context, q querier) (*groupAllocator, error) {
	var last int64
	err := q.QueryRow(ctx, `SELECT GREATEST((SELECT last_value FROM state_group_id_seq), COALESCE((SELECT max(id) FROM state_groups), 0))`).Scan(&last)
	if err != nil {
		return nil, fmt.Errorf("read state_group_id_seq: %w", err)
	}
	return &groupAllocator{next: last}, nil
}

func (g *groupAllocator) allocate() int64 { g.next++; return g.next }

// writeGroups runs pass 3: the needed snapshots become state groups, and
// each room's current state is staged for current_state_events.
func (sp *statePlan) writeGroups(ctx context.Context, b *batcher, r *archive.Reader, rooms map[string]*roomPlan, alloc *groupAllocator, p importer.Progress) error {
	err := archive.ReadSection(ctx, r, archive.SectionStateSnapshots, func(s *archive.StateSnapshot) error {
		p.Add(1)
		if rooms[s.RoomID] == nil {
			return nil
		}
		// Dendrite's snapshots can name a key twice (its state blocks
		// overlap); as in Dendrite, the later entry holds.
		s.Set = lastPerKey(s.Set)
		if room, ok := sp.current[s.ID]; ok {
			if s.Parent != 0 || len(s.Remove) > 0 {
				return fmt.Errorf("the current state of %s is a delta snapshot: this Ferry restores full current-state snapshots only", room)
			}
			roomID := any(room)
			for _, e := range s.Set {
				if err := b.add(ctx, "ferry_restore_current_state", currentStagingColumns, roomID, e.Type, e.StateKey, e.EventID); err != nil {
					return err
				}
			}
		}
		info := sp.snaps[s.ID]
		if info == nil || !info.needed {
			return nil
		}
		for _, want := range sp.expect[s.ID] {
			if !slices.Contains(s.Set, want) {
				return fmt.Errorf("state snapshot %d should be the state after %s but does not set it: the archive's snapshots are not shaped as Synapse writes them", s.ID, want.EventID)
			}
		}
		delete(sp.expect, s.ID)
		var parent group
		if s.Parent != 0 {
			var ok bool
			if parent, ok = sp.groups[s.Parent]; !ok {
				return fmt.Errorf("state snapshot %d comes before its parent %d", s.ID, s.Parent)
			}
		}
		creator := ""
		if len(s.Set) > 0 {
			creator = s.Set[len(s.Set)-1].EventID
		}
		g, err := sp.writeGroup(ctx, b, alloc, s.RoomID, creator, parent, s.Parent != 0, s.Set)
		if err != nil {
			return err
		}
		sp.groups[s.ID] = g
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore state groups: %w", err)
	}
	return nil
}

// writeGroup writes one group: a delta on parent when hasParent, else a
// full group.
func (sp *statePlan) writeGroup(ctx context.Context, b *batcher, alloc *groupAllocator, room, eventID string, parent group, hasParent bool, set []archive.StateEntry) (group, error) {
	g := group{id: alloc.allocate()}
	gid, roomID := any(g.id), any(room) // one interface each for all the rows
	if err := b.add(ctx, "state_groups", stateGroupsColumns, gid, roomID, eventID); err != nil {
		return g, err
	}
	if hasParent {
		g.hops = parent.hops + 1
		if g.hops > maxDeltaHops {
			return g, fmt.Errorf("state group chain of %s longer than Synapse's %d hops: this Ferry cannot flatten chains yet", room, maxDeltaHops)
		}
		if err := b.add(ctx, "state_group_edges", stateGroupEdgesColumns, gid, parent.id); err != nil {
			return g, err
		}
	}
	for _, e := range set {
		if err := b.add(ctx, "state_groups_state", stateGroupsStateColumns, gid, roomID, e.Type, e.StateKey, e.EventID); err != nil {
			return g, err
		}
	}
	return g, nil
}

var (
	eventsColumns = []string{"topological_ordering", "event_id", "type", "room_id", "processed", "outlier", "depth",
		"origin_server_ts", "received_ts", "sender", "contains_url", "instance_name", "stream_ordering", "state_key", "rejection_reason"}
	eventJSONColumns         = []string{"event_id", "room_id", "internal_metadata", "json", "format_version"}
	stateEventsColumns       = []string{"event_id", "room_id", "type", "state_key"}
	eventToStateGroupColumns = []string{"event_id", "state_group"}
	eventEdgesColumns        = []string{"event_id", "prev_event_id", "room_id", "is_state"}
	eventAuthColumns         = []string{"event_id", "auth_id", "room_id"}
	rejectionsColumns        = []string{"event_id", "reason", "last_check"}
	redactionsColumns        = []string{"event_id", "redacts", "have_censored", "received_ts", "recheck"}
	relationsColumns         = []string{"event_id", "relates_to_id", "relation_type", "aggregation_key"}
	membershipsColumns       = []string{"event_id", "user_id", "sender", "room_id", "membership", "display_name", "avatar_url", "event_stream_ordering"}
)

// orderings hands out stream orderings: the source's, when the archive is
// Synapse's own and restored whole (clients' sync tokens stay meaningful),
// otherwise new ones above the target's highest, in archive order (which
// is topological within each room).
type orderings struct {
	keep     bool
	next     int64
	min, max int64
}

// newOrderings keeps the archive's stream orderings when they are a
// Synapse's own.
func newOrderings(r *archive.Reader) *orderings {
	return &orderings{keep: fromSynapse(r)}
}

// fromSynapse says whether the archive was exported from a Synapse: its
// stream orderings and state snapshots are then Synapse's own.
func fromSynapse(r *archive.Reader) bool {
	return r.Manifest().Export.Source.Implementation == "synapse"
}

func (o *orderings) of(ev *archive.Event) int64 {
	so := ev.StreamOrdering
	if !o.keep || so == 0 {
		o.next++
		so = o.next
	}
	o.min, o.max = min(o.min, so), max(o.max, so)
	return so
}

// writeEvents runs pass 4. It returns the number of events written.
func (sp *statePlan) writeEvents(ctx context.Context, b *batcher, r *archive.Reader, rooms map[string]*roomPlan, alloc *groupAllocator, ord *orderings, p importer.Progress) (int64, error) {
	var n int64
	err := archive.ReadSection(ctx, r, archive.SectionEvents, func(ev *archive.Event) error {
		rp := rooms[ev.RoomID]
		if rp == nil {
			return nil
		}
		if err := sp.writeEvent(ctx, b, ev, rp, alloc, ord.of(ev)); err != nil {
			return fmt.Errorf("event %s: %w", ev.EventID, err)
		}
		n++
		p.Add(1)
		return nil
	})
	return n, err
}

// distinct returns ids without repeats, in their order; ids itself when
// it has none (the usual case).
func distinct(ids []string) []string {
	repeats := false
	if len(ids) <= 16 {
		for i := 1; i < len(ids) && !repeats; i++ {
			repeats = slices.Contains(ids[:i], ids[i])
		}
	} else {
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			repeats = repeats || seen[id]
			seen[id] = true
		}
	}
	if !repeats {
		return ids
	}
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// eventMeta is event_json.internal_metadata, as json.Marshal encodes the
// map of what is set: [outlier][soft_failed].
var eventMeta = [2][2]string{{`{}`, `{"soft_failed":true}`}, {`{"outlier":true}`, `{"outlier":true,"soft_failed":true}`}}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (sp *statePlan) writeEvent(ctx context.Context, b *batcher, ev *archive.Event, rp *roomPlan, alloc *groupAllocator, so int64) error {
	js := string(ev.JSON)
	f, x, err := parseEventRow(js)
	if err != nil {
		return err
	}
	// Each value goes into an interface once, however many rows take it.
	id, room, typ, depth, ts, ord := any(ev.EventID), any(ev.RoomID), any(f.Type), any(x.depth), any(f.OriginServerTS), any(so)
	var stateKey, rejection any
	if f.StateKey != nil {
		stateKey = *f.StateKey
	}
	if ev.Rejected != "" {
		rejection = ev.Rejected
	}
	accepted := ev.Rejected == ""
	if err := b.add(ctx, "events", eventsColumns, depth, id, typ, room, true, ev.Outlier, depth,
		ts, ts, f.Sender, x.hasURL, "master", ord, stateKey, rejection); err != nil {
		return err
	}
	meta := eventMeta[b2i(ev.Outlier)][b2i(ev.SoftFailed)]
	if err := b.add(ctx, "event_json", eventJSONColumns, id, room, meta, js, rp.formatVersion); err != nil {
		return err
	}
	if f.StateKey != nil {
		if err := b.add(ctx, "state_events", stateEventsColumns, id, room, typ, stateKey); err != nil {
			return err
		}
	}
	if !accepted {
		if err := b.add(ctx, "rejections", rejectionsColumns, id, rejection, "ferry-restore"); err != nil {
			return err
		}
	}
	if !ev.Outlier {
		if err := sp.mapToGroup(ctx, b, ev, f, alloc, accepted, x.lacksReplaces); err != nil {
			return err
		}
		if accepted {
			// An edge once per previous event, however often the event
			// names it: event_edges is unique on (event_id, prev_event_id).
			for _, prev := range distinct(f.PrevEvents) {
				if err := b.add(ctx, "event_edges", eventEdgesColumns, id, prev, room, false); err != nil {
					return err
				}
			}
			if f.StateKey != nil {
				for _, auth := range f.AuthEvents {
					if err := b.add(ctx, "event_auth", eventAuthColumns, id, auth, room); err != nil {
						return err
					}
				}
			}
		}
	}
	if !accepted {
		return nil
	}
	if f.Type == "m.room.member" && f.StateKey != nil {
		if err := b.add(ctx, "room_memberships", membershipsColumns, id, stateKey, f.Sender, room, x.membership,
			x.displayName, x.avatarURL, ord); err != nil {
			return err
		}
	}
	if f.Type == "m.room.redaction" && f.Redacts != "" {
		if err := b.add(ctx, "redactions", redactionsColumns, id, f.Redacts, false, ts, false); err != nil {
			return err
		}
	}
	if x.relType != "" && x.relParent != "" {
		var key any
		if x.relType == "m.annotation" {
			key = x.relKey
		}
		if err := b.add(ctx, "event_relations", relationsColumns, id, x.relParent, x.relType, key); err != nil {
			return err
		}
	}
	return nil
}

// mapToGroup writes the event's event_to_state_groups row, and the group
// after an accepted state event when the archive has no snapshot of it.
//
// A state event whose JSON lacks unsigned.replaces_state (archives of other
// implementations store the event without it) is staged for
// setReplacesState: without it Synapse sends no prev_content, and a
// display-name change reads as a join.
func (sp *statePlan) mapToGroup(ctx context.Context, b *batcher, ev *archive.Event, f *matrixevent.Fields, alloc *groupAllocator, accepted, lacksReplaces bool) error {
	if accepted && f.StateKey != nil {
		if after, ok := sp.afterSnapshot(ev, f); ok {
			return b.add(ctx, "event_to_state_groups", eventToStateGroupColumns, ev.EventID, sp.groups[after].id)
		}
		before, hasBefore := sp.groups[ev.StateBefore]
		if ev.StateBefore != 0 && !hasBefore {
			return fmt.Errorf("its state snapshot %d was not restored", ev.StateBefore)
		}
		g, err := sp.writeGroup(ctx, b, alloc, ev.RoomID, ev.EventID, before, ev.StateBefore != 0,
			[]archive.StateEntry{{Type: f.Type, StateKey: *f.StateKey, EventID: ev.EventID}})
		if err != nil {
			return err
		}
		if lacksReplaces && ev.StateBefore != 0 {
			if err := b.add(ctx, "ferry_restore_replaces", replacesColumns, ev.EventID, before.id, f.Type, *f.StateKey); err != nil {
				return err
			}
		}
		return b.add(ctx, "event_to_state_groups", eventToStateGroupColumns, ev.EventID, g.id)
	}
	g, ok := sp.groups[ev.StateBefore]
	if !ok {
		return fmt.Errorf("its state snapshot %d was not restored", ev.StateBefore)
	}
	return b.add(ctx, "event_to_state_groups", eventToStateGroupColumns, ev.EventID, g.id)
}

// lastPerKey keeps, of entries naming the same key, the last.
func lastPerKey(set []archive.StateEntry) []archive.StateEntry {
	last := make(map[archive.StateKey]int, len(set))
	for i, e := range set {
		last[archive.StateKey{Type: e.Type, StateKey: e.StateKey}] = i
	}
	if len(last) == len(set) {
		return set
	}
	out := make([]archive.StateEntry, 0, len(last))
	for i, e := range set {
		if last[archive.StateKey{Type: e.Type, StateKey: e.StateKey}] == i {
			out = append(out, e)
		}
	}
	return out
}
