package sourcetest

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

// accountSections hold per-user data: a rooms-only selection carries none.
var accountSections = []string{archive.SectionUsers, archive.SectionDevices, archive.SectionE2EEKeys, archive.SectionBackupVersions,
	archive.SectionBackupSessions, archive.SectionPushers, archive.SectionFilters, archive.SectionAccountData}

// roomSections hold per-room data: a selection keeps only its rooms'.
var roomSections = []string{archive.SectionRooms, archive.SectionMemberships, archive.SectionReceipts, archive.SectionEvents,
	archive.SectionRedactions, archive.SectionStateSnapshots}

var mxcPattern = regexp.MustCompile(`mxc://([A-Za-z0-9.\-:\[\]]+)/([A-Za-z0-9_\-]+)`)

// runSelections checks what each part of a source.Filter selects, as its
// documentation says, for the parts the source's capabilities declare,
// and that it refuses the others with source.ErrUnsupported.
func (s Suite) runSelections(t *testing.T) {
	src := s.Open(t)
	caps := src.Capabilities()
	src.Close()
	full := s.collect(t, source.Filter{}, source.Options{Encrypted: true})
	room := s.pickRoom(full)
	user := s.pickUser()
	t.Logf("selection cases on room %s, user %s, capabilities %+v", room, user, caps)

	unsupported := map[string]source.Filter{}
	if !caps.Rooms {
		unsupported["rooms"] = source.Filter{Rooms: []string{room}, Media: source.MediaNone}
	}
	if !caps.Users {
		unsupported["users"] = source.Filter{Users: []string{user}, Media: source.MediaNone}
	}
	if !caps.TimeRange {
		unsupported["time range"] = source.Filter{Since: time.Unix(0, 0), Media: source.MediaNone}
	}
	if !caps.ReferencedMedia {
		unsupported["referenced media"] = source.Filter{Media: source.MediaReferenced}
	}
	for what, f := range unsupported {
		t.Run("refuses "+what, func(t *testing.T) {
			src := s.Open(t)
			defer src.Close()
			if _, err := src.Streams(context.Background(), f, source.Options{}); !errors.Is(err, source.ErrUnsupported) {
				t.Errorf("a selection the capabilities leave out: %v, want source.ErrUnsupported", err)
			}
			if err := caps.Check(f); !errors.Is(err, source.ErrUnsupported) {
				t.Errorf("Capabilities.Check: %v, want source.ErrUnsupported", err)
			}
		})
	}

	t.Run("rooms", func(t *testing.T) {
		if !caps.Rooms {
			t.Skip("the source declares no room selection")
		}
		c := s.collect(t, source.Filter{Rooms: []string{room}, Media: source.MediaNone}, source.Options{Encrypted: true})
		s.checkRooms1(t, c, full, []string{room})
		for _, section := range accountSections {
			if n := len(c.of(section)); n > 0 {
				t.Errorf("a rooms-only selection carries %d %s records", n, section)
			}
		}
		if n := len(c.of(archive.SectionMedia)) + len(c.blobs); n > 0 {
			t.Errorf("media none: %d media records and files", n)
		}
		src := s.Open(t)
		defer src.Close()
		if _, err := src.Streams(context.Background(), source.Filter{Rooms: []string{"!nowhere:" + s.Truth.ServerName}}, source.Options{}); err == nil {
			t.Error("a room that does not exist is accepted")
		}
	})

	t.Run("users", func(t *testing.T) {
		if !caps.Users {
			t.Skip("the source declares no user selection")
		}
		c := s.collect(t, source.Filter{Users: []string{user}, Media: source.MediaNone}, source.Options{Encrypted: true})
		if got := c.of(archive.SectionUsers); len(got) != 1 || got[0].(*archive.User).UserID != user {
			t.Errorf("users %v, want %s only", userIDs(got), user)
		}
		for _, section := range append(slices.Clone(accountSections), archive.SectionMemberships, archive.SectionReceipts) {
			for _, r := range c.of(section) {
				if u := recordUser(r); u != "" && u != user {
					t.Errorf("%s record of %s in a selection of %s", section, u, user)
				}
			}
		}
		var want []string
		for _, r := range s.Truth.Rooms {
			if _, ok := r.Members[user]; ok {
				want = append(want, r.RoomID)
			}
		}
		s.checkRooms1(t, c, full, want)
	})

	t.Run("users media all", func(t *testing.T) {
		if !caps.Users {
			t.Skip("the source declares no user selection")
		}
		uploader := ""
		for _, m := range s.Truth.Media {
			if uploader == "" || m.Uploader < uploader {
				uploader = m.Uploader
			}
		}
		if uploader == "" {
			t.Skip("the fixture has no media")
		}
		c := s.collect(t, source.Filter{Users: []string{uploader}, Media: source.MediaAll}, source.Options{Encrypted: true})
		var want []string
		for _, m := range s.Truth.Media {
			if m.Uploader == uploader {
				want = append(want, m.MediaID)
			}
		}
		if got := mediaIDs(c); !equalSorted(got, want) {
			t.Errorf("media all of %s: %v, want their uploads %v", uploader, got, want)
		}
	})

	t.Run("referenced media", func(t *testing.T) {
		if !caps.Rooms || !caps.ReferencedMedia {
			t.Skip("the source declares no room selection or no referenced media")
		}
		c := s.collect(t, source.Filter{Rooms: []string{room}}, source.Options{Encrypted: true})
		referenced := map[string]bool{}
		for _, r := range c.of(archive.SectionEvents) {
			ev := r.(*archive.Event)
			if ev.Redacted {
				continue
			}
			var e struct {
				Content json.RawMessage `json:"content"`
			}
			json.Unmarshal(ev.JSON, &e)
			for _, m := range mxcPattern.FindAllStringSubmatch(string(e.Content), -1) {
				referenced["mxc://"+m[1]+"/"+m[2]] = true
			}
		}
		var want []string
		for _, m := range s.Truth.Media {
			if referenced["mxc://"+s.Truth.ServerName+"/"+m.MediaID] {
				want = append(want, m.MediaID)
			}
		}
		var local []string
		for _, r := range c.of(archive.SectionMedia) {
			m := r.(*archive.Media)
			if !referenced["mxc://"+m.Origin+"/"+m.MediaID] {
				t.Errorf("media %s/%s exported, but no exported event of %s references it", m.Origin, m.MediaID, room)
			}
			if m.Origin == s.Truth.ServerName {
				local = append(local, m.MediaID)
			}
		}
		if !equalSorted(local, want) {
			t.Errorf("referenced local media %v, want %v", local, want)
		}
	})

	t.Run("time range", func(t *testing.T) {
		if !caps.Rooms || !caps.TimeRange {
			t.Skip("the source declares no room selection or no time range")
		}
		var times []int64
		state := 0
		for _, r := range full.of(archive.SectionEvents) {
			if ev := r.(*archive.Event); ev.RoomID == room {
				if ts, isState := eventTime(ev); isState {
					state++
				} else {
					times = append(times, ts)
				}
			}
		}
		slices.Sort(times)
		if len(times) < 3 {
			t.Skipf("room %s has %d timeline events", room, len(times))
		}
		since, until := times[len(times)/3], times[2*len(times)/3]
		if since == until {
			t.Skipf("room %s: no spread of event times", room)
		}
		c := s.collect(t, source.Filter{Rooms: []string{room}, Since: time.UnixMilli(since), Until: time.UnixMilli(until), Media: source.MediaNone},
			source.Options{Encrypted: true})
		gotState, inRange := 0, 0
		for _, r := range c.of(archive.SectionEvents) {
			ts, isState := eventTime(r.(*archive.Event))
			switch {
			case isState:
				gotState++
			case ts < since || ts >= until:
				t.Errorf("timeline event at %d outside [%d, %d)", ts, since, until)
			default:
				inRange++
			}
		}
		want := 0
		for _, ts := range times {
			if ts >= since && ts < until {
				want++
			}
		}
		if inRange != want || gotState != state {
			t.Errorf("%d timeline events in range, want %d; %d state events, want all %d", inRange, want, gotState, state)
		}
	})
}

// checkRooms1 checks that c holds the rooms want, whole (every sender's
// events, as many as the full export has), and no other room.
func (s Suite) checkRooms1(t *testing.T, c, full *collector, want []string) {
	t.Helper()
	in := map[string]bool{}
	for _, r := range want {
		in[r] = true
	}
	for _, section := range roomSections {
		for _, r := range c.of(section) {
			if room := recordRoom(r); room != "" && !in[room] {
				t.Errorf("%s record of room %s, outside the selection %v", section, room, want)
			}
		}
	}
	count := func(c *collector) map[string]int {
		n := map[string]int{}
		for _, r := range c.of(archive.SectionEvents) {
			n[r.(*archive.Event).RoomID]++
		}
		return n
	}
	got, all := count(c), count(full)
	for _, r := range want {
		if got[r] != all[r] || got[r] == 0 {
			t.Errorf("room %s: %d events, want all %d of the full export", r, got[r], all[r])
		}
	}
	var rooms []string
	for _, r := range c.of(archive.SectionRooms) {
		rooms = append(rooms, r.(*archive.Room).RoomID)
	}
	if !equalSorted(rooms, want) {
		t.Errorf("room records %v, want %v", rooms, want)
	}
}

// pickRoom is the fixture's room whose exported events reference the most
// local media (ties: the smallest ID), so the referenced-media case has
// something to find.
func (s Suite) pickRoom(full *collector) string {
	refs := map[string]int{}
	for _, r := range full.of(archive.SectionEvents) {
		ev := r.(*archive.Event)
		refs[ev.RoomID] += len(mxcPattern.FindAll(ev.JSON, -1))
	}
	var rooms []string
	for r := range s.Truth.EventsByRoomAndType {
		rooms = append(rooms, r)
	}
	sort.Strings(rooms)
	best := ""
	for _, r := range rooms {
		if best == "" || refs[r] > refs[best] {
			best = r
		}
	}
	return best
}

// pickUser is the first user (by ID) with a membership in some rooms of
// the fixture, but not all, so a user selection narrows the rooms.
func (s Suite) pickUser() string {
	var users []string
	for _, u := range s.Truth.Users {
		users = append(users, u.UserID)
	}
	sort.Strings(users)
	for _, u := range users {
		n := 0
		for _, r := range s.Truth.Rooms {
			if _, ok := r.Members[u]; ok {
				n++
			}
		}
		if n > 0 && n < len(s.Truth.Rooms) {
			return u
		}
	}
	if len(users) > 0 {
		return users[0]
	}
	return "@nobody:" + s.Truth.ServerName
}

// eventTime is an event's origin_server_ts, and whether it is a state event.
func eventTime(ev *archive.Event) (int64, bool) {
	var e struct {
		TS       int64   `json:"origin_server_ts"`
		StateKey *string `json:"state_key"`
	}
	json.Unmarshal(ev.JSON, &e)
	return e.TS, e.StateKey != nil
}

// recordUser is the UserID field of a record ("" when it has none).
func recordUser(r any) string { return stringField(r, "UserID") }

// recordRoom is the RoomID field of a record ("" when it has none).
func recordRoom(r any) string { return stringField(r, "RoomID") }

func stringField(r any, name string) string {
	v := reflect.ValueOf(r)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return ""
	}
	if f := v.FieldByName(name); f.IsValid() && f.Kind() == reflect.String {
		return f.String()
	}
	return ""
}

func userIDs(recs []any) []string {
	var out []string
	for _, r := range recs {
		out = append(out, recordUser(r))
	}
	return out
}

func mediaIDs(c *collector) []string {
	var out []string
	for _, r := range c.of(archive.SectionMedia) {
		out = append(out, r.(*archive.Media).MediaID)
	}
	return out
}

func equalSorted(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
