package fidelity

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
)

// Handling is how a target treats a section or item.
type Handling string

const (
	Stored   Handling = "stored"   // imported as is (the default for m.* data)
	Rebuilds Handling = "rebuilds" // derived by the target itself
	NoPlace  Handling = "no_place" // the target has nowhere to keep it
)

// Target describes what an import target can hold. The zero Target
// previews only what the archive itself lacks (vendor namespaces are then
// not reported: whether they have a place depends on the target).
type Target struct {
	Name string
	// RoomVersions the target supports; nil means any version this Ferry knows.
	RoomVersions []string
	// Sections maps a section ("m.users/pushers") or item ("m.e2ee") to how
	// the target treats it; unlisted m.* data is Stored.
	Sections map[string]Handling
	// Namespaces are vendor namespaces the target takes (its own); other
	// vendor namespaces have no place in it.
	Namespaces []string
	// Itemized are vendor namespaces the importer reports item by item
	// itself (Preview then leaves out its one entry for the namespace).
	Itemized []string
	// Notes say, per section, how the target comes by what it does not
	// import as is, and so why its count may differ from the archive's
	// ("clients register their pushers again", "one snapshot per distinct
	// state"): the preview's detail and an import's section table show it.
	Notes map[string]string
	// NoMerge: a whole import goes only into an empty target (or continues
	// its own); importer.Options.AllowNonEmpty is refused. Room imports
	// (Options.Rooms) are the target's own rules.
	NoMerge bool
}

// CountNote says why the target's count of a section's records may differ
// from the archive's ("" when it should not).
func (t *Target) CountNote(section string) string {
	if t == nil {
		return ""
	}
	if n := t.Notes[section]; n != "" {
		return n
	}
	switch t.handling(section) {
	case Rebuilds:
		return "derived by the target"
	case NoPlace:
		return "no place in the target"
	}
	return ""
}

func (t *Target) handling(section string) Handling {
	if h, ok := t.Sections[section]; ok {
		return h
	}
	if h, ok := t.Sections[archive.ItemOf(section)]; ok {
		return h
	}
	return Stored
}

// Preview says, before anything is imported, what will not arrive
// unchanged: what the exporter left out (m.omissions), what the archive
// lacks or cannot prove (from the validation report), and, for a target,
// what it cannot hold, rebuilds itself, or whose room version it lacks.
func Preview(r *archive.Reader, v *archive.ValidationReport, t *Target) *Report {
	rep := &Report{}
	if t == nil {
		t = &Target{}
	}
	recorded := map[string]int64{}
	for _, o := range v.OmissionRecords {
		recorded[o.Code]++
		rep.Add(Code(o.Code), o.Item, o.ID, o.Detail)
	}
	for code, n := range v.Omissions {
		if rest := n - recorded[code]; rest > 0 {
			rep.AddN(Code(code), archive.SectionOmissions, "", "further omissions", rest)
		}
	}
	m := r.Manifest()
	for _, item := range m.UnknownItems() {
		files, records := itemSize(m, item)
		detail := fmt.Sprintf("%d files, %d records", files, records)
		switch known, isKnown := archive.KnownItemVersion(item); {
		case isKnown:
			rep.AddN(UnsupportedItemVersion, item, "", fmt.Sprintf("version %v, this Ferry reads %d; %s", m.Items[item].V, known, detail), max(records, 1))
		case strings.HasPrefix(item, "m."):
			rep.AddN(UnknownItem, item, "", detail, max(records, 1))
		case t.Name != "" && !slices.Contains(t.Namespaces, item) && !slices.Contains(t.Itemized, item):
			rep.AddN(TargetNoPlace, item, "", vendorDetail(t, detail), max(records, 1))
		}
	}
	for _, p := range v.Problems {
		switch p.Check {
		case archive.CheckMissingAuthEvent, archive.CheckMissingPrevEvent:
			rep.Add(MissingEvent, archive.SectionEvents, p.Where, p.Message)
		case archive.CheckBadSignature, archive.CheckMissingSignature:
			rep.Add(SignatureInvalid, archive.SectionEvents, p.Where, p.Message)
		}
	}
	for _, id := range v.UnverifiableEvents {
		rep.Add(SignatureUnverifiable, archive.SectionEvents, id, "no key of the sender's server in m.server_keys")
	}
	if rest := v.Signatures.Unverifiable - int64(len(v.UnverifiableEvents)); rest > 0 {
		rep.AddN(SignatureUnverifiable, archive.SectionEvents, "", "further events", rest)
	}
	for _, room := range v.Rooms {
		if t.RoomVersions != nil && !slices.Contains(t.RoomVersions, room.Version) {
			rep.AddN(RoomVersionUnsupported, archive.SectionRooms, room.RoomID,
				fmt.Sprintf("room version %q; %s supports %s; %d events", room.Version, targetName(t), strings.Join(t.RoomVersions, ", "), room.Events), 1)
		}
	}
	sections := map[string]int64{}
	var order []string
	for _, f := range m.Files {
		s := archive.SectionOf(f.Path)
		if _, seen := sections[s]; !seen {
			order = append(order, s)
		}
		sections[s] += f.Records
	}
	for _, s := range order {
		if !strings.HasPrefix(s, "m.") || !m.ItemKnown(archive.ItemOf(s)) || sections[s] == 0 {
			continue
		}
		switch t.handling(s) {
		case NoPlace:
			rep.AddN(TargetNoPlace, s, "", fmt.Sprintf("%s has no place for these records", targetName(t)), sections[s])
		case Rebuilds:
			detail := fmt.Sprintf("%s derives these itself", targetName(t))
			if n := t.Notes[s]; n != "" {
				detail = fmt.Sprintf("%s: %s", targetName(t), n)
			}
			rep.AddN(TargetRebuilds, s, "", detail, sections[s])
		}
	}
	return rep
}

func itemSize(m *archive.Manifest, item string) (files, records int64) {
	for _, f := range m.Files {
		if archive.ItemOf(f.Path) == item {
			files++
			records += f.Records
		}
	}
	return files, records
}

func vendorDetail(t *Target, detail string) string {
	return fmt.Sprintf("vendor data that %s has no place for (kept in the archive); %s", targetName(t), detail)
}

func targetName(t *Target) string {
	if t.Name == "" {
		return "the target"
	}
	return t.Name
}
