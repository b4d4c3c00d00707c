package container

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// KeyObjectName is the wrapped-key object beside the parts of an encrypted
// archive (an age file; see package keywrap).
const KeyObjectName = "key.age"

// PackedKeySuffix follows a packed archive's name for its wrapped key
// (backup.ferry and backup.ferry.key.age), as bot export writes it and a
// download link names it.
const PackedKeySuffix = ".key.age"

var packMagic = []byte("FRYPACK1")

// Sink receives the parts of an archive being written. CreatePart's writer
// commits the part on a successful Close; cancelling ctx before Close
// abandons it (gocloud.dev/blob semantics), so a crash never leaves a part
// that looks complete.
type Sink interface {
	CreatePart(ctx context.Context, index int) (io.WriteCloser, error)
	// RemovePartsFrom deletes parts with an index >= index: what a crashed
	// writer left after its last checkpoint.
	RemovePartsFrom(ctx context.Context, index int) error
}

// Source gives read access to the parts of an archive, in stored or packed form.
type Source interface {
	NumParts() int
	PartName(i int) string
	OpenPart(ctx context.Context, i int) (io.ReadCloser, error)
	// OpenKey opens the wrapped-key object beside the parts, if the form has one.
	OpenKey(ctx context.Context) (io.ReadCloser, error)
	Close() error
}

// BucketStore is an archive in stored form: objects part-00000000, ... (and
// key.age) under Prefix in a bucket. It is both a Sink and, once opened with
// OpenStored, a Source.
type BucketStore struct {
	Bucket *blob.Bucket
	Prefix string // "" or ending in "/"
	n      int
	closer func() error
}

func (s *BucketStore) key(name string) string { return s.Prefix + name }

func (s *BucketStore) CreatePart(ctx context.Context, index int) (io.WriteCloser, error) {
	return s.Bucket.NewWriter(ctx, s.key(PartName(index)), &blob.WriterOptions{ContentType: "application/octet-stream"})
}

func (s *BucketStore) RemovePartsFrom(ctx context.Context, index int) error {
	names, err := s.listParts(ctx)
	if err != nil {
		return err
	}
	for i := index; i < len(names)+index+1; i++ {
		err := s.Bucket.Delete(ctx, s.key(PartName(i)))
		if gcerrors.Code(err) == gcerrors.NotFound {
			if i >= len(names) {
				break
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("remove stale part %d: %w", i, err)
		}
	}
	return nil
}

// WriteKey stores the wrapped key beside the parts.
func (s *BucketStore) WriteKey(ctx context.Context, data []byte) error {
	return s.Bucket.WriteAll(ctx, s.key(KeyObjectName), data, nil)
}

func (s *BucketStore) listParts(ctx context.Context) ([]string, error) {
	it := s.Bucket.List(&blob.ListOptions{Prefix: s.Prefix + "part-", Delimiter: "/"})
	var names []string
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list parts under %q: %w", s.Prefix, err)
		}
		// Only exact part names count: an interrupted upload can leave
		// temporary objects beside them (part-00000003.<random>.tmp).
		if name := strings.TrimPrefix(obj.Key, s.Prefix); !obj.IsDir && isPartName(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// OpenStored opens the stored form under prefix. It checks that the parts are
// numbered 0..n-1 without gaps; whether the last is final is checked by the
// reader.
func OpenStored(ctx context.Context, b *blob.Bucket, prefix string) (*BucketStore, error) {
	s := &BucketStore{Bucket: b, Prefix: prefix}
	names, err := s.listParts(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no archive parts under %q (expected objects named part-00000000, ...)", prefix)
	}
	for i, n := range names {
		if n != PartName(i) {
			return nil, &Error{Part: n, Offset: -1, Reason: fmt.Sprintf("unexpected part name; expected %s: a part is missing or misnamed", PartName(i))}
		}
	}
	s.n = len(names)
	return s, nil
}

func (s *BucketStore) NumParts() int         { return s.n }
func (s *BucketStore) PartName(i int) string { return s.Prefix + PartName(i) }
func (s *BucketStore) OpenPart(ctx context.Context, i int) (io.ReadCloser, error) {
	return s.Bucket.NewReader(ctx, s.key(PartName(i)), nil)
}
func (s *BucketStore) OpenKey(ctx context.Context) (io.ReadCloser, error) {
	return s.Bucket.NewReader(ctx, s.key(KeyObjectName), nil)
}
func (s *BucketStore) Close() error {
	if s.closer != nil {
		return s.closer()
	}
	return nil
}

// packSource is the single-file form: "FRYPACK1", then per part an 8-byte
// big-endian length and the part's bytes.
type packSource struct {
	name   string
	ra     io.ReaderAt
	offs   []int64
	lens   []int64
	closer func() error
	// openKey opens the key file beside the pack (nil: none can be).
	openKey func(context.Context) (io.ReadCloser, error)
}

// OpenPack indexes a packed archive of the given size.
func OpenPack(name string, ra io.ReaderAt, size int64, closer func() error) (Source, error) {
	p := &packSource{name: name, ra: ra, closer: closer}
	head := make([]byte, len(packMagic))
	if _, err := ra.ReadAt(head, 0); err != nil || !bytes.Equal(head, packMagic) {
		return nil, &Error{Part: name, Offset: 0, Reason: "not a packed Ferry archive (bad magic)", Err: err}
	}
	off := int64(len(packMagic))
	var lenBuf [8]byte
	for off < size {
		if _, err := ra.ReadAt(lenBuf[:], off); err != nil {
			return nil, &Error{Part: name, Offset: off, Reason: "truncated part length", Err: err}
		}
		n := int64(binary.BigEndian.Uint64(lenBuf[:]))
		off += 8
		if n < HeaderSize || n > size-off {
			return nil, &Error{Part: name, Offset: off - 8, Reason: fmt.Sprintf("part %d claims %d bytes but %d remain (truncated or corrupt pack)", len(p.offs), n, size-off)}
		}
		p.offs = append(p.offs, off)
		p.lens = append(p.lens, n)
		off += n
	}
	if len(p.offs) == 0 {
		return nil, &Error{Part: name, Offset: off, Reason: "pack holds no parts"}
	}
	return p, nil
}

func (p *packSource) NumParts() int         { return len(p.offs) }
func (p *packSource) PartName(i int) string { return fmt.Sprintf("%s#%s", p.name, PartName(i)) }
func (p *packSource) OpenPart(_ context.Context, i int) (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(p.ra, p.offs[i], p.lens[i])), nil
}
func (p *packSource) OpenKey(ctx context.Context) (io.ReadCloser, error) {
	if p.openKey == nil {
		return nil, fmt.Errorf("a packed archive carries no key object: pass the key file beside it: %w", os.ErrNotExist)
	}
	return p.openKey(ctx)
}
func (p *packSource) Close() error {
	if p.closer != nil {
		return p.closer()
	}
	return nil
}

// Pack writes the single-file form of src to dst.
func Pack(ctx context.Context, src Source, dst io.Writer) (int64, error) {
	written, err := dst.Write(packMagic)
	total := int64(written)
	if err != nil {
		return total, err
	}
	for i := 0; i < src.NumParts(); i++ {
		r, err := src.OpenPart(ctx, i)
		if err != nil {
			return total, fmt.Errorf("open %s: %w", src.PartName(i), err)
		}
		size, err := partSize(ctx, src, i, r)
		if err != nil {
			r.Close()
			return total, err
		}
		var lenBuf [8]byte
		binary.BigEndian.PutUint64(lenBuf[:], uint64(size))
		if _, err := dst.Write(lenBuf[:]); err != nil {
			r.Close()
			return total, err
		}
		n, err := io.Copy(dst, partFile(r))
		r.Close()
		total += 8 + n
		if err != nil {
			return total, fmt.Errorf("copy %s: %w", src.PartName(i), err)
		}
		if n != size {
			return total, fmt.Errorf("%s changed while packing (%d bytes, expected %d)", src.PartName(i), n, size)
		}
	}
	return total, nil
}

// partFile is what Pack copies a part from: the part's file itself when
// the part is a local file, so that a copy into a file stays in the
// kernel (copy_file_range) instead of passing through a 1 MiB buffer of
// the blob library's (256 pages first touched, and every byte copied
// twice).
func partFile(r io.Reader) io.Reader {
	if br, ok := r.(*blob.Reader); ok {
		var inner io.Reader
		if br.As(&inner) {
			if f, ok := inner.(*os.File); ok {
				return f
			}
		}
	}
	return r
}

func partSize(ctx context.Context, src Source, i int, r io.ReadCloser) (int64, error) {
	switch s := src.(type) {
	case *BucketStore:
		attrs, err := s.Bucket.Attributes(ctx, s.key(PartName(i)))
		if err != nil {
			return 0, err
		}
		return attrs.Size, nil
	case *packSource:
		return s.lens[i], nil
	}
	if br, ok := r.(*blob.Reader); ok {
		return br.Size(), nil
	}
	return 0, errors.New("unknown part source")
}

// Open opens an archive at loc: a local directory (stored form), a local
// file (packed form), or a bucket URL (s3://bucket/path?endpoint=..., file:///dir/path,
// mem://...) naming either a packed object or a prefix holding parts.
func Open(ctx context.Context, loc string) (Source, error) {
	if !strings.Contains(loc, "://") {
		return openLocal(ctx, loc)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("archive location %q is not a valid URL: %w", loc, err)
	}
	key := strings.Trim(u.Path, "/")
	if u.Scheme == "file" {
		return openLocal(ctx, u.Path)
	}
	bucketURL := *u
	bucketURL.Path = ""
	b, err := blob.OpenBucket(ctx, bucketURL.String())
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", bucketURL.Redacted(), err)
	}
	return openInBucket(ctx, b, key, b.Close)
}

// OpenInBucket opens the archive stored at key (a packed object or a prefix).
func OpenInBucket(ctx context.Context, b *blob.Bucket, key string) (Source, error) {
	return openInBucket(ctx, b, key, nil)
}

func openInBucket(ctx context.Context, b *blob.Bucket, key string, closer func() error) (Source, error) {
	if key != "" {
		if attrs, err := b.Attributes(ctx, key); err == nil {
			src, err := OpenPack(key, &blobReaderAt{ctx: ctx, b: b, key: key}, attrs.Size, closer)
			if err == nil {
				src.(*packSource).openKey = func(ctx context.Context) (io.ReadCloser, error) {
					rc, err := b.NewReader(ctx, key+PackedKeySuffix, nil)
					if gcerrors.Code(err) == gcerrors.NotFound {
						return nil, fmt.Errorf("no key file %s beside the packed archive: %w", key+PackedKeySuffix, os.ErrNotExist)
					}
					return rc, err
				}
			}
			return src, err
		}
	}
	prefix := key
	if prefix != "" {
		prefix += "/"
	}
	s, err := OpenStored(ctx, b, prefix)
	if err != nil {
		if closer != nil {
			closer()
		}
		return nil, err
	}
	s.closer = closer
	return s, nil
}

func openLocal(ctx context.Context, path string) (Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	if st.IsDir() {
		b, err := OpenDirBucket(path, false)
		if err != nil {
			return nil, err
		}
		return openInBucket(ctx, b, "", b.Close)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	src, err := OpenPack(filepath.Base(path), f, st.Size(), f.Close)
	if err != nil {
		f.Close()
		return nil, err
	}
	src.(*packSource).openKey = func(context.Context) (io.ReadCloser, error) {
		rc, err := os.Open(path + PackedKeySuffix)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no key file %s beside the packed archive: %w", path+PackedKeySuffix, os.ErrNotExist)
		}
		return rc, err
	}
	return src, nil
}

type blobReaderAt struct {
	ctx context.Context
	b   *blob.Bucket
	key string
}

func (r *blobReaderAt) ReadAt(p []byte, off int64) (int, error) {
	rr, err := r.b.NewRangeReader(r.ctx, r.key, off, int64(len(p)), nil)
	if err != nil {
		return 0, err
	}
	defer rr.Close()
	n, err := io.ReadFull(rr, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

// Create opens loc for writing a new archive in stored form: a local
// directory (created if missing) or a bucket URL naming a prefix. It
// refuses a location that already holds archive parts, so an archive is
// never written over another. Close the store when done.
func Create(ctx context.Context, loc string) (*BucketStore, error) {
	var b *blob.Bucket
	var prefix string
	var err error
	if u, perr := url.Parse(loc); perr == nil && strings.Contains(loc, "://") && u.Scheme != "file" {
		prefix = strings.Trim(u.Path, "/")
		bucketURL := *u
		bucketURL.Path = ""
		if b, err = blob.OpenBucket(ctx, bucketURL.String()); err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", bucketURL.Redacted(), err)
		}
	} else {
		path := loc
		if perr == nil && u.Scheme == "file" {
			path = u.Path
		}
		if b, err = OpenDirBucket(path, true); err != nil {
			return nil, err
		}
	}
	if prefix != "" {
		prefix += "/"
	}
	s := &BucketStore{Bucket: b, Prefix: prefix, closer: b.Close}
	names, err := s.listParts(ctx)
	if err != nil {
		b.Close()
		return nil, err
	}
	if len(names) > 0 {
		b.Close()
		return nil, fmt.Errorf("%s already holds an archive (%d parts): choose a new location", loc, len(names))
	}
	return s, nil
}

// isPartName reports whether name is exactly "part-" and eight digits.
func isPartName(name string) bool {
	if len(name) != len("part-00000000") || !strings.HasPrefix(name, "part-") {
		return false
	}
	for _, c := range name[len("part-"):] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
