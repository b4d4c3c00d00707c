package archive

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// FormatVersion is the major version of the archive format this package
// writes and the only one it reads. FormatRevision counts compatible
// revisions within it: this package writes revision 1 and reads 0 and 1
// (revision 0's media layout is mapped on reading, see upgradeBlobPath).
const (
	FormatVersion  = 1
	FormatRevision = 1
	FormatMagic    = "org.matrix.msc2783.archive"
)

// Item version 1 of every m.* item this package knows.
const itemVersion = 1

// Section names: "<item>/<stream>". Files of a section are
// "<item>/<stream>.<N>.cbor", N counting from 1.
const (
	SectionServerKeys     = "m.server_keys/keys"
	SectionUsers          = "m.users/users"
	SectionDevices        = "m.users/devices"
	SectionPushers        = "m.users/pushers"
	SectionFilters        = "m.users/filters"
	SectionAccountData    = "m.account_data/account_data"
	SectionE2EEKeys       = "m.e2ee/keys"
	SectionBackupVersions = "m.e2ee/backup_versions"
	SectionBackupSessions = "m.e2ee/backup_sessions"
	SectionRooms          = "m.rooms/rooms"
	SectionMemberships    = "m.rooms/memberships"
	SectionReceipts       = "m.rooms/receipts"
	SectionStateSnapshots = "m.state/snapshots"
	SectionEvents         = "m.events/events"
	SectionRedactions     = "m.events/redactions"
	SectionMedia          = "m.media/media"
	SectionOmissions      = "m.omissions/omissions"
	CoreFile              = "m.core.json"
	ManifestFile          = "manifest.json"
	mediaFileDir          = "m.media/files/"
	mediaThumbnailDir     = "m.media/thumbnails/"
	sectionFileExt        = ".cbor"
)

// section describes one record stream: its Go type and which of its fields
// are sensitive (secret or personal data that needs an encrypted archive).
type section struct {
	name      string
	typ       reflect.Type
	sensitive func(rec any) []string
}

func (s section) item() string { return s.name[:strings.IndexByte(s.name, '/')] }

func sec[T any](name string, sensitive func(*T) []string) section {
	return section{
		name: name,
		typ:  reflect.TypeFor[T](),
		sensitive: func(rec any) []string {
			if sensitive == nil {
				return nil
			}
			return sensitive(rec.(*T))
		},
	}
}

func when(cond bool, field string) []string {
	if cond {
		return []string{field}
	}
	return nil
}

// knownSections lists every m.* record stream of format version 1.
var knownSections = []section{
	sec[ServerKey](SectionServerKeys, func(k *ServerKey) []string { return when(len(k.PrivateKey) > 0, "private_key") }),
	sec[User](SectionUsers, func(u *User) []string { return when(u.PasswordHash != "", "password_hash") }),
	sec[Device](SectionDevices, func(d *Device) []string { return when(len(d.AccessTokens) > 0, "access_tokens") }),
	sec[Pusher](SectionPushers, nil),
	sec[Filter](SectionFilters, nil),
	sec[AccountData](SectionAccountData, nil),
	sec[E2EEKey](SectionE2EEKeys, nil),
	sec[KeyBackupVersion](SectionBackupVersions, nil),
	sec[KeyBackupSession](SectionBackupSessions, func(s *KeyBackupSession) []string { return when(len(s.SessionData) > 0, "session_data") }),
	sec[Room](SectionRooms, nil),
	sec[Membership](SectionMemberships, nil),
	sec[Receipt](SectionReceipts, nil),
	sec[StateSnapshot](SectionStateSnapshots, nil),
	sec[Event](SectionEvents, func(e *Event) []string { return when(len(e.OriginalJSON) > 0, "original_json") }),
	sec[Redaction](SectionRedactions, nil),
	sec[Media](SectionMedia, nil),
	sec[Omission](SectionOmissions, nil),
}

func lookupSection(name string) (section, bool) {
	for _, s := range knownSections {
		if s.name == name {
			return s, true
		}
	}
	return section{}, false
}

// knownItems are the m.* items this reader understands, with the highest
// item version it reads.
var knownItems = func() map[string]int {
	m := map[string]int{"m.core": itemVersion}
	for _, s := range knownSections {
		m[s.item()] = itemVersion
	}
	return m
}()

// SectionFileName is the path of chunk n (from 1) of a section.
func SectionFileName(sectionName string, n int) string {
	return sectionName + "." + strconv.Itoa(n) + sectionFileExt
}

// parseSectionFile splits "m.events/events.3.cbor" into its section name and
// chunk number.
func parseSectionFile(path string) (name string, n int, ok bool) {
	base, found := strings.CutSuffix(path, sectionFileExt)
	if !found {
		return "", 0, false
	}
	dot := strings.LastIndexByte(base, '.')
	if dot < 0 || strings.IndexByte(base, '/') < 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(base[dot+1:])
	if err != nil || n < 1 {
		return "", 0, false
	}
	return base[:dot], n, true
}

// MediaBlobPath is where the file of a media item (thumbnail "") or one of
// its thumbnails lives in the archive (format 1.1):
// m.media/files/<origin>/<media_id> and
// m.media/thumbnails/<origin>/<media_id>/<name>. Files and thumbnails live
// in separate trees so that no blob path is a directory of another, and an
// archive extracts onto a filesystem.
func MediaBlobPath(origin, mediaID, thumbnail string) string {
	if thumbnail == "" {
		return mediaFileDir + origin + "/" + mediaID
	}
	return mediaThumbnailDir + origin + "/" + mediaID + "/" + thumbnail
}

// isBlobPath says whether p lies in one of the media blob trees.
func isBlobPath(p string) bool {
	return strings.HasPrefix(p, mediaFileDir) && len(p) > len(mediaFileDir) ||
		strings.HasPrefix(p, mediaThumbnailDir) && len(p) > len(mediaThumbnailDir)
}

// checkBlobPath reports whether p has exactly the shape MediaBlobPath gives:
// a file at files/<origin>/<media_id>, a thumbnail at
// thumbnails/<origin>/<media_id>/<name>, every segment non-empty.
func checkBlobPath(p string) error {
	want, rest := 2, ""
	switch {
	case strings.HasPrefix(p, mediaFileDir):
		rest = p[len(mediaFileDir):]
	case strings.HasPrefix(p, mediaThumbnailDir):
		want, rest = 3, p[len(mediaThumbnailDir):]
	default:
		return fmt.Errorf("blob path %q is not under %s or %s", p, mediaFileDir, mediaThumbnailDir)
	}
	segs := strings.Split(rest, "/")
	if len(segs) != want || slices.Contains(segs, "") {
		return fmt.Errorf("blob path %q is not %s<origin>/<media_id> or %s<origin>/<media_id>/<thumbnail>", p, mediaFileDir, mediaThumbnailDir)
	}
	return checkMemberPath(p)
}

// upgradeBlobPath maps a format 1.0 blob path to its 1.1 place. Revision 0
// kept thumbnails inside the file's own path
// (m.media/files/<origin>/<media_id>/thumbnails/<name>), which made the
// file and the directory of its thumbnails collide on a filesystem; files
// themselves did not move.
func upgradeBlobPath(p string) string {
	rest, ok := strings.CutPrefix(p, mediaFileDir)
	if !ok {
		return p
	}
	segs := strings.Split(rest, "/")
	if len(segs) == 4 && segs[2] == "thumbnails" {
		return MediaBlobPath(segs[0], segs[1], segs[3])
	}
	return p
}

// ItemOf returns the item (top-level namespace) a file path belongs to:
// "m.events" for "m.events/events.1.cbor", "m.core" for "m.core.json".
func ItemOf(path string) string {
	if i := strings.IndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return strings.TrimSuffix(path, ".json")
}

func checkRecordType(s section, rec any) error {
	t := reflect.TypeOf(rec)
	if t.Kind() != reflect.Pointer || t.Elem() != s.typ {
		return fmt.Errorf("section %s takes *%s records, not %T", s.name, s.typ.Name(), rec)
	}
	return nil
}

// SectionOf names the section (or, for other files, the item) a path belongs to.
func SectionOf(path string) string {
	if name, _, ok := parseSectionFile(path); ok {
		return name
	}
	return ItemOf(path)
}
