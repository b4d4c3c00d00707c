package archive_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// FuzzOpen feeds arbitrary bytes to the packed-archive reader: it must
// return an error or a verified archive, never panic or hang.
func FuzzOpen(f *testing.F) {
	f.Add(writeSample(f, f.TempDir(), keywrap.Key{}))
	f.Add([]byte("FRYPACK1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		src, err := container.OpenPack("fuzz", bytes.NewReader(data), int64(len(data)), nil)
		if err != nil {
			return
		}
		r, err := archive.Open(ctx, src, archive.OpenOptions{})
		if err != nil {
			return
		}
		_ = r.Walk(ctx, func(f *archive.File) error { return nil })
	})
}
