package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"

	"filippo.io/age"
	"github.com/fxamacker/cbor/v2"

	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// OpenOptions say how to get the archive key.
type OpenOptions struct {
	// Key, if set, is used directly.
	Key keywrap.Key
	// Identities unwrap the key.age stored beside the parts (or KeyFile).
	Identities []age.Identity
	// KeyFile is a wrapped key (key.age) or a plain key line, for packed
	// archives that travel without their key object.
	KeyFile []byte
}

// Reader reads an archive. Open checks the final part and the manifest;
// Walk and ReadSection then stream the data parts, verifying every file's
// size, record count and SHA-256, every blob against its part's blob index,
// and every part's position, archive ID and (if encrypted) authenticity.
type Reader struct {
	src      container.Source
	key      []byte
	manifest *Manifest
	core     Core
	codec    codec
	byPart   map[int][]FileEntry
	byPath   map[string]FileEntry
}

// Open opens an archive from its parts.
func Open(ctx context.Context, src container.Source, opts OpenOptions) (*Reader, error) {
	r := &Reader{src: src, codec: newCodec()}
	n := src.NumParts()
	last := n - 1
	rc, err := src.OpenPart(ctx, last)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", src.PartName(last), err)
	}
	defer rc.Close()
	hdrBuf := make([]byte, container.HeaderSize)
	if _, err := io.ReadFull(rc, hdrBuf); err != nil {
		return nil, formatErr(src.PartName(last), 0, "truncated part header", err)
	}
	h, err := container.ParseHeader(hdrBuf)
	if err != nil {
		return nil, formatErr(src.PartName(last), 0, "bad part header", err)
	}
	if !h.Last {
		return nil, formatErr(src.PartName(last), 0,
			fmt.Sprintf("the last of %d parts is not marked final: the archive was cut short (interrupted export, or trailing parts lost)", n), ErrIncomplete)
	}
	if int(h.Index) != last {
		return nil, formatErr(src.PartName(last), 0, fmt.Sprintf("final part says it is part %d but is at position %d: parts were dropped, added or reordered", h.Index, last), nil)
	}
	if h.Encrypted {
		key, err := resolveKey(ctx, src, h.ArchiveID.String(), opts)
		if err != nil {
			return nil, err
		}
		r.key = key.Bytes()
	}
	pr, err := container.OpenPart(io.MultiReader(bytes.NewReader(hdrBuf), rc), src.PartName(last), r.key)
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	var coreData, manifestData []byte
	for {
		e, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch e.Name {
		case CoreFile, ManifestFile:
			if (e.Name == CoreFile && coreData != nil) || (e.Name == ManifestFile && manifestData != nil) {
				return nil, duplicateErr(src.PartName(last), e.Name)
			}
			if e.Size > MaxFileSize {
				return nil, formatErr(e.Name, -1, fmt.Sprintf("%d bytes is above the limit %d", e.Size, MaxFileSize), nil)
			}
			data, err := io.ReadAll(e)
			if err != nil {
				return nil, err
			}
			if e.Name == CoreFile {
				coreData = data
			} else {
				manifestData = data
			}
		default:
			return nil, formatErr(src.PartName(last), -1, fmt.Sprintf("unexpected entry %q in the final part", e.Name), nil)
		}
	}
	if manifestData == nil {
		return nil, formatErr(src.PartName(last), -1, "final part has no manifest.json", ErrIncomplete)
	}
	m, err := ParseManifest(manifestData)
	if err != nil {
		return nil, err
	}
	if m.ArchiveID != h.ArchiveID.String() {
		return nil, formatErr(ManifestFile, -1, fmt.Sprintf("manifest names archive %s but its part belongs to %s", m.ArchiveID, h.ArchiveID), nil)
	}
	if len(m.Parts)+1 != n {
		return nil, formatErr(ManifestFile, -1, fmt.Sprintf("manifest lists %d data parts but %d are present: parts were dropped or added", len(m.Parts), n-1), nil)
	}
	if (m.Encryption != EncryptionNone) != h.Encrypted {
		return nil, formatErr(ManifestFile, -1, fmt.Sprintf("manifest says encryption %q but the parts disagree", m.Encryption), nil)
	}
	r.manifest = m
	r.byPart = map[int][]FileEntry{}
	r.byPath = map[string]FileEntry{}
	for _, f := range m.Files {
		r.byPart[f.Part] = append(r.byPart[f.Part], f)
		r.byPath[f.Path] = f
	}
	coreEntry, ok := r.byPath[CoreFile]
	if !ok || coreData == nil {
		return nil, formatErr(CoreFile, -1, "missing from the archive or the manifest", nil)
	}
	if err := checkFile(coreEntry, coreData); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(coreData, &r.core); err != nil {
		return nil, formatErr(CoreFile, -1, "not valid JSON", err)
	}
	if r.core.ServerName != m.Export.ServerName {
		return nil, formatErr(CoreFile, -1, fmt.Sprintf("server name %q differs from the manifest's %q", r.core.ServerName, m.Export.ServerName), nil)
	}
	return r, nil
}

// OpenLocation opens an archive by path or URL (see container.Open).
func OpenLocation(ctx context.Context, loc string, opts OpenOptions) (*Reader, error) {
	src, err := container.Open(ctx, loc)
	if err != nil {
		return nil, err
	}
	r, err := Open(ctx, src, opts)
	if err != nil {
		src.Close()
		return nil, err
	}
	return r, nil
}

func resolveKey(ctx context.Context, src container.Source, archiveID string, opts OpenOptions) (keywrap.Key, error) {
	if !opts.Key.IsZero() {
		return opts.Key, nil
	}
	wrapped := opts.KeyFile
	if wrapped == nil && len(opts.Identities) > 0 {
		rc, err := src.OpenKey(ctx)
		if err != nil {
			return keywrap.Key{}, fmt.Errorf("archive is encrypted and its key object could not be opened (pass the key file): %w", err)
		}
		wrapped, err = io.ReadAll(io.LimitReader(rc, 1<<20))
		rc.Close()
		if err != nil {
			return keywrap.Key{}, fmt.Errorf("read key object: %w", err)
		}
	}
	if wrapped == nil {
		return keywrap.Key{}, fmt.Errorf("%w: give the archive key (--key-file) or an age/SSH identity (--identity) or passphrase", container.ErrNeedKey)
	}
	switch keywrap.Classify(wrapped) {
	case keywrap.KindKeyLine:
		return keywrap.Decode(wrapped, archiveID)
	case keywrap.KindIdentity:
		return keywrap.Key{}, fmt.Errorf("%w: the key file holds an age or SSH identity (a secret key), not an archive key: give it as the identity (--identity)", keywrap.ErrNotKeyFile)
	case keywrap.KindUnknown:
		return keywrap.Key{}, fmt.Errorf("%w: the key file is neither a wrapped key (key.age, an age file) nor a key line (%q)", keywrap.ErrNotKeyFile, "ferry-archive-key-v1 ...")
	}
	if len(opts.Identities) == 0 {
		return keywrap.Key{}, fmt.Errorf("%w: the key file is wrapped with age; give an identity (--identity) or passphrase", container.ErrNeedKey)
	}
	return keywrap.Unwrap(wrapped, archiveID, opts.Identities...)
}

// Manifest returns the checked manifest.
func (r *Reader) Manifest() *Manifest { return r.manifest }

// Core returns m.core.json.
func (r *Reader) Core() Core { return r.core }

// Key returns the archive key (nil for plaintext archives).
func (r *Reader) Key() []byte { return r.key }

// Source returns the parts the reader reads.
func (r *Reader) Source() container.Source { return r.src }

// Close releases the source.
func (r *Reader) Close() error { return r.src.Close() }

func checkFile(f FileEntry, data []byte) error {
	if int64(len(data)) != f.Size {
		return formatErr(f.Path, int64(len(data)), fmt.Sprintf("is %d bytes, the manifest says %d", len(data), f.Size), nil)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != f.SHA256 {
		return formatErr(f.Path, -1, "SHA-256 does not match the manifest", nil)
	}
	return nil
}

// checkCount checks that a record file of a known item holds well-formed
// CBOR items, as many as the manifest says.
func (r *Reader) checkCount(f FileEntry, data []byte) error {
	if _, _, isSection := parseSectionFile(f.Path); !isSection || !r.manifest.ItemKnown(ItemOf(f.Path)) {
		return nil
	}
	dec := r.codec.dec.NewDecoder(bytes.NewReader(data))
	var n int64
	var rec wellFormed
	for {
		err := dec.Decode(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			return formatErr(f.Path, int64(dec.NumBytesRead()), fmt.Sprintf("record %d is not valid CBOR", n+1), err)
		}
		n++
	}
	return checkRecords(f, n)
}

// wellFormed takes any well-formed record and keeps nothing of it:
// checkCount's decoder checks each record as it would for a
// cbor.RawMessage, without copying the record as RawMessage does (at 1M
// events, about 1 GB copied for nothing in each walk of the events).
type wellFormed struct{}

func (*wellFormed) UnmarshalCBOR([]byte) error { return nil }

// File is one item visited by Walk: a listed file (Data set, already
// verified) or a media blob (Blob set, verified against the part's blob
// index once the part ends).
type File struct {
	Entry FileEntry
	Data  []byte
	// Known is false for files of items this reader does not understand.
	Known bool
	// Blob streams a media blob; Walk drains what the callback leaves.
	Blob     io.Reader
	BlobPath string
	BlobSize int64
}

// WalkFilter chooses what Walk reads; nil means everything.
type WalkFilter func(path string) bool

// Walk reads every data part in order and calls fn for every file and blob,
// verifying as it goes. It returns the first error from the archive or fn.
func (r *Reader) Walk(ctx context.Context, fn func(*File) error) error {
	return r.walk(ctx, nil, nil, fn)
}

// walk reads the data parts listed (nil: all). want, when not nil, names
// the listed files the caller takes: the others are still read (the part
// is one stream) and their names and sizes checked, but neither hashed nor
// counted, nor handed to fn; the caller never sees their bytes.
func (r *Reader) walk(ctx context.Context, parts []int, want map[string]bool, fn func(*File) error) error {
	if parts == nil {
		for i := range r.manifest.Parts {
			parts = append(parts, i)
		}
	}
	names := newNameSet()
	for _, i := range parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.walkPart(ctx, i, names, want, fn); err != nil {
			return err
		}
	}
	return nil
}

// walkPart reads data part i. Every entry name is added to names (a name
// seen before, in this part or an earlier one, is refused), and every size
// is checked against the manifest before the entry is read: a listed file's
// tar size must be the manifest's (which is at most MaxFileSize), and each
// blob must fit in what the part's manifest entry has left.
func (r *Reader) walkPart(ctx context.Context, i int, names *nameSet, want map[string]bool, fn func(*File) error) error {
	name := r.src.PartName(i)
	rc, err := r.src.OpenPart(ctx, i)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer rc.Close()
	pr, err := container.OpenPart(rc, name, r.key)
	if err != nil {
		return err
	}
	defer pr.Close()
	h := pr.Header()
	switch {
	case h.ArchiveID.String() != r.manifest.ArchiveID:
		return formatErr(name, 8, fmt.Sprintf("part belongs to archive %s, not %s", h.ArchiveID, r.manifest.ArchiveID), nil)
	case int(h.Index) != i:
		return formatErr(name, 24, fmt.Sprintf("part says it is part %d but is at position %d: parts were reordered or swapped", h.Index, i), nil)
	case h.Last:
		return formatErr(name, 28, "a data part is marked final", nil)
	case h.Encrypted != (r.key != nil):
		return formatErr(name, 28, "part encryption differs from the archive's", nil)
	}
	expected := map[string]FileEntry{}
	for _, f := range r.byPart[i] {
		expected[f.Path] = f
	}
	budget := newPartBudget(name, r.manifest.Parts[i])
	seenBlobs := map[string]BlobDigest{}
	var index []BlobDigest
	for {
		e, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if !names.add(e.Name) {
			return duplicateErr(name, e.Name)
		}
		if f, ok := expected[e.Name]; ok {
			delete(expected, e.Name)
			if e.Size != f.Size {
				return formatErr(e.Name, -1, fmt.Sprintf("tar entry is %d bytes, the manifest says %d", e.Size, f.Size), nil)
			}
			if want != nil && !want[f.Path] && sectionOfPath(f.Path) != SectionBlobIndex {
				if _, err := io.Copy(io.Discard, e); err != nil {
					return err
				}
				continue
			}
			// The size is the manifest's (at most MaxFileSize), checked above.
			data := make([]byte, f.Size+1)
			n, err := io.ReadFull(e, data)
			switch err {
			case io.ErrUnexpectedEOF, io.EOF: // as io.ReadAll: checkFile judges the bytes read
				data = data[:n]
			case nil: // more than the manifest's size
				rest, err := io.ReadAll(e)
				if err != nil {
					return err
				}
				data = append(data, rest...)
			default:
				return err
			}
			if err := checkFile(f, data); err != nil {
				return err
			}
			if err := r.checkCount(f, data); err != nil {
				return err
			}
			if sectionOfPath(f.Path) == SectionBlobIndex {
				if err := r.decodeRecords(f, data, func(d *BlobDigest) error { index = append(index, *d); return nil }); err != nil {
					return err
				}
			}
			if err := fn(&File{Entry: f, Data: data, Known: r.manifest.ItemKnown(ItemOf(f.Path))}); err != nil {
				return err
			}
			continue
		}
		if isBlobPath(e.Name) {
			if err := budget.charge(e.Name, e.Size); err != nil {
				return err
			}
			hsh := sha256.New()
			cr := &countReader{r: io.TeeReader(e, hsh)}
			blobPath, err := r.blobPath(e.Name)
			if err != nil {
				return formatErr(name, -1, err.Error(), nil)
			}
			if blobPath != e.Name && !names.add(blobPath) {
				return duplicateErr(name, blobPath)
			}
			if err := fn(&File{Blob: cr, BlobPath: blobPath, BlobSize: e.Size, Known: true}); err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, cr); err != nil {
				return err
			}
			seenBlobs[e.Name] = BlobDigest{Path: e.Name, Size: cr.n, SHA256: hexSum(hsh)}
			continue
		}
		if _, listed := r.byPath[e.Name]; listed {
			return formatErr(name, -1, fmt.Sprintf("%q belongs to another part according to the manifest", e.Name), nil)
		}
		return formatErr(name, -1, fmt.Sprintf("entry %q is not listed in the manifest", e.Name), nil)
	}
	for path := range expected {
		return formatErr(path, -1, fmt.Sprintf("listed in the manifest for %s but missing from it", name), nil)
	}
	pe := r.manifest.Parts[i]
	if int64(len(seenBlobs)) != pe.Blobs || int64(len(index)) != pe.Blobs {
		return formatErr(name, -1, fmt.Sprintf("part holds %d blobs and indexes %d, the manifest says %d", len(seenBlobs), len(index), pe.Blobs), nil)
	}
	var total int64
	for _, d := range index {
		got, ok := seenBlobs[d.Path]
		if !ok {
			return formatErr(d.Path, -1, fmt.Sprintf("indexed blob missing from %s", name), nil)
		}
		if got != d {
			return formatErr(d.Path, -1, fmt.Sprintf("blob is %d bytes with SHA-256 %s, its index says %d bytes, %s", got.Size, got.SHA256, d.Size, d.SHA256), nil)
		}
		total += got.Size
	}
	if total != pe.BlobBytes {
		return formatErr(name, -1, fmt.Sprintf("blobs total %d bytes, the manifest says %d", total, pe.BlobBytes), nil)
	}
	return nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// decodeRecords decodes every record of a verified file into T, checking
// that the count matches the manifest.
func decodeRecords[T any](c codec, f FileEntry, data []byte, fn func(*T) error) error {
	if fn, ok := any(fn).(func(*Event) error); ok {
		return decodeEvents(c, f, data, false, fn)
	}
	dec := c.dec.NewDecoder(bytes.NewReader(data))
	var n int64
	for {
		var rec T
		err := dec.Decode(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			return formatErr(f.Path, int64(dec.NumBytesRead()), fmt.Sprintf("record %d is not valid", n+1), err)
		}
		n++
		if err := fn(&rec); err != nil {
			return err
		}
	}
	return checkRecords(f, n)
}

// checkRecords says whether n, the records read from f, are the
// manifest's count.
func checkRecords(f FileEntry, n int64) error {
	if n != f.Records {
		return formatErr(f.Path, -1, fmt.Sprintf("holds %d records, the manifest says %d", n, f.Records), nil)
	}
	return nil
}

// decodeEvents is decodeRecords for events: each record decoded by
// decodeEventFast, or where it declines by the reflecting decoder, which
// gives the same record or the same error. With alias, the records' JSON
// are slices of data where decodeEventFast takes them (see there).
func decodeEvents(c codec, f FileEntry, data []byte, alias bool, fn func(*Event) error) error {
	var n int64
	for off := 0; off < len(data); {
		var rec Event
		size, ok := decodeEventFast(data[off:], &rec, alias)
		if !ok {
			dec := c.dec.NewDecoder(bytes.NewReader(data[off:]))
			if err := dec.Decode(&rec); err != nil {
				return formatErr(f.Path, int64(off+dec.NumBytesRead()), fmt.Sprintf("record %d is not valid", n+1), err)
			}
			size = dec.NumBytesRead()
		}
		off += size
		n++
		if err := fn(&rec); err != nil {
			return err
		}
	}
	return checkRecords(f, n)
}

// blobPath is the path a blob entry is handed to callers under: its 1.1
// place (revision 0 archives are mapped, see upgradeBlobPath), checked to
// have the shape MediaBlobPath gives, so that no blob is a directory of
// another.
func (r *Reader) blobPath(entry string) (string, error) {
	p := entry
	if r.manifest.Revision < 1 {
		p = upgradeBlobPath(entry)
	}
	if err := checkBlobPath(p); err != nil {
		return "", err
	}
	return p, nil
}

// readRecords is decodeRecords as callers see it: media records of a
// revision 0 archive come with their blob paths mapped to format 1.1
// (upgradeBlobPath), like the blobs themselves.
func readRecords[T any](r *Reader, f FileEntry, data []byte, fn func(*T) error) error {
	if r.manifest.Revision >= 1 || sectionOfPath(f.Path) != SectionMedia {
		return decodeRecords(r.codec, f, data, fn)
	}
	return decodeRecords(r.codec, f, data, func(rec *T) error {
		if err := r.upgradeMediaRecord(rec); err != nil {
			return formatErr(f.Path, -1, "media record", err)
		}
		return fn(rec)
	})
}

// upgradeMediaRecord maps the blob paths of a revision 0 media record,
// decoded (*Media) or raw (*cbor.RawMessage, re-encoded only when a path
// changes), in place.
func (r *Reader) upgradeMediaRecord(rec any) error {
	switch m := rec.(type) {
	case *Media:
		upgradeMediaPaths(m)
	case *cbor.RawMessage:
		var md Media
		if err := r.codec.dec.Unmarshal(*m, &md); err != nil {
			return err
		}
		if !upgradeMediaPaths(&md) {
			return nil
		}
		b, err := r.codec.enc.Marshal(&md)
		if err != nil {
			return err
		}
		*m = b
	}
	return nil
}

// upgradeMediaPaths maps a media record's blob paths with upgradeBlobPath
// and says whether any changed.
func upgradeMediaPaths(m *Media) (changed bool) {
	for i, t := range m.Thumbnails {
		if p := upgradeBlobPath(t.Path); p != t.Path {
			m.Thumbnails[i].Path, changed = p, true
		}
	}
	if p := upgradeBlobPath(m.Path); p != m.Path {
		m.Path, changed = p, true
	}
	return changed
}

func (r *Reader) decodeRecords(f FileEntry, data []byte, fn func(*BlobDigest) error) error {
	return decodeRecords(r.codec, f, data, fn)
}

// ReadSection streams the records of one m.* section, decoded into T (which
// must be the section's record type), in write order. Only the parts holding
// the section are read. Each record is fn's: its byte slices are its own
// (copied out of the file), and nothing else writes into them.
func ReadSection[T any](ctx context.Context, r *Reader, sectionName string, fn func(*T) error) error {
	s, ok := lookupSection(sectionName)
	if !ok {
		return fmt.Errorf("unknown section %q", sectionName)
	}
	var zero T
	if err := checkRecordType(s, &zero); err != nil {
		return err
	}
	if !r.manifest.ItemKnown(s.item()) {
		return errNewerItem(r, s)
	}
	files := r.manifest.FilesOf(sectionName)
	var parts []int
	for _, f := range files {
		if len(parts) == 0 || parts[len(parts)-1] != f.Part {
			parts = append(parts, f.Part)
		}
	}
	want := make(map[string]bool, len(files))
	for _, f := range files {
		want[f.Path] = true
	}
	return r.walk(ctx, parts, want, func(file *File) error {
		if file.Data == nil || sectionOfPath(file.Entry.Path) != sectionName {
			return nil
		}
		return readRecords(r, file.Entry, file.Data, fn)
	})
}

func errNewerItem(r *Reader, s section) error {
	return fmt.Errorf("item %s has version %v, newer than this reader understands", s.item(), r.manifest.Items[s.item()].V)
}

// DecodeRecords decodes the records of a file returned by Walk.
func DecodeRecords[T any](r *Reader, f *File, fn func(*T) error) error {
	return readRecords(r, f.Entry, f.Data, fn)
}

// RawRecords calls fn with each record of a file as raw CBOR, for tools that
// handle any section generically (inspect, diff).
func RawRecords(r *Reader, f *File, fn func(cbor.RawMessage) error) error {
	return readRecords(r, f.Entry, f.Data, func(m *cbor.RawMessage) error { return fn(*m) })
}

// DecodeRaw decodes one raw record into v with the strict decoder.
func (r *Reader) DecodeRaw(raw cbor.RawMessage, v any) error { return r.codec.dec.Unmarshal(raw, v) }

// ReadFiles calls fn with the verified contents of each listed file (in
// archive order), reading only the parts that hold them. Paths not in the
// archive are ignored.
func (r *Reader) ReadFiles(ctx context.Context, paths []string, fn func(path string, data []byte) error) error {
	want := map[string]bool{}
	for _, p := range paths {
		want[CanonicalName(p)] = true
	}
	var parts []int
	for _, f := range r.manifest.Files {
		if want[f.Path] && (len(parts) == 0 || parts[len(parts)-1] != f.Part) {
			parts = append(parts, f.Part)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return r.walk(ctx, parts, want, func(f *File) error {
		if f.Data == nil || !want[f.Entry.Path] {
			return nil
		}
		return fn(f.Entry.Path, f.Data)
	})
}
