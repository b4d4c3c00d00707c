package synapse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/importer"
)

// stagingDir is where restoreMedia puts blobs inside the media store until
// their media records say where they belong (blobs come before records).
const stagingDir = ".ferry-restore"

// quarantinedBy is local_media_repository.quarantined_by for media the
// archive marks quarantined: Synapse keeps who quarantined it, which the
// archive does not carry.
const quarantinedBy = "ferry-restore"

// restoreMedia writes the server's own media (origin = server name): each
// file at local_content/AB/CD/rest and each thumbnail at
// local_thumbnails/AB/CD/rest/<w>-<h>-<top>-<sub>-<method>, as Synapse's
// media store keeps them, owned by the media store's owner, and their rows
// in local_media_repository and local_media_repository_thumbnails. Files are
// staged and renamed into place, so a file is either whole or absent; the
// staging directory is removed at the end. Remote media (a cache Synapse
// fills again on demand) is not restored. It returns the number of media
// items restored. Each media record read counts one item to p.
func restoreMedia(ctx context.Context, tx pgx.Tx, r *archive.Reader, mediaStore string, p importer.Progress) (int64, error) {
	server := r.Core().ServerName
	owner, err := os.Stat(mediaStore)
	if err != nil {
		return 0, fmt.Errorf("media store %s: %w", mediaStore, err)
	}
	stage := filepath.Join(mediaStore, stagingDir)
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return 0, err
	}
	defer os.RemoveAll(stage)
	staged := func(blobPath string) string {
		sum := sha256.Sum256([]byte(blobPath))
		return filepath.Join(stage, hex.EncodeToString(sum[:]))
	}
	ownFiles := archive.MediaBlobPath(server, "", "")                                 // m.media/files/<server>/
	ownThumbnails := strings.TrimSuffix(archive.MediaBlobPath(server, "", "x"), "/x") // m.media/thumbnails/<server>/
	b := newBatcher(tx)
	var n int64
	record := func(m *archive.Media) error {
		defer p.Add(1)
		if m.Origin != server || m.Path == "" {
			return nil
		}
		if len(m.MediaID) < 5 || strings.ContainsAny(m.MediaID, "/\\") || m.MediaID[0] == '.' {
			return fmt.Errorf("media ID %q cannot be a Synapse media store path", m.MediaID)
		}
		final := filepath.Join(mediaStore, "local_content", m.MediaID[0:2], m.MediaID[2:4], m.MediaID[4:])
		if err := place(staged(m.Path), final, mediaStore, owner); err != nil {
			return fmt.Errorf("media %s: %w", m.MediaID, err)
		}
		var quarantined any
		if m.Quarantined {
			quarantined = quarantinedBy
		}
		if err := b.add(ctx, "local_media_repository", []string{"media_id", "media_type", "media_length", "created_ts", "upload_name", "user_id", "quarantined_by", "authenticated", "sha256"},
			m.MediaID, nullable(m.ContentType), m.Size, m.CreatedTS, nullable(m.UploadName), nullable(m.UserID), quarantined, m.Authenticated, nullable(m.SHA256)); err != nil {
			return err
		}
		n++
		for _, t := range m.Thumbnails {
			if t.Path == "" {
				continue
			}
			name := fmt.Sprintf("%d-%d-%s-%s", t.Width, t.Height, strings.Replace(t.ContentType, "/", "-", 1), t.Method)
			final := filepath.Join(mediaStore, "local_thumbnails", m.MediaID[0:2], m.MediaID[2:4], m.MediaID[4:], name)
			if err := place(staged(t.Path), final, mediaStore, owner); err != nil {
				return fmt.Errorf("thumbnail %s of %s: %w", name, m.MediaID, err)
			}
			if err := b.add(ctx, "local_media_repository_thumbnails", []string{"media_id", "thumbnail_width", "thumbnail_height", "thumbnail_type", "thumbnail_method", "thumbnail_length"},
				m.MediaID, t.Width, t.Height, t.ContentType, t.Method, t.Size); err != nil {
				return err
			}
		}
		return nil
	}
	if r.Manifest().Blobs() == 0 {
		// No file to place (an export without media): the records alone,
		// without a walk through every part.
		err = readSection(ctx, r, archive.SectionMedia, record)
	} else {
		err = r.Walk(ctx, func(f *archive.File) error {
			if f.Blob != nil {
				if !strings.HasPrefix(f.BlobPath, ownFiles) && !strings.HasPrefix(f.BlobPath, ownThumbnails) {
					return nil
				}
				return writeFile(staged(f.BlobPath), f.Blob)
			}
			if f.Entry.Path == "" || !strings.HasPrefix(f.Entry.Path, archive.SectionMedia+".") {
				return nil
			}
			return archive.DecodeRecords(r, f, record)
		})
	}
	if err != nil {
		return 0, fmt.Errorf("restore media: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		return 0, fmt.Errorf("restore media: %w", err)
	}
	return n, nil
}

// writeFile writes r to path (a staging file, replaced if present).
func writeFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// place moves a staged file to its final path, creating directories, and
// gives both to the owner of the media store.
func place(staged, final, mediaStore string, owner fs.FileInfo) error {
	if _, err := os.Stat(staged); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("its file is not in the archive")
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(staged, 0o644); err != nil {
		return err
	}
	if err := os.Rename(staged, final); err != nil {
		return err
	}
	return chownUpTo(final, mediaStore, owner)
}

// chownLike gives path to the owner of dir (when Ferry runs as root).
func chownLike(path, dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	return chownUpTo(path, path, info)
}

// chownUpTo gives path and its parents below top to owner's owner (when
// Ferry runs as root; otherwise the files are Ferry's user's already).
func chownUpTo(final, mediaStore string, owner fs.FileInfo) error {
	if final == mediaStore {
		mediaStore = filepath.Dir(final)
	}
	if st, ok := owner.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		for p := final; p != mediaStore && strings.HasPrefix(p, mediaStore); p = filepath.Dir(p) {
			if err := os.Chown(p, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}
