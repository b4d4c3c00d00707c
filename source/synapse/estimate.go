package synapse

import (
	"context"
	"fmt"

	"github.com/ferry-matrix/ferry/source"
)

// eventBytesRatio is how many archive bytes a byte of stored event JSON
// becomes (CBOR framing plus zstd's fastest level), measured on the
// fixture (0.26 at zstd default level) and the 1M-event benchmark
// database (0.31 at the fastest level exports use).
const eventBytesRatio = 0.28

// EstimateSize predicts the archive size: the selected events' JSON
// scaled by eventBytesRatio, plus the media files as they are (images and
// most uploads do not compress), plus a little for everything else.
func (s *Source) EstimateSize(ctx context.Context, f source.Filter, o source.Options) (int64, error) {
	p := &plan{s: s, f: f, o: o, users: nilIfEmpty(f.Users), rooms: nilIfEmpty(f.Rooms)}
	if !f.Since.IsZero() {
		p.since = f.Since.UnixMilli()
	}
	if !f.Until.IsZero() {
		p.until = f.Until.UnixMilli()
	}
	if p.users != nil && p.rooms == nil {
		rooms, err := s.strings(ctx, `SELECT DISTINCT room_id FROM current_state_events WHERE type = 'm.room.member' AND state_key = ANY($1)`, p.users)
		if err != nil {
			return 0, err
		}
		p.rooms = append([]string{}, rooms...)
	}
	jsonBytes, err := p.eventJSONBytes(ctx)
	if err != nil {
		return 0, err
	}
	var media int64
	switch f.MediaMode() {
	case source.MediaAll:
		if err := s.tx.QueryRow(ctx, `SELECT COALESCE(sum(m.media_length), 0) + COALESCE(sum((SELECT sum(t.thumbnail_length)
			FROM local_media_repository_thumbnails t WHERE t.media_id = m.media_id)), 0)
			FROM local_media_repository m WHERE ($1::text[] IS NULL OR m.user_id = ANY($1))`, p.users).Scan(&media); err != nil {
			return 0, err
		}
	case source.MediaReferenced:
		local, _, err := p.referencedMedia(ctx)
		if err != nil {
			return 0, err
		}
		if err := s.tx.QueryRow(ctx, `SELECT COALESCE(sum(m.media_length), 0) + COALESCE(sum((SELECT sum(t.thumbnail_length)
			FROM local_media_repository_thumbnails t WHERE t.media_id = m.media_id)), 0)
			FROM local_media_repository m WHERE m.media_id = ANY($1)`, local).Scan(&media); err != nil {
			return 0, err
		}
	}
	return int64(float64(jsonBytes)*eventBytesRatio) + media + 16<<10, nil
}

// eventJSONBytes estimates the stored JSON of the selected events: their
// number (the server's, from the planner's statistics, for a whole server)
// times the average JSON size in PostgreSQL's statistics. Summing the
// JSON itself would read what the export then reads again: for a room of
// 15% of a 1M-event server that took 1.2 s before the export began, 0.6 s
// for a 5% room and a seventh of the whole 1M-event export. A table
// never analysed has no statistics, and its JSON is summed.
func (p *plan) eventJSONBytes(ctx context.Context) (int64, error) {
	s := p.s
	var avg *float64
	var tuples float64
	if err := s.tx.QueryRow(ctx, `SELECT (SELECT avg_width::float8 FROM pg_stats WHERE schemaname = current_schema()
			AND tablename = 'event_json' AND attname = 'json'),
		(SELECT reltuples FROM pg_class WHERE oid = 'events'::regclass)`).Scan(&avg, &tuples); err != nil {
		return 0, fmt.Errorf("read the statistics of event_json: %w", err)
	}
	if avg == nil {
		var n int64
		err := s.tx.QueryRow(ctx, `SELECT COALESCE(sum(octet_length(j.json)), 0) FROM events e JOIN event_json j ON j.event_id = e.event_id
			WHERE `+p.eventCond(), p.eventArgs()...).Scan(&n)
		return n, err
	}
	if !p.selective() && tuples > 0 {
		return int64(tuples * *avg), nil
	}
	n, err := p.countSelected(ctx)
	return int64(float64(n) * *avg), err
}
