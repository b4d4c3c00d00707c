package archive

import (
	"context"
	"encoding/json"
)

// Summary counts what an archive holds, beyond the manifest's per-file
// counts: events per room and per type, media and their bytes.
type Summary struct {
	Sections     map[string]int64  `json:"sections"`       // records per section (and files of other items)
	EventsByRoom map[string]int64  `json:"events_by_room"` // room ID -> events
	EventsByType map[string]int64  `json:"events_by_type"` // event type -> events
	RoomVersions map[string]string `json:"room_versions"`  // room ID -> version
	Media        int64             `json:"media"`
	MediaBytes   int64             `json:"media_bytes"` // of the files the archive holds
	Thumbnails   int64             `json:"thumbnails"`
}

// Summarize reads the rooms, events and media sections (and only the parts
// that hold them) and counts. Memory grows with rooms and event types, not
// events.
func Summarize(ctx context.Context, r *Reader) (*Summary, error) {
	s := &Summary{Sections: map[string]int64{}, EventsByRoom: map[string]int64{}, EventsByType: map[string]int64{}, RoomVersions: map[string]string{}}
	m := r.Manifest()
	for _, f := range m.Files {
		s.Sections[SectionOf(f.Path)] += f.Records
	}
	for _, p := range m.Parts {
		s.MediaBytes += p.BlobBytes
	}
	if m.ItemKnown("m.rooms") {
		if err := ReadSection(ctx, r, SectionRooms, func(room *Room) error {
			s.RoomVersions[room.RoomID] = room.Version
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if m.ItemKnown("m.events") {
		if err := ReadSection(ctx, r, SectionEvents, func(e *Event) error {
			var ev struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(e.JSON, &ev) // a malformed event counts under ""; Validate reports it
			s.EventsByRoom[e.RoomID]++
			s.EventsByType[ev.Type]++
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if m.ItemKnown("m.media") {
		if err := ReadSection(ctx, r, SectionMedia, func(md *Media) error {
			s.Media++
			s.Thumbnails += int64(len(md.Thumbnails))
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return s, nil
}
