package container

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/tink-crypto/tink-go/v2/streamingaead/subtle"
)

// KeySize is the size of an archive key: AES-256.
const KeySize = 32

// SegmentSize is the ciphertext segment size of the streaming AEAD.
const SegmentSize = 1 << 20

// Decompression limits: a part whose zstd stream asks for more is refused.
const (
	maxWindow = 8 << 20 // the largest window a reader accepts
	// encoderWindow is the window this writer uses: 1 MiB keeps each
	// encoder's history small (memory stays flat and low) at a cost of a
	// few percent in size on chat-like data.
	encoderWindow    = 1 << 20
	maxDecoderMemory = 64 << 20
)

// EntryTime is the modification time of every tar entry, so that the same
// data gives the same bytes.
var EntryTime = time.Unix(0, 0).UTC()

func newAEAD(key []byte) (*subtle.AESGCMHKDF, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("archive key must be %d bytes, got %d", KeySize, len(key))
	}
	return subtle.NewAESGCMHKDF(key, "SHA256", KeySize, SegmentSize, 0)
}

// PartWriter writes one part: header, then tar entries through zstd and (with
// a key) the streaming AEAD. Close must be called; the part is only valid
// after a successful Close.
type PartWriter struct {
	dst   io.Writer
	seal  io.WriteCloser // nil without encryption
	zw    *zstd.Encoder
	tw    *tar.Writer
	count *countingWriter
	err   error
}

// Options for writing parts.
type Options struct {
	// Key is the archive key; nil writes plaintext parts.
	Key []byte
	// Level is the zstd level; the zero value is zstd.SpeedDefault.
	Level zstd.EncoderLevel
	// Concurrency of the zstd encoder; 0 means 1. Output bytes do not depend on it.
	Concurrency int
}

// NewPartWriter starts a part on dst.
func NewPartWriter(dst io.Writer, h Header, opts Options) (*PartWriter, error) {
	h.Encrypted = opts.Key != nil
	hdr := h.Marshal()
	if _, err := dst.Write(hdr); err != nil {
		return nil, fmt.Errorf("write part header: %w", err)
	}
	pw := &PartWriter{dst: dst}
	var body io.Writer = dst
	if opts.Key != nil {
		seal, err := newSealWriter(dst, opts.Key, hdr)
		if err != nil {
			return nil, fmt.Errorf("start part encryption: %w", err)
		}
		pw.seal, body = seal, seal
	}
	level := opts.Level
	if level == 0 {
		level = zstd.SpeedDefault
	}
	conc := max(opts.Concurrency, 1)
	zw, err := zstd.NewWriter(body, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(conc),
		zstd.WithEncoderCRC(true), zstd.WithWindowSize(encoderWindow), zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("start zstd: %w", err)
	}
	pw.zw = zw
	pw.count = &countingWriter{w: zw}
	pw.tw = tar.NewWriter(pw.count)
	return pw, nil
}

// Add writes one regular-file entry of exactly size bytes read from r. pax
// records (optional) travel in the entry's PAX header.
func (pw *PartWriter) Add(name string, size int64, pax map[string]string, r io.Reader) error {
	if pw.err != nil {
		return pw.err
	}
	hdr := &tar.Header{
		Typeflag:   tar.TypeReg,
		Name:       name,
		Size:       size,
		Mode:       0o644,
		ModTime:    EntryTime,
		Format:     tar.FormatPAX,
		PAXRecords: pax,
	}
	if err := pw.tw.WriteHeader(hdr); err != nil {
		pw.err = fmt.Errorf("write tar header for %s: %w", name, err)
		return pw.err
	}
	n, err := io.Copy(pw.tw, io.LimitReader(r, size))
	if err != nil {
		pw.err = fmt.Errorf("write %s: %w", name, err)
		return pw.err
	}
	if n != size {
		pw.err = fmt.Errorf("write %s: source gave %d bytes, %d were announced", name, n, size)
		return pw.err
	}
	return nil
}

// PlainBytes is the number of uncompressed tar bytes written so far.
func (pw *PartWriter) PlainBytes() int64 { return pw.count.n }

// Close finishes the tar stream, the zstd frame and the AEAD stream.
func (pw *PartWriter) Close() error {
	if pw.err != nil {
		pw.zw.Close()
		return pw.err
	}
	if err := pw.tw.Close(); err != nil {
		return fmt.Errorf("finish tar: %w", err)
	}
	if err := pw.zw.Close(); err != nil {
		return fmt.Errorf("finish zstd: %w", err)
	}
	if pw.seal != nil {
		if err := pw.seal.Close(); err != nil {
			return fmt.Errorf("finish encryption: %w", err)
		}
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Entry is one file of a part being read.
type Entry struct {
	Name string
	Size int64
	PAX  map[string]string
	io.Reader
}

// PartReader reads one part's entries in order.
type PartReader struct {
	name   string
	header Header
	zr     *zstd.Decoder
	tr     *tar.Reader
	body   io.Reader
}

// ErrWrongKey is returned when a part does not decrypt with the given key
// (or was modified: AEAD cannot tell those apart).
var ErrWrongKey = errors.New("part does not decrypt with this key, or its data was modified")

// OpenPart reads a part's header and prepares to read its entries. name is
// used in errors. key is required for encrypted parts and must be nil-safe
// for plaintext ones.
func OpenPart(src io.Reader, name string, key []byte) (*PartReader, error) {
	hdr := make([]byte, HeaderSize)
	if n, err := io.ReadFull(src, hdr); err != nil {
		return nil, &Error{Part: name, Offset: int64(n), Reason: "truncated before the end of the part header", Err: err}
	}
	h, err := ParseHeader(hdr)
	if err != nil {
		return nil, &Error{Part: name, Offset: 0, Reason: "bad part header", Err: err}
	}
	body := bufio.NewReaderSize(src, 64<<10)
	var plain io.Reader = body
	if h.Encrypted {
		if key == nil {
			return nil, &Error{Part: name, Offset: HeaderSize, Reason: "part is encrypted and no key was given (pass --key-file or --identity)", Err: ErrNeedKey}
		}
		aead, err := newAEAD(key)
		if err != nil {
			return nil, err
		}
		plain, err = aead.NewDecryptingReader(body, hdr)
		if err != nil {
			return nil, &Error{Part: name, Offset: HeaderSize, Reason: "cannot start decryption (truncated or wrong key)", Err: wrapAEAD(err)}
		}
		plain = &aeadErrReader{r: plain}
	}
	zr, err := zstd.NewReader(plain, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow),
		zstd.WithDecoderMaxMemory(maxDecoderMemory))
	if err != nil {
		return nil, fmt.Errorf("start zstd: %w", err)
	}
	return &PartReader{name: name, header: h, zr: zr, tr: tar.NewReader(zr), body: plain}, nil
}

// ErrNeedKey: the archive is encrypted and no key was supplied.
var ErrNeedKey = errors.New("archive is encrypted")

type aeadErrReader struct{ r io.Reader }

func (a *aeadErrReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		err = wrapAEAD(err)
	}
	return n, err
}

func wrapAEAD(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	return fmt.Errorf("%w (%v)", ErrWrongKey, err)
}

// Header returns the part's header.
func (pr *PartReader) Header() Header { return pr.header }

// Next returns the next entry, or io.EOF after the last one, once the whole
// part (its zstd frame and AEAD stream) has been checked to end cleanly.
func (pr *PartReader) Next() (*Entry, error) {
	h, err := pr.tr.Next()
	if err == io.EOF {
		// Nothing may follow the tar end marker but padding; reading to the
		// end makes zstd check its checksum and the AEAD its final segment.
		// The limit stops a zstd bomb hidden after the end marker.
		const maxTrailer = 2 * tarBlock * 10
		if n, err := io.Copy(io.Discard, io.LimitReader(pr.zr, maxTrailer+1)); err != nil {
			return nil, pr.errf("part does not end cleanly", err)
		} else if n > maxTrailer {
			return nil, pr.errf("unexpected data after the tar stream", nil)
		}
		if _, err := io.Copy(io.Discard, pr.body); err != nil {
			return nil, pr.errf("part does not end cleanly", err)
		}
		return nil, io.EOF
	}
	if err != nil {
		return nil, pr.errf("corrupt tar stream", err)
	}
	if h.Typeflag != tar.TypeReg {
		return nil, pr.errf(fmt.Sprintf("entry %q is not a regular file (type %q)", h.Name, h.Typeflag), nil)
	}
	if err := CheckEntryName(h.Name); err != nil {
		return nil, pr.errf(fmt.Sprintf("entry %q", h.Name), err)
	}
	if h.Size < 0 {
		return nil, pr.errf(fmt.Sprintf("entry %q has negative size", h.Name), nil)
	}
	return &Entry{Name: h.Name, Size: h.Size, PAX: h.PAXRecords, Reader: &entryReader{pr: pr, name: h.Name}}, nil
}

const tarBlock = 512

type entryReader struct {
	pr   *PartReader
	name string
}

func (e *entryReader) Read(p []byte) (int, error) {
	n, err := e.pr.tr.Read(p)
	if err != nil && err != io.EOF {
		err = e.pr.errf(fmt.Sprintf("reading entry %q", e.name), err)
	}
	return n, err
}

// Close releases the decoder.
func (pr *PartReader) Close() { pr.zr.Close() }

func (pr *PartReader) errf(reason string, err error) error {
	return &Error{Part: pr.name, Offset: -1, Reason: reason, Err: err}
}

// Error is a damaged or unreadable part.
type Error struct {
	Part   string
	Offset int64
	Reason string
	Err    error
}

func (e *Error) Error() string {
	where := e.Part
	if e.Offset >= 0 {
		where = fmt.Sprintf("%s at offset %d", e.Part, e.Offset)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", where, e.Reason, e.Err)
	}
	return fmt.Sprintf("%s: %s", where, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// CheckEntryName refuses names that could escape a directory on extraction.
func CheckEntryName(p string) error {
	switch {
	case p == "" || len(p) > 1024:
		return errors.New("empty or overlong path")
	case strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.ContainsRune(p, 0):
		return errors.New("absolute path, backslash or NUL")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("path segment %q not allowed", seg)
		}
	}
	return nil
}
