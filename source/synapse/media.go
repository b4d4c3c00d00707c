package synapse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"gocloud.dev/gcerrors"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

// mediaIDPattern is what Synapse generates (and what is safe as a path).
var mediaIDPattern = regexp.MustCompile(`^[A-Za-z0-9_\-]{1,255}$`)

// serverNamePattern is a server name safe as a path segment.
var serverNamePattern = regexp.MustCompile(`^[A-Za-z0-9.\-:\[\]]{1,255}$`)

var mxcPattern = regexp.MustCompile(`mxc://([A-Za-z0-9.\-:\[\]]+)/([A-Za-z0-9_\-]+)`)

type mediaThumb struct {
	Width  int    `json:"w"`
	Height int    `json:"h"`
	Type   string `json:"t"`
	Method string `json:"m"`
	Length int64  `json:"l"`
}

// thumbnailName is Synapse's file name of a thumbnail: w-h-type-subtype-method.
func thumbnailName(t mediaThumb) string {
	return fmt.Sprintf("%d-%d-%s-%s", t.Width, t.Height, strings.Replace(t.Type, "/", "-", 1), t.Method)
}

// localContentPath is where Synapse keeps a local file: local_content/AB/CD/rest.
func localContentPath(id string) string {
	return "local_content/" + id[0:2] + "/" + id[2:4] + "/" + id[4:]
}

func localThumbnailPath(id string, t mediaThumb) string {
	return "local_thumbnails/" + id[0:2] + "/" + id[2:4] + "/" + id[4:] + "/" + thumbnailName(t)
}

func remoteContentPath(origin, fsid string) string {
	return "remote_content/" + origin + "/" + fsid[0:2] + "/" + fsid[2:4] + "/" + fsid[4:]
}

func remoteThumbnailPath(origin, fsid string, t mediaThumb) string {
	return "remote_thumbnail/" + origin + "/" + fsid[0:2] + "/" + fsid[2:4] + "/" + fsid[4:] + "/" + thumbnailName(t)
}

// mediaStream emits media metadata and, with a media store, the files:
// all local media, or only what exported events and profiles reference
// (local and cached remote), or nothing.
func (p *plan) mediaStream() source.Stream {
	s := p.s
	return source.Stream{
		Name: source.StreamMedia,
		Count: func(ctx context.Context) (int64, error) {
			if p.f.MediaMode() != source.MediaAll {
				return 0, nil // unknown until referenced media are found
			}
			return s.count(ctx, `SELECT count(*) FROM local_media_repository WHERE ($1::text[] IS NULL OR user_id = ANY($1))`, p.users)
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			switch p.f.MediaMode() {
			case source.MediaNone:
				return nil
			case source.MediaAll:
				return p.localMedia(ctx, nil, sink)
			}
			local, remote, err := p.referencedMedia(ctx)
			if err != nil {
				return err
			}
			if err := p.localMedia(ctx, local, sink); err != nil {
				return err
			}
			return p.remoteMedia(ctx, remote, sink)
		},
	}
}

// referencedMedia finds the mxc:// URIs in the exported events (as
// exported: redacted content does not count) and the exported users'
// profiles.
func (p *plan) referencedMedia(ctx context.Context) (local []string, remote map[string][]string, err error) {
	s := p.s
	found := map[[2]string]bool{}
	add := func(text string) {
		for _, m := range mxcPattern.FindAllStringSubmatch(text, -1) {
			found[[2]string{m[1], m[2]}] = true
		}
	}
	err = s.each(ctx, `SELECT j.json, EXISTS (SELECT 1 FROM redactions r WHERE r.redacts = e.event_id)
		FROM events e JOIN event_json j ON j.event_id = e.event_id WHERE `+p.eventCond()+` AND j.json LIKE '%mxc://%'`, p.eventArgs(), func(rows pgx.Rows) error {
		var js string
		var redacted bool
		if err := rows.Scan(&js, &redacted); err != nil {
			return err
		}
		var ev struct {
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal([]byte(js), &ev) != nil {
			return nil
		}
		if redacted {
			// Redaction keeps only some keys; an avatar URL of a member
			// event is not among them, so references in redacted events
			// are dropped with the content.
			return nil
		}
		add(string(ev.Content))
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if p.users != nil || len(p.f.Rooms) == 0 { // the exported users' avatars
		avatars, err := s.strings(ctx, `SELECT avatar_url FROM profiles pr JOIN users u ON pr.user_id = `+localpartSQL+`
			WHERE ($1::text[] IS NULL OR u.name = ANY($1)) AND avatar_url IS NOT NULL`, p.users)
		if err != nil {
			return nil, nil, err
		}
		for _, a := range avatars {
			add(a)
		}
	}
	remote = map[string][]string{}
	for k := range found {
		if k[0] == s.info.ServerName {
			local = append(local, k[1])
		} else {
			remote[k[0]] = append(remote[k[0]], k[1])
		}
	}
	sort.Strings(local)
	if local == nil {
		local = []string{} // none referenced: select nothing, not everything
	}
	return local, remote, nil
}

// localMedia emits local media: ids selects (nil: all, or the selected
// users' uploads).
func (p *plan) localMedia(ctx context.Context, ids []string, sink source.Sink) error {
	s := p.s
	authenticated := s.optional("local_media_repository", "authenticated", "COALESCE(m.authenticated, false)", "false")
	sha := s.optional("local_media_repository", "sha256", "COALESCE(m.sha256, '')", "''")
	type item struct {
		media  archive.Media
		thumbs []mediaThumb
	}
	// Rows are collected per batch so that files are read between queries
	// (the snapshot's connection serves one query at a time).
	var batch []item
	var after string
	present := map[string]bool{}
	for {
		batch = batch[:0]
		err := s.each(ctx, `SELECT m.media_id, COALESCE(m.media_type, ''), COALESCE(m.media_length, 0), COALESCE(m.created_ts, 0),
			COALESCE(m.upload_name, ''), COALESCE(m.user_id, ''), m.quarantined_by IS NOT NULL, `+authenticated+`, `+sha+`,
			(SELECT json_agg(json_build_object('w', t.thumbnail_width, 'h', t.thumbnail_height, 't', t.thumbnail_type,
				'm', t.thumbnail_method, 'l', t.thumbnail_length) ORDER BY t.thumbnail_width, t.thumbnail_height, t.thumbnail_type, t.thumbnail_method)
			 FROM local_media_repository_thumbnails t WHERE t.media_id = m.media_id)
			FROM local_media_repository m
			WHERE ($1::text[] IS NULL OR m.media_id = ANY($1)) AND ($2::text[] IS NULL OR m.user_id = ANY($2) OR $1::text[] IS NOT NULL)
			AND m.media_id > $3 ORDER BY m.media_id LIMIT 200`, []any{ids, p.users, after}, func(rows pgx.Rows) error {
			var it item
			var thumbs []byte
			m := &it.media
			m.Origin = s.info.ServerName
			if err := rows.Scan(&m.MediaID, &m.ContentType, &m.Size, &m.CreatedTS, &m.UploadName, &m.UserID, &m.Quarantined,
				&m.Authenticated, &m.SHA256, &thumbs); err != nil {
				return err
			}
			if len(thumbs) > 0 {
				if err := json.Unmarshal(thumbs, &it.thumbs); err != nil {
					return fmt.Errorf("thumbnails of %s: %w", m.MediaID, err)
				}
			}
			batch = append(batch, it)
			return nil
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			break
		}
		for i := range batch {
			it := &batch[i]
			after = it.media.MediaID
			present[it.media.MediaID] = true
			if err := p.emitMedia(ctx, sink, &it.media, it.thumbs, localContentPath, localThumbnailPath, it.media.MediaID); err != nil {
				return err
			}
		}
	}
	for _, id := range ids {
		if !present[id] {
			if err := omit(sink, "source_missing", archive.SectionMedia, "mxc://"+s.info.ServerName+"/"+id,
				"referenced by an exported event, but not in the media repository (deleted?)"); err != nil {
				return err
			}
		}
	}
	return nil
}

// remoteMedia emits cached copies of remote media referenced by the export.
func (p *plan) remoteMedia(ctx context.Context, remote map[string][]string, sink source.Sink) error {
	s := p.s
	origins := make([]string, 0, len(remote))
	for o := range remote {
		origins = append(origins, o)
	}
	sort.Strings(origins)
	for _, origin := range origins {
		ids := remote[origin]
		sort.Strings(ids)
		type item struct {
			media  archive.Media
			fsid   string
			thumbs []mediaThumb
		}
		var items []item
		err := s.each(ctx, `SELECT m.media_id, COALESCE(m.media_type, ''), COALESCE(m.media_length, 0), COALESCE(m.created_ts, 0),
			COALESCE(m.upload_name, ''), m.quarantined_by IS NOT NULL, COALESCE(m.filesystem_id, ''),
			(SELECT json_agg(json_build_object('w', t.thumbnail_width, 'h', t.thumbnail_height, 't', t.thumbnail_type,
				'm', t.thumbnail_method, 'l', t.thumbnail_length)) FROM remote_media_cache_thumbnails t
			 WHERE t.media_origin = m.media_origin AND t.media_id = m.media_id)
			FROM remote_media_cache m WHERE m.media_origin = $1 AND m.media_id = ANY($2) ORDER BY m.media_id`, []any{origin, ids}, func(rows pgx.Rows) error {
			var it item
			var thumbs []byte
			it.media.Origin = origin
			if err := rows.Scan(&it.media.MediaID, &it.media.ContentType, &it.media.Size, &it.media.CreatedTS, &it.media.UploadName,
				&it.media.Quarantined, &it.fsid, &thumbs); err != nil {
				return err
			}
			if len(thumbs) > 0 {
				if err := json.Unmarshal(thumbs, &it.thumbs); err != nil {
					return fmt.Errorf("thumbnails of mxc://%s/%s: %w", origin, it.media.MediaID, err)
				}
			}
			items = append(items, it)
			return nil
		})
		if err != nil {
			return err
		}
		present := map[string]bool{}
		for i := range items {
			it := &items[i]
			present[it.media.MediaID] = true
			fsid := it.fsid
			err := p.emitMedia(ctx, sink, &it.media, it.thumbs,
				func(string) string { return remoteContentPath(origin, fsid) },
				func(_ string, t mediaThumb) string { return remoteThumbnailPath(origin, fsid, t) }, fsid)
			if err != nil {
				return err
			}
		}
		for _, id := range ids {
			if !present[id] {
				if err := omit(sink, "source_missing", archive.SectionMedia, "mxc://"+origin+"/"+id,
					"remote media referenced by an exported event and not cached by this server"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// emitMedia copies a media file and its thumbnails from the media store
// (when there is one) and emits the media record. A missing or unreadable
// file is reported, not fatal.
func (p *plan) emitMedia(ctx context.Context, sink source.Sink, m *archive.Media, thumbs []mediaThumb,
	filePath func(string) string, thumbPath func(string, mediaThumb) string, fileKey string) error {
	mxc := "mxc://" + m.Origin + "/" + m.MediaID
	if !mediaIDPattern.MatchString(m.MediaID) || !serverNamePattern.MatchString(m.Origin) || len(fileKey) < 5 || !mediaIDPattern.MatchString(fileKey) {
		return omit(sink, "source_corrupt", archive.SectionMedia, mxc, "media ID or file name has characters Synapse does not generate: not exported")
	}
	for _, t := range thumbs {
		m.Thumbnails = append(m.Thumbnails, archive.Thumbnail{Width: t.Width, Height: t.Height, Method: t.Method, ContentType: t.Type, Size: t.Length})
	}
	if p.s.media != nil {
		size, sum, err := p.copyFile(ctx, sink, filePath(fileKey), archive.MediaBlobPath(m.Origin, m.MediaID, ""))
		switch {
		case err == nil:
			m.Size, m.SHA256, m.Path = size, sum, archive.MediaBlobPath(m.Origin, m.MediaID, "")
		case errors.Is(err, errMissingFile):
			if err := omit(sink, "source_missing", archive.SectionMedia, mxc, "file missing from the media store: "+filePath(fileKey)); err != nil {
				return err
			}
		default:
			return err
		}
		for i, t := range thumbs {
			name := thumbnailName(t)
			if strings.ContainsAny(name, "/\\") || strings.Contains(name, "..") {
				continue
			}
			path := archive.MediaBlobPath(m.Origin, m.MediaID, name)
			size, sum, err := p.copyFile(ctx, sink, thumbPath(fileKey, t), path)
			switch {
			case err == nil:
				m.Thumbnails[i].Size, m.Thumbnails[i].SHA256, m.Thumbnails[i].Path = size, sum, path
			case errors.Is(err, errMissingFile):
				if err := omit(sink, "source_missing", archive.SectionMedia, mxc, "thumbnail missing from the media store: "+name); err != nil {
					return err
				}
			default:
				return err
			}
		}
	}
	return sink.Record(archive.SectionMedia, m)
}

var errMissingFile = errors.New("missing from the media store")

func (p *plan) copyFile(ctx context.Context, sink source.Sink, storePath, archivePath string) (int64, string, error) {
	b := p.s.media
	attrs, err := b.Attributes(ctx, storePath)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return 0, "", errMissingFile
	}
	if err != nil {
		return 0, "", fmt.Errorf("media store %s: %w", storePath, err)
	}
	r, err := b.NewReader(ctx, storePath, nil)
	if err != nil {
		return 0, "", fmt.Errorf("media store %s: %w", storePath, err)
	}
	defer r.Close()
	sum, err := sink.Blob(archivePath, attrs.Size, io.LimitReader(r, attrs.Size))
	if err != nil {
		return 0, "", fmt.Errorf("media %s: %w", storePath, err)
	}
	return attrs.Size, sum, nil
}
