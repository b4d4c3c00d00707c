package dendrite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

var safeName = regexp.MustCompile(`^[A-Za-z0-9_\-]{1,255}$`)

// mediaStream exports local media (with a user selection: the media
// those users uploaded) with their files and thumbnails, from
// media_api.base_path: <hash[0]>/<hash[1]>/<hash[2:]>/file and
// .../thumbnail-<w>x<h>-<method>.
func (s *Source) mediaStream(f source.Filter) source.Stream {
	return source.Stream{Name: "media",
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			if f.MediaMode() == source.MediaNone {
				return nil
			}
			type item struct {
				media archive.Media
				hash  string
			}
			var items []item
			// With a user selection, the media those users uploaded.
			cond, args := "1=1", []any{s.info.ServerName}
			if len(f.Users) > 0 {
				cond = "user_id IN (" + strings.TrimSuffix(strings.Repeat("?,", len(f.Users)), ",") + ")"
				for _, u := range f.Users {
					args = append(args, u)
				}
			}
			err := s.mediaapi.each(ctx, `SELECT media_id, media_origin, content_type, file_size_bytes, creation_ts, upload_name, base64hash, user_id
				FROM mediaapi_media_repository WHERE media_origin = ? AND `+cond+` ORDER BY media_id`, args, func(rows *sql.Rows) error {
				var it item
				m := &it.media
				if err := rows.Scan(&m.MediaID, &m.Origin, &m.ContentType, &m.Size, &m.CreatedTS, &m.UploadName, &it.hash, &m.UserID); err != nil {
					return err
				}
				items = append(items, it)
				return nil
			})
			if err != nil {
				return err
			}
			base := s.path(s.cfg.MediaAPI.BasePath)
			for i := range items {
				m, hash := &items[i].media, items[i].hash
				mxc := "mxc://" + m.Origin + "/" + m.MediaID
				if !safeName.MatchString(m.MediaID) || len(hash) < 3 || !safeName.MatchString(hash) {
					if err := sink.Omit(archive.Omission{Code: "source_corrupt", Item: archive.SectionMedia, ID: mxc, Detail: "media ID or hash not safe as a path"}); err != nil {
						return err
					}
					continue
				}
				dir := filepath.Join(base, hash[0:1], hash[1:2], hash[2:])
				path := archive.MediaBlobPath(m.Origin, m.MediaID, "")
				sum, size, err := copyFile(sink, filepath.Join(dir, "file"), path)
				switch {
				case err == nil:
					m.Path, m.SHA256, m.Size = path, sum, size
				case errors.Is(err, os.ErrNotExist):
					if err := sink.Omit(archive.Omission{Code: "source_missing", Item: archive.SectionMedia, ID: mxc, Detail: "file missing from the media directory"}); err != nil {
						return err
					}
				default:
					return err
				}
				var thumbs []archive.Thumbnail
				err = s.mediaapi.each(ctx, `SELECT content_type, file_size_bytes, width, height, resize_method FROM mediaapi_thumbnail
					WHERE media_id = ? AND media_origin = ? ORDER BY width, height, resize_method`, []any{m.MediaID, m.Origin}, func(rows *sql.Rows) error {
					var t archive.Thumbnail
					if err := rows.Scan(&t.ContentType, &t.Size, &t.Width, &t.Height, &t.Method); err != nil {
						return err
					}
					thumbs = append(thumbs, t)
					return nil
				})
				if err != nil {
					return err
				}
				for _, t := range thumbs {
					name := fmt.Sprintf("thumbnail-%dx%d-%s", t.Width, t.Height, t.Method)
					if !safeName.MatchString(t.Method) {
						continue
					}
					tp := archive.MediaBlobPath(m.Origin, m.MediaID, name)
					if sum, size, err := copyFile(sink, filepath.Join(dir, name), tp); err == nil {
						t.Path, t.SHA256, t.Size = tp, sum, size
					} else if !errors.Is(err, os.ErrNotExist) {
						return err
					}
					m.Thumbnails = append(m.Thumbnails, t)
				}
				if err := sink.Record(archive.SectionMedia, m); err != nil {
					return err
				}
			}
			return nil
		}}
}

func copyFile(sink source.Sink, path, archivePath string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	sum, err := sink.Blob(archivePath, st.Size(), io.LimitReader(f, st.Size()))
	return sum, st.Size(), err
}

// receiptsStream exports read receipts.
func (s *Source) receiptsStream(sel roomSet) source.Stream {
	return source.Stream{Name: "receipts",
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			return s.syncapi.each(ctx, `SELECT room_id, receipt_type, user_id, event_id, receipt_ts FROM syncapi_receipts ORDER BY room_id, user_id, receipt_type`, nil,
				func(rows *sql.Rows) error {
					var r archive.Receipt
					if err := rows.Scan(&r.RoomID, &r.Type, &r.UserID, &r.EventID, &r.TS); err != nil {
						return err
					}
					if !sel.has(r.RoomID) {
						return nil
					}
					return sink.Record(archive.SectionReceipts, &r)
				})
		}}
}
