package synapse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unsafe"

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
// The restore reads the snapshots twice and the events once, keeping in
// memory one small record per snapshot (never the state itself):
//
//  1. snapshots, light (readSnapshots): each one's parent, and for a
//     snapshot that changes one key of its parent, which key. Synapse
//     archives write the state before a state event that way, as the group
//     after it (the parent) less the event; so the parent is the
//     after-group, and no new group is needed.
//  2. events (writeEvents): the tables per event. The snapshot an event
//     stands on becomes a group (with its ancestors, for delta chains) the
//     first time an event needs it: its ID, from state_group_id_seq (archive
//     IDs can be far larger than Synapse's), is allocated then, the
//     ancestors' first, so a parent's ID is below its children's. A state
//     event whose after-state is not a snapshot gets a new one-row delta
//     group on its before-group.
//  3. snapshots (writeGroups): each needed one is written as its group, a
//     delta on its parent's group.
type statePlan struct {
	snaps map[uint64]*snapInfo
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
	// group is the snapshot's state group once an event needed it (id 0
	// before).
	group group
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

// readSnapshots runs pass 1 over the snapshots of rooms.
func readSnapshots(ctx context.Context, r *archive.Reader, rooms map[string]*roomPlan) (*statePlan, error) {
	sp := &statePlan{snaps: map[uint64]*snapInfo{}, current: map[uint64]string{},
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
		if sp.snaps[s.ID] != nil {
			// Validation passes it; its groups would share one ID.
			return fmt.Errorf("the archive is damaged: it holds state snapshot %d twice; the load was rolled back", s.ID)
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
	return sp, nil
}

// need returns the group of snapshot id, which an event stands on,
// allocating it (and its ancestors' first) when no event needed it before.
// Its errors speak of "the event".
func (sp *statePlan) need(id uint64, alloc *groupAllocator) (group, error) {
	s := sp.snaps[id]
	if s == nil {
		return group{}, fmt.Errorf("it stands on state snapshot %d, which the archive lacks", id)
	}
	if s.group.id != 0 {
		return s.group, nil
	}
	// The chain up to the first ancestor with a group (or the root),
	// allocated from the top.
	chain := []uint64{id}
	var top group
	for p := s.parent; p != 0; {
		ps := sp.snaps[p]
		if ps == nil {
			return group{}, fmt.Errorf("it stands on state snapshot %d, whose ancestor %d the archive lacks", id, p)
		}
		if ps.group.id != 0 {
			top = ps.group
			break
		}
		if len(chain) > len(sp.snaps) {
			return group{}, fmt.Errorf("state snapshot %d is its own ancestor", p)
		}
		chain = append(chain, p)
		p = ps.parent
	}
	for i := len(chain) - 1; i >= 0; i-- {
		c := sp.snaps[chain[i]]
		if c.removes {
			// Synapse's deltas can only add or replace keys.
			return group{}, fmt.Errorf("its state is state snapshot %d or a descendant, which removes keys from its parent: this Ferry cannot restore such archives into Synapse yet", chain[i])
		}
		g, err := newGroup(alloc, top, c.parent != 0)
		if err != nil {
			return group{}, err
		}
		c.group, top = g, g
	}
	return s.group, nil
}

// newGroup allocates a group: a delta on parent when hasParent, within
// Synapse's hop limit, else a full one. Its ID is above its parent's.
func newGroup(alloc *groupAllocator, parent group, hasParent bool) (group, error) {
	g := group{id: alloc.allocate()}
	if hasParent {
		if g.hops = parent.hops + 1; g.hops > maxDeltaHops {
			return group{}, fmt.Errorf("its state would be a chain of state deltas longer than Synapse's %d hops: this Ferry cannot flatten chains yet", maxDeltaHops)
		}
	}
	return g, nil
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
func (sp *statePlan) writeGroups(ctx context.Context, b *batcher, r *archive.Reader, rooms map[string]*roomPlan, p importer.Progress) error {
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
		if info == nil || info.group.id == 0 {
			return nil
		}
		for _, want := range sp.expect[s.ID] {
			if !slices.Contains(s.Set, want) {
				return fmt.Errorf("state snapshot %d should be the state after %s but does not set it: the archive's snapshots are not shaped as Synapse writes them", s.ID, want.EventID)
			}
		}
		delete(sp.expect, s.ID)
		var parent int64
		if s.Parent != 0 {
			parent = sp.snaps[s.Parent].group.id // allocated before its child (need)
		}
		creator := ""
		if len(s.Set) > 0 {
			creator = s.Set[len(s.Set)-1].EventID
		}
		return writeGroup(ctx, b, info.group.id, s.RoomID, creator, parent, s.Set)
	})
	if err != nil {
		return fmt.Errorf("restore state groups: %w", err)
	}
	return nil
}

// writeGroup writes group id: a delta on group parent, or a full group
// when parent is 0.
func writeGroup(ctx context.Context, b *batcher, id int64, room, eventID string, parent int64, set []archive.StateEntry) error {
	gid, roomID := any(id), any(room) // one interface each for all the rows
	if err := b.add(ctx, "state_groups", stateGroupsColumns, gid, roomID, eventID); err != nil {
		return err
	}
	if parent != 0 {
		if err := b.add(ctx, "state_group_edges", stateGroupEdgesColumns, gid, parent); err != nil {
			return err
		}
	}
	for _, e := range set {
		if err := b.add(ctx, "state_groups_state", stateGroupsStateColumns, gid, roomID, e.Type, e.StateKey, e.EventID); err != nil {
			return err
		}
	}
	return nil
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

// writeEvents runs pass 2. It returns the number of events written, and
// adds each one's ID and stream ordering to keys (unless nil).
func (sp *statePlan) writeEvents(ctx context.Context, b *batcher, events eventSource, rooms map[string]*roomPlan, alloc *groupAllocator, ord *orderings, keys *eventKeys, p importer.Progress) (int64, error) {
	var n int64
	err := events(ctx, func(ev *archive.Event, f *matrixevent.Fields) error {
		rp := rooms[ev.RoomID]
		if rp == nil {
			return nil
		}
		so := ord.of(ev)
		if keys != nil {
			keys.add(ev.EventID, so)
		}
		if err := sp.writeEvent(ctx, b, ev, f, rp, alloc, so); err != nil {
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

// eventSource walks the archive's events in order, handing fn each with
// its fields when they were parsed already (nil: fn parses the event).
type eventSource func(ctx context.Context, fn func(*archive.Event, *matrixevent.Fields) error) error

// readEvents is the eventSource that reads r's events section.
func readEvents(r *archive.Reader) eventSource {
	return func(ctx context.Context, fn func(*archive.Event, *matrixevent.Fields) error) error {
		return archive.ReadSection(ctx, r, archive.SectionEvents, func(ev *archive.Event) error { return fn(ev, nil) })
	}
}

// validatedEvents is the eventSource that takes r's events from the
// validation running beside the import (v.Events), or reads them when
// there is none (v nil: validated before).
func validatedEvents(v *importer.Validation, r *archive.Reader) eventSource {
	return func(ctx context.Context, fn func(*archive.Event, *matrixevent.Fields) error) error {
		if ok, err := v.Events(ctx, r, fn); ok {
			return err
		}
		return readEvents(r)(ctx, fn)
	}
}

// writeEvent writes ev's rows; f is its fields when already parsed (nil:
// writeEvent parses the event).
func (sp *statePlan) writeEvent(ctx context.Context, b *batcher, ev *archive.Event, f *matrixevent.Fields, rp *roomPlan, alloc *groupAllocator, so int64) error {
	// Nothing writes into the record's JSON: the rows take it as it is,
	// without a copy of every event. (From the validation's tap it is a
	// slice of its file's data, which the rows keep until they are
	// copied; nothing here keeps it longer.)
	js := unsafe.String(unsafe.SliceData(ev.JSON), len(ev.JSON))
	f, x, err := eventRowOf(js, f)
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
			g, err := sp.need(after, alloc)
			if err != nil {
				return err
			}
			// f's strings are substrings of the event's JSON: kept, they would keep it all.
			entry := archive.StateEntry{Type: strings.Clone(f.Type), StateKey: strings.Clone(*f.StateKey), EventID: ev.EventID}
			sp.expect[after] = append(sp.expect[after], entry)
			return b.add(ctx, "event_to_state_groups", eventToStateGroupColumns, ev.EventID, g.id)
		}
		var before group
		if ev.StateBefore != 0 {
			var err error
			if before, err = sp.need(ev.StateBefore, alloc); err != nil {
				return err
			}
		}
		g, err := newGroup(alloc, before, ev.StateBefore != 0)
		if err != nil {
			return err
		}
		if err := writeGroup(ctx, b, g.id, ev.RoomID, ev.EventID, before.id,
			[]archive.StateEntry{{Type: f.Type, StateKey: *f.StateKey, EventID: ev.EventID}}); err != nil {
			return err
		}
		if lacksReplaces && ev.StateBefore != 0 {
			if err := b.add(ctx, "ferry_restore_replaces", replacesColumns, ev.EventID, before.id, f.Type, *f.StateKey); err != nil {
				return err
			}
		}
		return b.add(ctx, "event_to_state_groups", eventToStateGroupColumns, ev.EventID, g.id)
	}
	if ev.StateBefore == 0 {
		return fmt.Errorf("it is no outlier and has no state before it")
	}
	g, err := sp.need(ev.StateBefore, alloc)
	if err != nil {
		return err
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
