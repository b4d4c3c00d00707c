// Package storage keeps archives in any bucket gocloud.dev/blob opens by
// URL: file:// (the embedded default), s3:// (any S3-compatible store:
// endpoint, path-style and region as URL parameters), gs://, azblob:// and
// mem:// (tests).
//
// An export writes its parts under staging/<archive id>/ (the resumable
// stored form), and Publish turns them into one object
// archives/<name>.ferry (with archives/<name>.ferry.key.age beside it).
// Object writes are atomic in every driver (S3 completes a multipart
// upload, files are renamed into place), so an archive is visible under its
// final name only once its last byte is written; a failed publish leaves
// nothing under that name, and Discard removes a failed export's staging.
package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob://container
	_ "gocloud.dev/blob/gcsblob"   // gs://bucket
	"gocloud.dev/gcerrors"

	"github.com/ferry-matrix/ferry/archive/container"
)

// Prefixes inside a store.
const (
	StagingPrefix = "staging/"
	ArchivePrefix = "archives/"
	// ArchiveExt is the published single-file form's extension.
	ArchiveExt = ".ferry"
	// KeyExt follows an archive's name for its wrapped key.
	KeyExt = ".key.age"
)

// ErrNotFound is returned for a missing object.
var ErrNotFound = errors.New("not found")

// ErrNotSupported: the store cannot do this (e.g. presign file:// URLs).
var ErrNotSupported = errors.New("not supported by this store")

// Store is a bucket of archives.
type Store struct {
	b      *blob.Bucket
	prefix string // inside the bucket, ending in "/" or empty
	where  string // the URL, without secrets, for messages
}

// Open opens the store at a bucket URL. A path after the bucket
// (s3://bucket/some/prefix?...) scopes the store to that prefix; a plain
// path (no scheme) is a local directory, created if missing.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	if !strings.Contains(rawURL, "://") {
		b, err := container.OpenDirBucket(rawURL, true)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		return &Store{b: b, where: rawURL}, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("storage: %q is not a URL: %w", rawURL, err)
	}
	if u.Scheme == "file" {
		b, err := container.OpenDirBucket(u.Path, true)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		return &Store{b: b, where: u.Redacted()}, nil
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	bu := *u
	bu.Path = ""
	b, err := blob.OpenBucket(ctx, bu.String())
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", u.Redacted(), err)
	}
	return &Store{b: b, prefix: prefix, where: u.Redacted()}, nil
}

// String names the store without secrets.
func (s *Store) String() string { return s.where }

// Close releases the bucket.
func (s *Store) Close() error { return s.b.Close() }

// Object describes a stored object.
type Object struct {
	Key     string
	Size    int64
	ModTime time.Time
	SHA256  string // set by Put and Publish
}

func (s *Store) full(key string) string { return s.prefix + key }

func notFound(err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// Put streams r into key. The object appears only when r is fully
// written; on any error (or cancellation) nothing is left under key.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (Object, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.b.NewWriter(wctx, s.full(key), &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return Object{}, fmt.Errorf("storage: write %s: %w", key, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), r)
	if err != nil {
		cancel() // aborts the upload: nothing is published
		closeAborted(w)
		return Object{}, fmt.Errorf("storage: write %s: %w", key, err)
	}
	if err := w.Close(); err != nil {
		return Object{}, fmt.Errorf("storage: write %s: %w", key, err)
	}
	return Object{Key: key, Size: n, ModTime: time.Now(), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// closeAborted closes a writer whose context was cancelled, which
// discards the upload. gocloud.dev v0.47.0's azureblob writer panics
// there (its upload goroutine sets the pipe reader to nil on the error
// that Close then dereferences); the upload is discarded either way, so
// that panic is contained here rather than taking Ferry down.
func closeAborted(w *blob.Writer) {
	defer func() { recover() }()
	w.Close()
}

// Stat describes key.
func (s *Store) Stat(ctx context.Context, key string) (Object, error) {
	a, err := s.b.Attributes(ctx, s.full(key))
	if err != nil {
		return Object{}, notFound(err)
	}
	return Object{Key: key, Size: a.Size, ModTime: a.ModTime}, nil
}

// Range reads n bytes of key from off (n < 0: to the end).
func (s *Store) Range(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	r, err := s.b.NewRangeReader(ctx, s.full(key), off, n, nil)
	if err != nil {
		return nil, notFound(err)
	}
	return r, nil
}

// List returns the objects under prefix, sorted by key.
func (s *Store) List(ctx context.Context, prefix string) ([]Object, error) {
	it := s.b.List(&blob.ListOptions{Prefix: s.full(prefix)})
	var out []Object
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("storage: list %s: %w", prefix, err)
		}
		if obj.IsDir {
			continue
		}
		out = append(out, Object{Key: strings.TrimPrefix(obj.Key, s.prefix), Size: obj.Size, ModTime: obj.ModTime})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	err := s.b.Delete(ctx, s.full(key))
	if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("storage: delete %s: %w", key, err)
	}
	return nil
}

// SignedURL returns a presigned GET URL for key valid for ttl, where the
// store supports it (S3, GCS, Azure); ErrNotSupported otherwise, and Ferry
// serves the download itself with a signed link (package links).
func (s *Store) SignedURL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	u, err := s.b.SignedURL(ctx, s.full(key), &blob.SignedURLOptions{Expiry: ttl, Method: "GET"})
	if err != nil {
		if gcerrors.Code(err) == gcerrors.Unimplemented {
			return "", ErrNotSupported
		}
		return "", fmt.Errorf("storage: presign %s: %w", key, err)
	}
	return u, nil
}

// Stage returns where an export with this archive ID writes its parts.
func (s *Store) Stage(archiveID string) *container.BucketStore {
	return &container.BucketStore{Bucket: s.b, Prefix: s.full(StagingPrefix + archiveID + "/")}
}

// ArchiveKey is the published object of an archive name.
func ArchiveKey(name string) string { return ArchivePrefix + name + ArchiveExt }

// CheckName refuses archive names that are not one clean path segment.
func CheckName(name string) error {
	if name == "" || len(name) > 200 || strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." || path.Clean(name) != name {
		return fmt.Errorf("archive name %q must be one path segment of at most 200 characters", name)
	}
	return nil
}

// Publish packs the staged parts of archiveID into archives/<name>.ferry
// (and copies the wrapped key beside it), then removes the staging. The
// archive is visible under its name only when complete; on failure the
// staging is kept (publish can be retried) and nothing is published.
func (s *Store) Publish(ctx context.Context, archiveID, name string) (Object, error) {
	if err := CheckName(name); err != nil {
		return Object{}, err
	}
	stage, err := container.OpenStored(ctx, s.b, s.full(StagingPrefix+archiveID+"/"))
	if err != nil {
		return Object{}, fmt.Errorf("storage: publish %s: %w", archiveID, err)
	}
	if _, err := s.Stat(ctx, ArchiveKey(name)); err == nil {
		return Object{}, fmt.Errorf("storage: an archive named %q already exists", name)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := container.Pack(ctx, stage, pw)
		pw.CloseWithError(err)
	}()
	obj, err := s.Put(ctx, ArchiveKey(name), pr)
	pr.CloseWithError(err) // stops the packer if the upload failed
	if err != nil {
		return Object{}, fmt.Errorf("storage: publish %s: %w", name, err)
	}
	if kr, err := stage.OpenKey(ctx); err == nil {
		_, err = s.Put(ctx, ArchiveKey(name)+KeyExt, kr)
		kr.Close()
		if err != nil {
			s.Delete(ctx, ArchiveKey(name))
			return Object{}, fmt.Errorf("storage: publish %s key: %w", name, err)
		}
	}
	if err := s.Discard(ctx, archiveID); err != nil {
		return obj, err
	}
	return obj, nil
}

// Discard removes an archive's staging (after a failed or published export).
func (s *Store) Discard(ctx context.Context, archiveID string) error {
	objs, err := s.List(ctx, StagingPrefix+archiveID+"/")
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := s.Delete(ctx, o.Key); err != nil {
			return err
		}
	}
	return nil
}

// Archives lists the published archives (without their key objects).
func (s *Store) Archives(ctx context.Context) ([]Object, error) {
	objs, err := s.List(ctx, ArchivePrefix)
	if err != nil {
		return nil, err
	}
	out := objs[:0]
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ArchiveExt) {
			out = append(out, o)
		}
	}
	return out, nil
}

// StagedArchives lists archive IDs with parts in staging and their newest
// modification, for cleaning up exports that will never finish.
func (s *Store) StagedArchives(ctx context.Context) (map[string]time.Time, error) {
	objs, err := s.List(ctx, StagingPrefix)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, o := range objs {
		id, _, ok := strings.Cut(strings.TrimPrefix(o.Key, StagingPrefix), "/")
		if !ok {
			continue
		}
		if o.ModTime.After(out[id]) {
			out[id] = o.ModTime
		}
	}
	return out, nil
}

// ArchiveKeyFile reads the wrapped key published beside archive name
// (ErrNotFound for a plaintext archive, or one whose key file is gone).
func (s *Store) ArchiveKeyFile(ctx context.Context, name string) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	r, err := s.Range(ctx, ArchiveKey(name)+KeyExt, 0, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, 1<<20)) // a key file is a few hundred bytes
}

// OpenArchive opens a published archive for reading (range reads of the
// single object).
func (s *Store) OpenArchive(ctx context.Context, name string) (container.Source, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if _, err := s.Stat(ctx, ArchiveKey(name)); err != nil {
		return nil, fmt.Errorf("storage: archive %s: %w", name, err)
	}
	return container.OpenInBucket(ctx, s.b, s.full(ArchiveKey(name)))
}
