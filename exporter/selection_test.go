package exporter

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/source"
)

func TestSelectionValidate(t *testing.T) {
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		sel    Selection
		fields []string // of the problems, in order; none: valid
		typ    string   // ArchiveType when valid
	}{
		{Selection{}, nil, TypeFull},
		{Selection{Type: TypeFull, Media: source.MediaNone}, nil, TypePartial}, // no media: not the whole server's archive
		{Selection{Type: TypePartial, Rooms: []string{"!a:x"}}, nil, TypePartial},
		{Selection{Users: []string{"@u:x"}, Since: day, Until: day.Add(time.Hour)}, nil, TypePartial},
		{Selection{Media: source.MediaReferenced}, nil, TypePartial},
		{Selection{Type: "weekly"}, []string{"type"}, ""},
		{Selection{Type: TypeFull, Rooms: []string{"!a:x"}}, []string{"type"}, ""},
		{Selection{Type: TypeFull, Media: source.MediaReferenced}, []string{"media"}, ""},
		{Selection{Type: TypePartial, Media: source.MediaAll}, []string{"rooms"}, ""},
		{Selection{Rooms: []string{"#alias:x", "!ok:x", "!"}, Users: []string{"bob"}}, []string{"rooms[0]", "rooms[2]", "users[0]"}, ""},
		{Selection{Rooms: []string{"!a:x"}, Media: "some"}, []string{"media"}, ""},
		{Selection{Since: day, Until: day}, []string{"until"}, ""},
	} {
		err := c.sel.Validate()
		var fields []string
		if err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var se *SelectionError
				if !errors.As(e, &se) {
					t.Fatalf("%+v: %T %v", c.sel, e, e)
				}
				fields = append(fields, se.Field)
			}
		}
		if strings.Join(fields, ",") != strings.Join(c.fields, ",") {
			t.Errorf("%+v: problems %v (%v), want %v", c.sel, fields, err, c.fields)
		}
		if err == nil && ArchiveType(c.sel, "") != c.typ {
			t.Errorf("%+v: type %s, want %s", c.sel, ArchiveType(c.sel, ""), c.typ)
		}
	}
	if ArchiveType(Selection{}, "@u:x") != TypeUser {
		t.Error("a personal export is not of type user")
	}
}

// Check is the source's capabilities' refusal, whatever surface asks.
func TestSelectionCheck(t *testing.T) {
	caps := source.Capabilities{Implementation: "dendrite", Rooms: true, Users: true, ReferencedMedia: true}
	err := Selection{Rooms: []string{"!a:x"}, Since: time.Now()}.Check(caps)
	if !errors.Is(err, source.ErrUnsupported) || !strings.Contains(err.Error(), "dendrite") || !strings.Contains(err.Error(), "time range") {
		t.Errorf("time range on a source without: %v", err)
	}
	if err := (Selection{Rooms: []string{"!a:x"}}).Check(caps); err != nil {
		t.Errorf("rooms with referenced media: %v", err)
	}
	if err := (Selection{Media: source.MediaReferenced}).Check(source.Capabilities{}); !errors.Is(err, source.ErrUnsupported) {
		t.Errorf("referenced media on a source without: %v", err)
	}
}
