package exporter

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferry-matrix/ferry/source"
)

// Archive types of an export (the manifest's export.type).
const (
	TypeFull    = "full"    // the whole server
	TypePartial = "partial" // some rooms, users or a time range
	TypeUser    = "user"    // one user's personal export (!mydata)
)

// Selection is what an admin's export takes from a server, in the words
// every surface shares: chat (!export, !schedule add), the HTTP API
// (POST /api/v1/exports), the CLI (bot export) and the config's
// schedules all fill one and call Validate, the one validation, before
// anything is queued; the job stores it as it is (the "filter" of a
// stored request) and hands Filter to the source. What each part
// includes is source.Filter's to say.
type Selection struct {
	// Type is TypeFull or TypePartial as the caller said it, which
	// Validate holds the rest to; empty: whichever the rest makes it.
	Type  string   `json:",omitempty"`
	Rooms []string // room IDs (!opaque:server)
	Users []string // user IDs (@name:server)
	Since time.Time
	Until time.Time
	// Media is source.MediaAll, MediaReferenced or MediaNone; empty: the
	// default, which source.Filter.MediaMode owns (all for a full export,
	// referenced for a partial one).
	Media string
}

// Filter is the selection in the source's terms.
func (s Selection) Filter() source.Filter {
	return source.Filter{Rooms: s.Rooms, Users: s.Users, Since: s.Since, Until: s.Until, Media: s.Media}
}

// IsFull reports whether the selection is the whole server (with all
// its media).
func (s Selection) IsFull() bool { return s.Filter().IsFull() }

// selects reports whether rooms, users or a time range are chosen.
func (s Selection) selects() bool {
	return len(s.Rooms) > 0 || len(s.Users) > 0 || s.Filter().HasTimeRange()
}

// SelectionError is one thing wrong with a selection. Field names the
// part in the shared words (type, rooms[2], users[0], since, until,
// media) for callers that point at it, such as the config's validation.
type SelectionError struct {
	Field  string
	Reason string // says what is wrong and what to do, on its own
}

func (e *SelectionError) Error() string { return e.Reason }

// Validate checks a selection and returns every problem found (joined
// *SelectionErrors), each with what to do instead. It does not know the
// source: Check says whether the source can export it.
func (s Selection) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &SelectionError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	switch s.Type {
	case "":
	case TypeFull:
		if s.selects() {
			bad("type", `a full export takes no rooms, users or time range (since, until): use type "partial"`)
		}
		if s.Media == source.MediaReferenced {
			bad("media", "media %q: a full export takes all or none (referenced is for partial exports)", s.Media)
		}
	case TypePartial:
		if !s.selects() {
			bad("rooms", "a partial export needs rooms, users or a time range (since, until): say what to export, or make a full export")
		}
	default:
		bad("type", `type %q: use "full" or "partial"`, s.Type)
	}
	for i, r := range s.Rooms {
		if local, server, ok := strings.Cut(r, ":"); !ok || !strings.HasPrefix(local, "!") || len(local) < 2 || server == "" {
			bad(fmt.Sprintf("rooms[%d]", i), "rooms: %q is not a room ID (!opaque:server)", r)
		}
	}
	for i, u := range s.Users {
		if local, server, ok := strings.Cut(u, ":"); !ok || !strings.HasPrefix(local, "@") || len(local) < 2 || server == "" {
			bad(fmt.Sprintf("users[%d]", i), "users: %q is not a user ID (@name:server)", u)
		}
	}
	if !slices.Contains([]string{"", source.MediaAll, source.MediaReferenced, source.MediaNone}, s.Media) {
		bad("media", "media filter %q: use all, referenced or none", s.Media)
	}
	if !s.Since.IsZero() && !s.Until.IsZero() && !s.Until.After(s.Since) {
		bad("until", "time range is empty: until (%s) is not after since (%s)", s.Until.Format(time.RFC3339), s.Since.Format(time.RFC3339))
	}
	return errors.Join(errs...)
}

// Check refuses, with source.ErrUnsupported, a selection the source
// (described by its capabilities) cannot export: the same message on
// every surface, before anything is queued.
func (s Selection) Check(caps source.Capabilities) error { return caps.Check(s.Filter()) }

// ArchiveType is the type of the archive an export of sel makes:
// TypeUser for a personal export (personal names the user), TypeFull for
// the whole server with all its media, TypePartial otherwise.
func ArchiveType(sel Selection, personal string) string {
	switch {
	case personal != "":
		return TypeUser
	case sel.IsFull():
		return TypeFull
	}
	return TypePartial
}
