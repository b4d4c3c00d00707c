package importer

import (
	"context"
	"fmt"
	"io"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

// CountRecords runs streams (a Source's export of a target) into a sink
// that only counts records per section and blobs: ReadBack's reading.
func CountRecords(ctx context.Context, streams []source.Stream) (map[string]int64, error) {
	c := countingSink{}
	for _, s := range streams {
		if err := s.Run(ctx, nil, c); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	return c, nil
}

type countingSink map[string]int64

func (c countingSink) Record(section string, _ any) error { c[section]++; return nil }
func (c countingSink) Blob(path string, size int64, r io.Reader) (string, error) {
	c["blobs"]++
	_, err := io.Copy(io.Discard, r)
	return "", err
}
func (c countingSink) File(string, []byte, int64, []string) error { return nil }
func (c countingSink) Omit(archive.Omission) error                { return nil }
func (c countingSink) Checkpoint([]byte) error                    { return nil }
