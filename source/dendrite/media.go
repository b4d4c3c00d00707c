package dendrite

import (
	"context"
	"database/sql"
	"encoding/json"
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

// mediaStream exports media with their files and thumbnails, from
// media_api.base_path: <hash[0]>/<hash[1]>/<hash[2:]>/file and
// .../thumbnail-<w>x<h>-<method>. MediaAll is every local file (with a
// user selection, those the users uploaded); MediaReferenced the local
// files and cached remote copies that the exported events of rooms sel
// and the selected users' avatars name (referencedMedia).
func (s *Source) mediaStream(f source.Filter, sel roomSet) source.Stream {
	return source.Stream{Name: source.StreamMedia,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			mode := f.MediaMode()
			if mode == source.MediaNone {
				return nil
			}
			type item struct {
				media archive.Media
				hash  string
			}
			var items []item
			cond, args := "media_origin = ?", []any{s.info.ServerName}
			var referenced map[[2]string]bool
			switch {
			case mode == source.MediaReferenced:
				var err error
				if referenced, err = s.referencedMedia(ctx, f, sel); err != nil {
					return err
				}
				cond, args = "1=1", nil
			case len(f.Users) > 0:
				// With a user selection, the media those users uploaded.
				cond += " AND user_id IN (" + strings.TrimSuffix(strings.Repeat("?,", len(f.Users)), ",") + ")"
				for _, u := range f.Users {
					args = append(args, u)
				}
			}
			err := s.mediaapi.each(ctx, `SELECT media_id, media_origin, content_type, file_size_bytes, creation_ts, upload_name, base64hash, user_id
				FROM mediaapi_media_repository WHERE `+cond+` ORDER BY media_origin, media_id`, args, func(rows *sql.Rows) error {
				var it item
				m := &it.media
				if err := rows.Scan(&m.MediaID, &m.Origin, &m.ContentType, &m.Size, &m.CreatedTS, &m.UploadName, &it.hash, &m.UserID); err != nil {
					return err
				}
				if referenced == nil || referenced[[2]string{m.Origin, m.MediaID}] {
					items = append(items, it)
				}
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

// receiptsStream exports read receipts (with users, only theirs).
func (s *Source) receiptsStream(sel roomSet, users []string) source.Stream {
	return source.Stream{Name: source.StreamReceipts,
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			return s.syncapi.each(ctx, `SELECT room_id, receipt_type, user_id, event_id, receipt_ts FROM syncapi_receipts ORDER BY room_id, user_id, receipt_type`, nil,
				func(rows *sql.Rows) error {
					var r archive.Receipt
					if err := rows.Scan(&r.RoomID, &r.Type, &r.UserID, &r.EventID, &r.TS); err != nil {
						return err
					}
					if !sel.has(r.RoomID) || !s.wantUser(users, r.UserID) {
						return nil
					}
					return sink.Record(archive.SectionReceipts, &r)
				})
		}}
}

// mxcPattern finds mxc:// URIs (server name, media ID) in JSON text.
var mxcPattern = regexp.MustCompile(`mxc://([A-Za-z0-9.\-:\[\]]+)/([A-Za-z0-9_\-]+)`)

// referencedMedia finds the media that the exported events of rooms sel
// name in their content (redacted events, kept redacted, name none) and
// the avatars of the exported users (accounts: see Streams).
func (s *Source) referencedMedia(ctx context.Context, f source.Filter, sel roomSet) (map[[2]string]bool, error) {
	found := map[[2]string]bool{}
	add := func(text string) {
		for _, m := range mxcPattern.FindAllStringSubmatch(text, -1) {
			found[[2]string{m[1], m[2]}] = true
		}
	}
	// Pages of event NIDs up to the high-water mark: short reads (see
	// component). SQLite keeps event_json as a blob, which LIKE does not
	// match: hence the cast.
	const page = 5000
	for after := int64(0); after < s.maxEventNID; after += page {
		err := s.roomserver.each(ctx, `SELECT r.room_id, j.event_json FROM roomserver_events e
			JOIN roomserver_rooms r ON r.room_nid = e.room_nid JOIN roomserver_event_json j ON j.event_nid = e.event_nid
			WHERE e.event_nid > ? AND e.event_nid <= ? AND CAST(j.event_json AS TEXT) LIKE '%mxc://%'
			AND NOT EXISTS (SELECT 1 FROM roomserver_redactions x WHERE x.redacts_event_id = e.event_id AND x.validated)`,
			[]any{after, min(after+page, s.maxEventNID)}, func(rows *sql.Rows) error {
				var room, js string
				if err := rows.Scan(&room, &js); err != nil {
					return err
				}
				var ev struct {
					Content json.RawMessage `json:"content"`
				}
				if sel.has(room) && json.Unmarshal([]byte(js), &ev) == nil {
					add(string(ev.Content))
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
	}
	if len(f.Rooms) == 0 || len(f.Users) > 0 {
		cond, args := s.userFilter(f.Users)
		err := s.userapi.each(ctx, `SELECT COALESCE(p.avatar_url, '') FROM userapi_profiles p JOIN userapi_accounts a
			ON a.localpart = p.localpart AND a.server_name = p.server_name WHERE p.server_name = ? AND `+cond,
			append([]any{s.info.ServerName}, args...), func(rows *sql.Rows) error {
				var url string
				if err := rows.Scan(&url); err != nil {
					return err
				}
				add(url)
				return nil
			})
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}
