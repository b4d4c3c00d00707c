package archive

import (
	"fmt"
	"hash/maphash"
)

// checkLimits checks what a parsed manifest claims against the format's
// limits and against itself, before anything it describes is read: a reader
// then never reads (or allocates) more than the manifest allows, and the
// manifest never allows more than the format does.
//
//   - every listed file is at most MaxFileSize bytes, and a record file
//     (<item>/<stream>.<N>.cbor) holds at most one record per byte (a CBOR
//     record is at least one byte; what other files count as records is
//     their item's business);
//   - a listed file is never manifest.json (nor a blob path: ParseManifest
//     refuses those with the other path rules);
//   - m.core.json is listed in the final part, every other file in a data
//     part (the final part holds m.core.json and manifest.json only);
//   - a part's blob count and blob bytes are not negative, and a part
//     without blobs has no blob bytes.
func checkLimits(m *Manifest) error {
	final := len(m.Parts)
	for _, f := range m.Files {
		switch {
		case f.Size > MaxFileSize:
			return formatErr(ManifestFile, -1, fmt.Sprintf("file %q is %d bytes, above the format's limit of %d (64 MiB) for a record or JSON file", f.Path, f.Size, MaxFileSize), nil)
		case f.Records > f.Size && isRecordFile(f.Path):
			return formatErr(ManifestFile, -1, fmt.Sprintf("file %q claims %d records in %d bytes: a record takes at least one byte", f.Path, f.Records, f.Size), nil)
		case f.Path == ManifestFile:
			return formatErr(ManifestFile, -1, "lists manifest.json as a file", nil)
		case f.Path == CoreFile && f.Part != final:
			return formatErr(ManifestFile, -1, fmt.Sprintf("lists m.core.json in part %d; it belongs to the final part %d", f.Part, final), nil)
		case f.Path != CoreFile && f.Part == final:
			return formatErr(ManifestFile, -1, fmt.Sprintf("lists %q in the final part, which holds only m.core.json and manifest.json", f.Path), nil)
		}
	}
	for _, p := range m.Parts {
		if p.Blobs < 0 || p.BlobBytes < 0 || (p.Blobs == 0 && p.BlobBytes != 0) {
			return formatErr(ManifestFile, -1, fmt.Sprintf("part %d claims %d blobs of %d bytes", p.Index, p.Blobs, p.BlobBytes), nil)
		}
	}
	return nil
}

// partBudget is what the manifest allows one data part to hold in blobs;
// walkPart charges every blob against it from its tar header, before the
// blob's first byte is read.
type partBudget struct {
	part       string
	blobs      int64 // blobs left
	bytes      int64 // blob bytes left
	claimBlobs int64
	claimBytes int64
}

func newPartBudget(part string, pe PartEntry) *partBudget {
	return &partBudget{part: part, blobs: pe.Blobs, bytes: pe.BlobBytes, claimBlobs: pe.Blobs, claimBytes: pe.BlobBytes}
}

// charge takes one blob of size bytes from the budget, or says why the
// manifest does not allow it.
func (b *partBudget) charge(name string, size int64) error {
	if b.blobs == 0 {
		return formatErr(b.part, -1, fmt.Sprintf("blob %q is one more than the %d blobs the manifest gives this part", name, b.claimBlobs), nil)
	}
	if size > b.bytes {
		return formatErr(b.part, -1, fmt.Sprintf("blob %q is %d bytes, past the %d blob bytes the manifest gives this part (%d left)", name, size, b.claimBytes, b.bytes), nil)
	}
	b.blobs--
	b.bytes -= size
	return nil
}

// nameSet remembers the entry names one walk has seen, across parts, so
// that a name appearing twice (in one part or in two) is refused. Names are
// kept as two 64-bit hashes under independent seeds, 16 bytes each however
// long the name, so the set stays small on archives with millions of media
// files; a false "twice" needs a 128-bit collision.
type nameSet struct {
	s1, s2 maphash.Seed
	seen   map[[2]uint64]struct{}
}

func newNameSet() *nameSet {
	return &nameSet{s1: maphash.MakeSeed(), s2: maphash.MakeSeed(), seen: map[[2]uint64]struct{}{}}
}

// add records name and reports whether it was new.
func (n *nameSet) add(name string) bool {
	k := [2]uint64{maphash.String(n.s1, name), maphash.String(n.s2, name)}
	if _, dup := n.seen[k]; dup {
		return false
	}
	n.seen[k] = struct{}{}
	return true
}

func duplicateErr(part, name string) error {
	return formatErr(part, -1, fmt.Sprintf("entry %q appears twice in the archive: a name may be used once", name), nil)
}

// isRecordFile says whether path names a chunk of a record section.
func isRecordFile(path string) bool {
	_, _, ok := parseSectionFile(path)
	return ok
}
