package exporter_test

import (
	"testing"

	"github.com/ferry-matrix/ferry/exporter"
)

// The share done never compares all records with some streams' counts
// (a Dendrite export showed "media: 53/4 records", 100% after two streams).
func TestProgressFraction(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    exporter.Progress
		want float64
	}{
		{"every stream counted", exporter.Progress{Streams: 2, Records: 30, Total: 120}, 0.25},
		{"an uncounted stream running", exporter.Progress{Streams: 4, Done: 2, Records: 53, StreamRecords: 49}, 0.5},
		{"a counted stream half done", exporter.Progress{Streams: 4, Done: 1, Records: 53, StreamRecords: 2, StreamTotal: 4}, 0.375},
		{"all done", exporter.Progress{Streams: 4, Done: 4, Records: 53}, 1},
	} {
		if got := tc.p.Fraction(); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
