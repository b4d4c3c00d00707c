package archive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/ferry-matrix/ferry/archive/container"
	"slices"
	"sort"
	"strings"
	"time"
)

// Manifest is manifest.json: what the archive holds and how to check it. It is
// the last thing written, in the final part, and so is the archive's publish
// point: an archive without it is incomplete.
type Manifest struct {
	Format    string    `json:"format"` // FormatMagic
	Version   int       `json:"version"`
	Revision  int       `json:"revision"`
	ArchiveID string    `json:"archive_id"`
	CreatedAt time.Time `json:"created_at"`
	// Encryption is "none" or "aes256-gcm-hkdf-stream" (see docs/FORMAT.md).
	Encryption string          `json:"encryption"`
	Export     ExportInfo      `json:"export"`
	Items      map[string]Item `json:"items"`
	// Files lists every record and JSON file (not media blobs, which the media
	// records describe) with the part it is in, in write order.
	Files []FileEntry `json:"files"`
	// Parts lists the data parts (the final part, holding this manifest, is
	// not listed) with the blobs each holds.
	Parts []PartEntry `json:"parts"`
	// Sensitive lists "<section>#<field>" for every sensitive field that at
	// least one record in the archive fills.
	Sensitive []string `json:"sensitive,omitempty"`
}

// ExportInfo says where the data came from and what was asked for.
type ExportInfo struct {
	ServerName string     `json:"server_name"`
	Source     SourceInfo `json:"source"`
	// Type is "full", "partial" or "user" (one user's personal data).
	Type    string          `json:"type"`
	Filters *Filters        `json:"filters,omitempty"`
	Options map[string]bool `json:"options,omitempty"`
}

// Export options that change what an archive may hold.
const (
	OptRedactedOriginals = "redacted_originals" // unredacted content of redacted events
	OptAccessTokens      = "access_tokens"
	OptOneTimeKeys       = "one_time_keys"
	OptPrivateServerKey  = "private_server_key"
)

type SourceInfo struct {
	Implementation string `json:"implementation"` // "synapse", "dendrite", "ferry-sample"
	Version        string `json:"version,omitempty"`
	SchemaVersion  int    `json:"schema_version,omitempty"`
}

// Filters of a partial export. Times are epoch milliseconds; zero is open.
type Filters struct {
	Rooms []string `json:"rooms,omitempty"`
	Users []string `json:"users,omitempty"`
	Since int64    `json:"since,omitempty"`
	Until int64    `json:"until,omitempty"`
	// Media is "none", "referenced" or "all".
	Media string `json:"media,omitempty"`
}

// Item is one entry of the manifest's items table, as in MSC2783: "v" is the
// item's version (an integer, or a list whose first element is the major
// version) and "_" its options.
type Item struct {
	V    ItemVersion    `json:"v"`
	Opts map[string]any `json:"_,omitempty"`
}

// ItemVersion is an integer version or a version list such as [1, 19, 2].
type ItemVersion []int

func (v ItemVersion) Major() int {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

func (v ItemVersion) MarshalJSON() ([]byte, error) {
	if len(v) == 1 {
		return json.Marshal(v[0])
	}
	return json.Marshal([]int(v))
}

func (v *ItemVersion) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*v = ItemVersion{n}
		return nil
	}
	var list []int
	if err := json.Unmarshal(b, &list); err != nil || len(list) == 0 {
		return fmt.Errorf("item version must be an integer or a non-empty list of integers, got %s", b)
	}
	*v = list
	return nil
}

type FileEntry struct {
	Path    string `json:"path"`
	Part    int    `json:"part"`
	Size    int64  `json:"size"`
	Records int64  `json:"records"`
	SHA256  string `json:"sha256"`
}

type PartEntry struct {
	Index     int   `json:"index"`
	Blobs     int64 `json:"blobs"`
	BlobBytes int64 `json:"blob_bytes"`
}

// renames resolves names an older archive used to the names this reader
// knows. Prefix rules: MSC2783's unstable prefix became m.*.
var renames = []struct{ old, new string }{
	{"org.matrix.msc2783.", "m."},
}

// CanonicalName maps an item name or file path through the rename table.
func CanonicalName(name string) string {
	for _, r := range renames {
		if rest, ok := strings.CutPrefix(name, r.old); ok {
			return r.new + rest
		}
	}
	return name
}

// ParseManifest decodes and checks manifest.json. It refuses another format or
// a newer major version with ErrUnsupportedVersion, and resolves renamed
// item names and paths.
func ParseManifest(data []byte) (*Manifest, error) {
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, formatErr(ManifestFile, -1, "not valid JSON", err)
	}
	if CanonicalName(head.Format) != FormatMagic && head.Format != FormatMagic {
		return nil, formatErr(ManifestFile, -1, fmt.Sprintf("format is %q, expected %q: this is not a Ferry/MSC2783 archive", head.Format, FormatMagic), nil)
	}
	if head.Version != FormatVersion {
		return nil, formatErr(ManifestFile, -1,
			fmt.Sprintf("archive format version %d; this Ferry reads version %d only (upgrade Ferry to read newer archives)", head.Version, FormatVersion),
			ErrUnsupportedVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, formatErr(ManifestFile, dec.InputOffset(), "malformed manifest", err)
	}
	m.Format = FormatMagic
	items := make(map[string]Item, len(m.Items))
	for name, it := range m.Items {
		items[CanonicalName(name)] = it
	}
	m.Items = items
	seen := make(map[string]bool, len(m.Files))
	for i := range m.Files {
		f := &m.Files[i]
		f.Path = CanonicalName(f.Path)
		if err := checkMemberPath(f.Path); err != nil {
			return nil, formatErr(ManifestFile, -1, fmt.Sprintf("file %q", f.Path), err)
		}
		if seen[f.Path] {
			return nil, formatErr(ManifestFile, -1, fmt.Sprintf("file %q listed twice", f.Path), nil)
		}
		if isBlobPath(f.Path) || strings.HasPrefix(mediaFileDir, f.Path+"/") || strings.HasPrefix(mediaThumbnailDir, f.Path+"/") {
			return nil, formatErr(ManifestFile, -1, fmt.Sprintf("file %q is a media blob path or the directory of one: blobs are not listed as files", f.Path), nil)
		}
		seen[f.Path] = true
		if f.Part < 0 || f.Part > len(m.Parts) || f.Size < 0 || f.Records < 0 || len(f.SHA256) != 64 {
			return nil, formatErr(ManifestFile, -1, fmt.Sprintf("file %q has an impossible part, size, count or hash", f.Path), nil)
		}
	}
	// No member may be a directory of another, or the archive could not be
	// extracted onto a filesystem (blob paths are kept apart by their shape,
	// see checkBlobPath).
	for p := range seen {
		for i := strings.IndexByte(p, '/'); i >= 0; i = nextSlash(p, i) {
			if seen[p[:i]] {
				return nil, formatErr(ManifestFile, -1, fmt.Sprintf("file %q is listed and is also the directory of %q", p[:i], p), nil)
			}
		}
	}
	for i, p := range m.Parts {
		if p.Index != i {
			return nil, formatErr(ManifestFile, -1, fmt.Sprintf("parts table entry %d says index %d", i, p.Index), nil)
		}
	}
	if err := checkLimits(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// nextSlash is the index of the next '/' in p after i, or -1.
func nextSlash(p string, i int) int {
	if j := strings.IndexByte(p[i+1:], '/'); j >= 0 {
		return i + 1 + j
	}
	return -1
}

// Marshal encodes the manifest deterministically (sorted keys, two-space
// indentation, trailing newline).
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// UnknownItems lists items this reader does not understand: namespaces it has
// never heard of, and known items with a newer major version. Readers skip
// them (and a re-export carries their files through unchanged).
func (m *Manifest) UnknownItems() []string {
	var out []string
	for name, it := range m.Items {
		if known, ok := knownItems[name]; !ok || it.V.Major() > known {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ItemKnown reports whether the reader understands item name at its version.
func (m *Manifest) ItemKnown(name string) bool {
	return !slices.Contains(m.UnknownItems(), name)
}

// FilesOf returns the files of a section in chunk order.
func (m *Manifest) FilesOf(sectionName string) []FileEntry {
	var out []FileEntry
	for _, f := range m.Files {
		if name, _, ok := parseSectionFile(f.Path); ok && name == sectionName {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		_, a, _ := parseSectionFile(out[i].Path)
		_, b, _ := parseSectionFile(out[j].Path)
		return a < b
	})
	return out
}

// Records returns the number of records in a section.
func (m *Manifest) Records(sectionName string) int64 {
	var n int64
	for _, f := range m.FilesOf(sectionName) {
		n += f.Records
	}
	return n
}

// TotalRecords returns the number of records in the whole archive, every
// section's and file's (what verify counts; an export's progress counts
// the streamed records only).
func (m *Manifest) TotalRecords() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Records
	}
	return n
}

// Blobs returns the number of blobs (media files) in all parts.
func (m *Manifest) Blobs() int64 {
	var n int64
	for _, part := range m.Parts {
		n += part.Blobs
	}
	return n
}

// checkMemberPath rejects paths that could escape a directory when extracted.
func checkMemberPath(p string) error { return container.CheckEntryName(p) }

// KnownItemVersion returns the highest major version of item name that this
// reader understands, and false for an item it does not know at all.
func KnownItemVersion(name string) (int, bool) {
	v, ok := knownItems[name]
	return v, ok
}
