package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"sort"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// Defaults for WriterOptions.
const (
	DefaultPartSize  = 128 << 20
	DefaultChunkSize = 1 << 20
	// MaxFileSize bounds every record/JSON file a reader accepts (blobs are
	// unbounded); writers never come near it.
	MaxFileSize = 64 << 20
)

// Encryption names in the manifest.
const (
	EncryptionNone   = "none"
	EncryptionStream = "aes256-gcm-hkdf-stream-1mib"
)

// Core is m.core.json: what every importer needs first.
type Core struct {
	ServerName         string `json:"server_name"`
	DefaultRoomVersion string `json:"default_room_version,omitempty"`
	// Config holds portable server settings (registration, media limits,
	// federation); implementation-specific config goes to a vendor namespace.
	Config map[string]any `json:"config,omitempty"`
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	ArchiveID container.ArchiveID // zero: a random one
	// Key encrypts the archive; the zero Key writes plaintext.
	Key keywrap.Key
	// AllowPlaintextSecrets lets sensitive fields into a plaintext archive
	// (tests, pipelines that encrypt on their own). Off by default.
	AllowPlaintextSecrets bool
	PartSize              int64 // plaintext bytes after which MaybeCheckpoint cuts a part
	ChunkSize             int   // bytes after which a record file is closed
	Level                 zstd.EncoderLevel
	Concurrency           int // zstd encoder goroutines
	Now                   func() time.Time
	Export                ExportInfo
	Core                  Core
	// OnCheckpoint is called after every committed data part with the state
	// needed to resume after it. Persist it with the job.
	OnCheckpoint func(*Checkpoint) error
}

// Checkpoint is the writer's state after a committed part: enough to resume
// in another process (with the same key, which the caller keeps).
type Checkpoint struct {
	ArchiveID string          `cbor:"archive_id"`
	NextPart  int             `cbor:"next_part"`
	CreatedAt int64           `cbor:"created_at"`
	Files     []FileEntry     `cbor:"files"`
	Parts     []PartEntry     `cbor:"parts"`
	Chunks    map[string]int  `cbor:"chunks"`
	Items     map[string]Item `cbor:"items"`
	Sensitive []string        `cbor:"sensitive"`
	// Cursor is the caller's position in its source, given to Checkpoint.
	Cursor []byte `cbor:"cursor"`
}

// Writer writes an archive: records into sections, files, media blobs. It
// streams; memory is bounded by one buffered chunk per open section and the
// blob index of one part. Not safe for concurrent use.
type Writer struct {
	ctx   context.Context
	sink  container.Sink
	opts  WriterOptions
	codec codec
	id    container.ArchiveID
	key   []byte
	now   time.Time

	part       *container.PartWriter
	partDst    io.WriteCloser
	partCancel context.CancelFunc
	partIndex  int

	buffers   map[string]*chunkBuf
	chunks    map[string]int
	files     []FileEntry
	parts     []PartEntry
	items     map[string]Item
	sensitive map[string]bool
	blobs     []BlobDigest // blobs of the current part
	blobBytes int64
	err       error
	closed    bool

	// A full chunk is hashed, compressed and encrypted into the part in the
	// background while the next records are encoded (at most one at a
	// time, so files keep their order). Everything else that touches the
	// part, the file list or the error first waits for it (drain).
	flushing     chan flushed  // nil when no chunk is in flight
	inflight     int64         // tar bytes of the chunk in flight
	plainAtFlush int64         // the part's plaintext bytes when it started
	spare        *bytes.Buffer // a chunk buffer to swap in
}

type chunkBuf struct {
	buf     *bytes.Buffer
	records int64
}

// flushed is the outcome of a background chunk write.
type flushed struct {
	file FileEntry
	buf  *bytes.Buffer // returned for reuse
	err  error
}

// BlobDigest is a record of m.media/blob_index: the size and hash of every
// blob, written at the end of the part that holds the blobs.
type BlobDigest struct {
	Path   string `cbor:"path"`
	Size   int64  `cbor:"size"`
	SHA256 string `cbor:"sha256"`
}

// SectionBlobIndex holds one BlobDigest per media blob, per part.
const SectionBlobIndex = "m.media/blob_index"

func init() { knownSections = append(knownSections, sec[BlobDigest](SectionBlobIndex, nil)) }

// NewWriter starts a new archive on sink.
func NewWriter(ctx context.Context, sink container.Sink, opts WriterOptions) (*Writer, error) {
	w, err := newWriter(ctx, sink, opts)
	if err != nil {
		return nil, err
	}
	if err := sink.RemovePartsFrom(ctx, 0); err != nil {
		return nil, fmt.Errorf("clear destination: %w", err)
	}
	return w, nil
}

// ResumeWriter continues an archive after cp, its last committed checkpoint.
// Parts written after cp are removed. opts must carry the same key.
func ResumeWriter(ctx context.Context, sink container.Sink, opts WriterOptions, cp *Checkpoint) (*Writer, error) {
	id, err := container.ParseArchiveID(cp.ArchiveID)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	opts.ArchiveID = id
	w, err := newWriter(ctx, sink, opts)
	if err != nil {
		return nil, err
	}
	if err := sink.RemovePartsFrom(ctx, cp.NextPart); err != nil {
		return nil, fmt.Errorf("remove parts after checkpoint: %w", err)
	}
	w.now = time.UnixMilli(cp.CreatedAt).UTC()
	w.partIndex = cp.NextPart
	w.files = slices.Clone(cp.Files)
	w.parts = slices.Clone(cp.Parts)
	w.chunks = maps.Clone(cp.Chunks)
	w.items = maps.Clone(cp.Items)
	for _, s := range cp.Sensitive {
		w.sensitive[s] = true
	}
	if w.chunks == nil {
		w.chunks = map[string]int{}
	}
	if w.items == nil {
		w.items = map[string]Item{}
	}
	return w, nil
}

func newWriter(ctx context.Context, sink container.Sink, opts WriterOptions) (*Writer, error) {
	if opts.PartSize <= 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ChunkSize > MaxFileSize/2 {
		return nil, fmt.Errorf("chunk size %d is above the limit %d", opts.ChunkSize, MaxFileSize/2)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Export.ServerName == "" {
		return nil, errors.New("export info needs the server name")
	}
	if opts.Core.ServerName == "" {
		opts.Core.ServerName = opts.Export.ServerName
	}
	if opts.Core.ServerName != opts.Export.ServerName {
		return nil, fmt.Errorf("core server name %q differs from export server name %q", opts.Core.ServerName, opts.Export.ServerName)
	}
	id := opts.ArchiveID
	if id == (container.ArchiveID{}) {
		id = container.NewArchiveID()
	}
	return &Writer{
		ctx: ctx, sink: sink, opts: opts, codec: newCodec(), id: id, key: opts.Key.Bytes(),
		now:     opts.Now().UTC().Truncate(time.Millisecond),
		buffers: map[string]*chunkBuf{}, chunks: map[string]int{}, items: map[string]Item{},
		sensitive: map[string]bool{},
	}, nil
}

// ArchiveID returns the archive's ID.
func (w *Writer) ArchiveID() string { return w.id.String() }

// Encrypted reports whether the archive is encrypted.
func (w *Writer) Encrypted() bool { return w.key != nil }

// SetItem sets the manifest entry of an item (its version and options), for
// vendor namespaces or m.* options. Items that receive files without a
// SetItem get version 1 and no options.
func (w *Writer) SetItem(name string, it Item) { w.items[CanonicalName(name)] = it }

// Add appends a record to a section. rec must be a pointer to the section's
// record type (e.g. *User for SectionUsers).
func (w *Writer) Add(sectionName string, rec any) error {
	return w.add(sectionName, rec, nil)
}

// AddRaw appends a record given as CBOR, written byte for byte (so fields a
// newer minor revision added survive a copy). It must decode as the
// section's record type; the same secrecy rules as Add apply.
func (w *Writer) AddRaw(sectionName string, raw cbor.RawMessage) error {
	s, ok := lookupSection(sectionName)
	if !ok {
		return fmt.Errorf("unknown section %q", sectionName)
	}
	rec := reflect.New(s.typ).Interface()
	if err := w.codec.dec.Unmarshal(raw, rec); err != nil {
		return fmt.Errorf("%s record: %w", sectionName, err)
	}
	return w.add(sectionName, rec, raw)
}

func (w *Writer) add(sectionName string, rec any, raw []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("archive writer is closed")
	}
	s, ok := lookupSection(sectionName)
	if !ok {
		return fmt.Errorf("unknown section %q", sectionName)
	}
	if err := checkRecordType(s, rec); err != nil {
		return err
	}
	for _, field := range s.sensitive(rec) {
		if w.key == nil && !w.opts.AllowPlaintextSecrets {
			return fmt.Errorf("%w: %s#%s needs an encrypted archive (configure recipients or a passphrase)", ErrSensitiveInPlaintext, sectionName, field)
		}
		w.sensitive[sectionName+"#"+field] = true
	}
	if e, ok := rec.(*Event); ok && len(e.OriginalJSON) > 0 && w.key == nil {
		return fmt.Errorf("%w: unredacted originals are only allowed in encrypted archives", ErrSensitiveInPlaintext)
	}
	b := w.buffers[sectionName]
	if b == nil {
		b = &chunkBuf{buf: w.chunkBuffer()}
		w.buffers[sectionName] = b
	}
	w.makeRoom(b)
	if raw != nil {
		b.buf.Write(raw)
	} else if err := w.codec.enc.MarshalToBuffer(rec, b.buf); err != nil {
		return fmt.Errorf("encode %s record: %w", sectionName, err)
	}
	b.records++
	if b.buf.Len() >= w.opts.ChunkSize {
		return w.flushChunk(sectionName)
	}
	return nil
}

// Chunk buffers: a section's buffer starts at minChunkBuffer bytes,
// doubles up to maxSmallBuffer, then takes its full size, ChunkSize +
// chunkHeadroom (a chunk closes once it holds ChunkSize bytes, so a
// full-size buffer never grows again). Before each record, makeRoom
// leaves recordRoom bytes free when it can, for the record to be encoded
// in place. A small section (a room selection's rooms, memberships,
// receipts) so takes a few KiB rather than a full-size buffer each: less
// heap, and less for the garbage collector to let the heap grow to. A
// big one copies at most maxSmallBuffer bytes on its way to full size:
// doubling all the way copied into 2 MiB of new memory per buffer, and
// on some VMs every first touch of a page costs 15-17 µs
// (docs/SYNAPSE.md).
const (
	minChunkBuffer = 4 << 10
	maxSmallBuffer = 64 << 10
	chunkHeadroom  = 64 << 10
	recordRoom     = 16 << 10
)

// chunkBuffer returns the spare chunk buffer (that of the chunk written
// last, whatever its section) or a new small one.
func (w *Writer) chunkBuffer() *bytes.Buffer {
	if b := w.spare; b != nil {
		w.spare = nil
		b.Reset()
		return b
	}
	return bytes.NewBuffer(make([]byte, 0, minChunkBuffer))
}

// makeRoom grows b's buffer (see minChunkBuffer) when fewer than
// recordRoom bytes are free. Bigger records than that grow it as
// bytes.Buffer does.
func (w *Writer) makeRoom(b *chunkBuf) {
	full := w.opts.ChunkSize + chunkHeadroom
	if b.buf.Available() >= recordRoom || b.buf.Cap() >= full {
		return
	}
	size := max(2*b.buf.Cap(), b.buf.Len()+recordRoom)
	if size > maxSmallBuffer {
		size = full
	}
	grown := make([]byte, b.buf.Len(), min(size, full))
	copy(grown, b.buf.Bytes())
	b.buf = bytes.NewBuffer(grown)
}

// flushChunk closes a section's chunk as a file of the current part. The
// file is written in the background (see Writer.flushing); its entry joins
// the file list, and its error the writer's, when drain collects it.
func (w *Writer) flushChunk(sectionName string) error {
	b := w.buffers[sectionName]
	if b == nil || b.records == 0 {
		return nil
	}
	if err := w.drain(); err != nil {
		return err
	}
	if err := w.ensurePart(); err != nil {
		return err
	}
	w.chunks[sectionName]++
	path := SectionFileName(sectionName, w.chunks[sectionName])
	w.touchItem(ItemOf(path))
	data, entry := b.buf, FileEntry{Path: path, Part: w.partIndex, Size: int64(b.buf.Len()), Records: b.records}
	b.buf, b.records = w.chunkBuffer(), 0
	part := w.part
	done := make(chan flushed, 1)
	// What PlainBytes will say once the file is in: a tar header and the
	// data padded to 512 bytes (the names are short: no extended headers).
	w.flushing, w.inflight, w.plainAtFlush = done, 512+(entry.Size+511)/512*512, part.PlainBytes()
	go func() {
		sum := sha256.Sum256(data.Bytes())
		entry.SHA256 = hex.EncodeToString(sum[:])
		err := part.Add(entry.Path, entry.Size, nil, bytes.NewReader(data.Bytes()))
		done <- flushed{file: entry, buf: data, err: err}
	}()
	return nil
}

// drain waits for the chunk in flight, if any, and records its outcome.
func (w *Writer) drain() error {
	if w.flushing == nil {
		return w.err
	}
	f := <-w.flushing
	w.flushing, w.inflight = nil, 0
	w.spare = f.buf
	if f.err != nil {
		return w.fail(f.err)
	}
	w.files = append(w.files, f.file)
	return w.err
}

func (w *Writer) writeFile(path string, data []byte, records int64) error {
	if err := w.drain(); err != nil {
		return err
	}
	if err := w.ensurePart(); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if err := w.part.Add(path, int64(len(data)), nil, bytes.NewReader(data)); err != nil {
		return w.fail(err)
	}
	w.files = append(w.files, FileEntry{Path: path, Part: w.partIndex, Size: int64(len(data)), Records: records, SHA256: hex.EncodeToString(sum[:])})
	w.touchItem(ItemOf(path))
	return nil
}

func (w *Writer) touchItem(item string) {
	if _, ok := w.items[item]; !ok {
		w.items[item] = Item{V: ItemVersion{itemVersion}}
	}
}

// AddFile writes a whole non-record file, such as a vendor namespace's JSON
// or a file carried through from an unknown namespace. records is what the
// manifest reports for it (0 if it has no records).
func (w *Writer) AddFile(path string, data []byte, records int64) error {
	if w.err != nil {
		return w.err
	}
	path = CanonicalName(path)
	if err := checkMemberPath(path); err != nil {
		return fmt.Errorf("file %q: %w", path, err)
	}
	if _, _, isSection := parseSectionFile(path); isSection {
		if _, known := lookupSection(sectionOfPath(path)); known {
			return fmt.Errorf("%s belongs to a known section: use Add", path)
		}
	}
	if path == ManifestFile || path == CoreFile || isBlobPath(path) {
		return fmt.Errorf("%s is written by the writer itself", path)
	}
	if len(data) > MaxFileSize {
		return fmt.Errorf("file %s is %d bytes, above the limit %d", path, len(data), MaxFileSize)
	}
	return w.writeFile(path, data, records)
}

// MarkSensitive records that the archive holds a sensitive field that no
// m.* record type knows about, such as a secret in a vendor file
// ("org.matrix.synapse/config.json#macaroon_secret_key"). Like sensitive
// record fields, it needs an encrypted archive.
func (w *Writer) MarkSensitive(name string) error {
	if w.key == nil && !w.opts.AllowPlaintextSecrets {
		return fmt.Errorf("%w: %s needs an encrypted archive (configure recipients or a passphrase)", ErrSensitiveInPlaintext, name)
	}
	w.sensitive[name] = true
	return nil
}

// AddBlob streams a media file of exactly size bytes into the archive at
// path (see MediaBlobPath) and returns its SHA-256 (hex), to be put in the
// Media record.
func (w *Writer) AddBlob(path string, size int64, r io.Reader) (string, error) {
	if w.err != nil {
		return "", w.err
	}
	if err := checkBlobPath(path); err != nil {
		return "", fmt.Errorf("%w (see MediaBlobPath)", err)
	}
	if err := w.drain(); err != nil {
		return "", err
	}
	if err := w.ensurePart(); err != nil {
		return "", err
	}
	h := sha256.New()
	if err := w.part.Add(path, size, nil, io.TeeReader(r, h)); err != nil {
		return "", w.fail(err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	w.blobs = append(w.blobs, BlobDigest{Path: path, Size: size, SHA256: sum})
	w.blobBytes += size
	w.touchItem("m.media")
	return sum, nil
}

func (w *Writer) ensurePart() error {
	if w.err != nil {
		return w.err
	}
	if w.part != nil {
		return nil
	}
	return w.startPart(false)
}

func (w *Writer) startPart(last bool) error {
	ctx, cancel := context.WithCancel(w.ctx)
	dst, err := w.sink.CreatePart(ctx, w.partIndex)
	if err != nil {
		cancel()
		return w.fail(fmt.Errorf("create part %d: %w", w.partIndex, err))
	}
	pw, err := container.NewPartWriter(dst, container.Header{ArchiveID: w.id, Index: uint32(w.partIndex), Last: last},
		container.Options{Key: w.key, Level: w.opts.Level, Concurrency: w.opts.Concurrency})
	if err != nil {
		cancel()
		return w.fail(fmt.Errorf("start part %d: %w", w.partIndex, err))
	}
	w.part, w.partDst, w.partCancel = pw, dst, cancel
	return nil
}

// endPart closes the current data part (writing its blob index first) and
// commits it.
func (w *Writer) endPart() error {
	for _, name := range w.openSections() {
		if err := w.flushChunk(name); err != nil {
			return err
		}
	}
	if w.part == nil {
		return nil
	}
	if len(w.blobs) > 0 {
		for i := range w.blobs {
			if err := w.Add(SectionBlobIndex, &w.blobs[i]); err != nil {
				return err
			}
		}
		if err := w.flushChunk(SectionBlobIndex); err != nil {
			return err
		}
	}
	if err := w.drain(); err != nil {
		return err
	}
	if err := w.commitPart(); err != nil {
		return err
	}
	w.parts = append(w.parts, PartEntry{Index: w.partIndex, Blobs: int64(len(w.blobs)), BlobBytes: w.blobBytes})
	w.partIndex++
	w.blobs, w.blobBytes = nil, 0
	return nil
}

func (w *Writer) commitPart() error {
	defer w.partCancel()
	if err := w.part.Close(); err != nil {
		return w.fail(fmt.Errorf("finish part %d: %w", w.partIndex, err))
	}
	if err := w.partDst.Close(); err != nil {
		return w.fail(fmt.Errorf("store part %d: %w", w.partIndex, err))
	}
	w.part, w.partDst = nil, nil
	return nil
}

func (w *Writer) openSections() []string {
	names := make([]string, 0, len(w.buffers))
	for name, b := range w.buffers {
		if b.records > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// PartBytes is the plaintext size of the part being written.
func (w *Writer) PartBytes() int64 {
	if w.flushing != nil {
		return w.plainAtFlush + w.inflight // the part is being written to
	}
	if w.part == nil {
		return 0
	}
	return w.part.PlainBytes()
}

// Checkpoint ends the current part (if it has anything) and reports the
// resumable state with the caller's cursor: after a crash, ResumeWriter with
// this checkpoint continues from here and the caller from cursor.
func (w *Writer) Checkpoint(cursor []byte) (*Checkpoint, error) {
	if w.err != nil {
		return nil, w.err
	}
	if err := w.endPart(); err != nil {
		return nil, err
	}
	cp := &Checkpoint{
		ArchiveID: w.id.String(), NextPart: w.partIndex, CreatedAt: w.now.UnixMilli(),
		Files: slices.Clone(w.files), Parts: slices.Clone(w.parts), Chunks: maps.Clone(w.chunks),
		Items: maps.Clone(w.items), Sensitive: w.sensitiveList(), Cursor: bytes.Clone(cursor),
	}
	if w.opts.OnCheckpoint != nil {
		if err := w.opts.OnCheckpoint(cp); err != nil {
			return nil, w.fail(fmt.Errorf("save checkpoint: %w", err))
		}
	}
	return cp, nil
}

// MaybeCheckpoint checkpoints when the current part has reached PartSize
// (counting buffered records): when CheckpointDue says so. Call it between
// records with the cursor that resumes after them.
func (w *Writer) MaybeCheckpoint(cursor []byte) (*Checkpoint, error) {
	if !w.CheckpointDue() {
		return nil, nil
	}
	return w.Checkpoint(cursor)
}

// CheckpointDue reports whether MaybeCheckpoint would checkpoint now, so
// that a caller can skip building a cursor that would go unused (most
// calls: a part holds many records).
func (w *Writer) CheckpointDue() bool {
	pending := w.PartBytes()
	for _, b := range w.buffers {
		pending += int64(b.buf.Len())
	}
	return pending >= w.opts.PartSize
}

// MarshalCheckpoint encodes a checkpoint for storage; UnmarshalCheckpoint reads it back.
func MarshalCheckpoint(cp *Checkpoint) ([]byte, error) { return newCodec().enc.Marshal(cp) }

func UnmarshalCheckpoint(b []byte) (*Checkpoint, error) {
	var cp Checkpoint
	if err := newCodec().dec.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w", err)
	}
	return &cp, nil
}

func (w *Writer) sensitiveList() []string {
	out := slices.Collect(maps.Keys(w.sensitive))
	sort.Strings(out)
	return out
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
		if w.partCancel != nil {
			w.partCancel()
		}
	}
	return err
}

// Abort abandons the archive: the part being written is not committed.
func (w *Writer) Abort() {
	w.fail(errors.New("archive writer aborted"))
	w.drain() // the chunk in flight stops on the cancelled part
	w.closed = true
}

// Close writes the remaining records, then the final part with m.core.json
// and manifest.json: the archive's publish point. It returns the manifest.
func (w *Writer) Close() (*Manifest, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.closed {
		return nil, errors.New("archive writer is already closed")
	}
	if err := w.endPart(); err != nil {
		return nil, err
	}
	w.closed = true
	core, err := json.Marshal(w.opts.Core)
	if err != nil {
		return nil, fmt.Errorf("encode m.core.json: %w", err)
	}
	if err := w.startPart(true); err != nil {
		return nil, err
	}
	if err := w.writeFile(CoreFile, core, 0); err != nil {
		return nil, err
	}
	enc := EncryptionNone
	if w.key != nil {
		enc = EncryptionStream
	}
	m := &Manifest{
		Format: FormatMagic, Version: FormatVersion, Revision: FormatRevision,
		ArchiveID: w.id.String(), CreatedAt: w.now, Encryption: enc,
		Export: w.opts.Export, Items: w.items, Files: w.files, Parts: w.parts,
		Sensitive: w.sensitiveList(),
	}
	if m.Parts == nil {
		m.Parts = []PartEntry{}
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := w.part.Add(ManifestFile, int64(len(data)), nil, bytes.NewReader(data)); err != nil {
		return nil, w.fail(err)
	}
	if err := w.commitPart(); err != nil {
		return nil, err
	}
	return m, nil
}

func sectionOfPath(p string) string {
	name, _, _ := parseSectionFile(p)
	return name
}
