// Package fidelity is the closed list of reasons why something in a
// homeserver did not arrive, unchanged, in another one, and the report that
// tells an admin about it, per item and with IDs, before and after an import.
//
// Exporters record what they left out in the archive's m.omissions section
// with these codes; Preview adds what a reader finds missing or unreadable
// in the archive and what a given target cannot hold or rebuilds itself.
// Importers add entries with the same codes as they go. The list is part of
// the format (docs/FORMAT.md, "Fidelity reason codes"): a new code is a
// format revision.
package fidelity

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Code is one fidelity reason.
type Code string

// Outcome is what became of the data.
type Outcome string

const (
	// Omitted: not in the archive at all; the source still has it.
	Omitted Outcome = "omitted"
	// Skipped: in the archive, but the target does not take it.
	Skipped Outcome = "skipped"
	// Rebuilt: the target computes its own version instead of importing it.
	Rebuilt Outcome = "rebuilt"
	// Lost: carried but unusable, or gone for good after the move.
	Lost Outcome = "lost"
	// Degraded: imported, but something about it could not be confirmed.
	Degraded Outcome = "degraded"
)

// The closed list of codes.
const (
	// Export side (recorded by exporters in m.omissions).
	ExcludedByDefault Code = "excluded_by_default" // left out unless an export option asks: one-time keys, access tokens, unredacted originals
	ExcludedByFilter  Code = "excluded_by_filter"  // outside a partial export's rooms, users, time range or media choice
	SourceMissing     Code = "source_missing"      // the source refers to data it does not have (a media file missing from the store)
	SourceCorrupt     Code = "source_corrupt"      // a source row or file that could not be read or parsed
	PasswordUnusable  Code = "password_unusable"   // a password hash that needs a secret the target lacks (Synapse's pepper)

	// Archive side (found by reading the archive).
	UnknownItem            Code = "unknown_item"             // an item (namespace) this reader does not understand: skipped, preserved on re-export
	UnsupportedItemVersion Code = "unsupported_item_version" // a known item at a newer major version
	MissingEvent           Code = "missing_event"            // an auth or prev event not in the archive (partial export, never fetched)
	SignatureUnverifiable  Code = "signature_unverifiable"   // no key of the sending server is known offline
	SignatureInvalid       Code = "signature_invalid"        // a signature does not verify: a target may reject the event

	// Target side (from what the target can hold).
	TargetNoPlace          Code = "target_no_place"          // the target has nowhere to keep it (another implementation's vendor data)
	TargetRebuilds         Code = "target_rebuilds"          // the target derives it itself (stream orderings, caches, thumbnails)
	RoomVersionUnsupported Code = "room_version_unsupported" // the target does not support the room's version: the room is skipped
)

// Info describes a code.
type Info struct {
	Code    Code
	Outcome Outcome
	Meaning string
}

// Codes is the closed list, in documentation order.
var Codes = []Info{
	{ExcludedByDefault, Omitted, "left out unless an export option asks for it (one-time keys, access tokens, unredacted originals)"},
	{ExcludedByFilter, Omitted, "outside the rooms, users, time range or media choice of a partial export"},
	{SourceMissing, Omitted, "the source refers to data it does not have (a media file missing from the store)"},
	{SourceCorrupt, Omitted, "a source row or file could not be read or parsed"},
	{PasswordUnusable, Lost, "the password hash needs a secret the target lacks; the user must reset their password"},
	{UnknownItem, Skipped, "an item this Ferry does not understand; preserved when the archive is re-exported"},
	{UnsupportedItemVersion, Skipped, "a known item at a newer major version than this Ferry reads"},
	{MissingEvent, Degraded, "an auth or prev event is not in the archive; the target sees a gap in history"},
	{SignatureUnverifiable, Degraded, "no key of the sending server is known offline; the signature was not checked"},
	{SignatureInvalid, Degraded, "a signature does not verify; a target or its peers may reject the event"},
	{TargetNoPlace, Skipped, "the target has nowhere to keep this data"},
	{TargetRebuilds, Rebuilt, "the target computes its own version of this data instead of importing it"},
	{RoomVersionUnsupported, Skipped, "the target does not support the room's version; the room is not imported"},
}

// Lookup returns a code's description.
func Lookup(c Code) (Info, bool) {
	for _, i := range Codes {
		if i.Code == c {
			return i, true
		}
	}
	return Info{}, false
}

// Entry is one line of a report: what (Item, optionally ID) and why.
type Entry struct {
	Code    Code    `json:"code"`
	Outcome Outcome `json:"outcome"`
	Item    string  `json:"item"`         // an item or section, e.g. "m.e2ee/keys#one_time"
	ID      string  `json:"id,omitempty"` // a user, room, event or media ID
	Detail  string  `json:"detail,omitempty"`
	Count   int64   `json:"count"` // how many things this entry stands for (1 unless aggregated)
}

// Report collects entries. Per code, at most MaxIDs entries keep their IDs;
// the rest are folded into one aggregated entry per item, so a report stays
// small on a huge server.
type Report struct {
	Entries []Entry `json:"entries"`
	folded  map[[2]string]int
	perCode map[Code]int
}

// MaxIDs is how many entries of one code keep their IDs.
const MaxIDs = 200

// Add records one thing. An unknown code is a programming error and is
// recorded under its own name with outcome "degraded" rather than lost.
func (r *Report) Add(c Code, item, id, detail string) { r.AddN(c, item, id, detail, 1) }

// AddN records n things under one entry (n > 1 for aggregate counts).
func (r *Report) AddN(c Code, item, id, detail string, n int64) {
	info, ok := Lookup(c)
	if !ok {
		info = Info{Code: c, Outcome: Degraded}
	}
	if r.perCode == nil {
		r.perCode, r.folded = map[Code]int{}, map[[2]string]int{}
	}
	if r.perCode[c] < MaxIDs {
		r.perCode[c]++
		r.Entries = append(r.Entries, Entry{Code: c, Outcome: info.Outcome, Item: item, ID: id, Detail: detail, Count: n})
		return
	}
	key := [2]string{string(c), item}
	if i, ok := r.folded[key]; ok {
		r.Entries[i].Count += n
		return
	}
	r.folded[key] = len(r.Entries)
	r.Entries = append(r.Entries, Entry{Code: c, Outcome: info.Outcome, Item: item, Detail: "further entries, IDs not listed", Count: n})
}

// Totals counts things per code.
func (r *Report) Totals() map[Code]int64 {
	out := map[Code]int64{}
	for _, e := range r.Entries {
		out[e.Code] += e.Count
	}
	return out
}

// Lossless reports whether nothing was skipped, rebuilt, lost or degraded.
func (r *Report) Lossless() bool { return len(r.Entries) == 0 }

// String renders the report for a terminal or a chat message: totals per
// code with their meaning, then the entries.
func (r *Report) String() string {
	if r.Lossless() {
		return "Fidelity: everything in the archive is carried over unchanged.\n"
	}
	var b strings.Builder
	totals := r.Totals()
	codes := make([]Code, 0, len(totals))
	for c := range totals {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool { return order(codes[i]) < order(codes[j]) })
	b.WriteString("Fidelity report:\n")
	for _, c := range codes {
		info, _ := Lookup(c)
		meaning := info.Meaning
		if c == ExcludedByDefault {
			// The general meaning names every such option; a migration's
			// report left out none but, say, one-time keys.
			meaning = "left out unless an export option asks for it: " + strings.Join(r.items(c), ", ")
		}
		fmt.Fprintf(&b, "  %-26s %-8s %6d  %s\n", c, info.Outcome, totals[c], meaning)
	}
	b.WriteString("Details:\n")
	for _, e := range r.Entries {
		fmt.Fprintf(&b, "  %s %s", e.Code, e.Item)
		if e.ID != "" {
			fmt.Fprintf(&b, " %s", e.ID)
		}
		if e.Count != 1 {
			fmt.Fprintf(&b, " (%d)", e.Count)
		}
		if e.Detail != "" {
			fmt.Fprintf(&b, ": %s", e.Detail)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// items lists the distinct items of a code's entries, in order.
func (r *Report) items(c Code) []string {
	var out []string
	for _, e := range r.Entries {
		if e.Code == c && !slices.Contains(out, e.Item) {
			out = append(out, e.Item)
		}
	}
	return out
}

func order(c Code) int {
	for i, info := range Codes {
		if info.Code == c {
			return i
		}
	}
	return len(Codes)
}
