package container

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Pack copies a local part straight from its file (copy_file_range into
// a file), and the packed bytes are the same as through any writer: the
// magic, then each part's length and bytes.
func TestPackCopiesLocalPartsFromTheirFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	parts := [][]byte{make([]byte, 3<<20+17), make([]byte, 100)}
	for i, p := range parts {
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, PartName(i)), p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r, err := src.OpenPart(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := partFile(r).(*os.File); !ok {
		t.Errorf("a local part is copied from a %T, not its file", partFile(r))
	}
	r.Close()

	want := bytes.NewBuffer(append([]byte(nil), packMagic...))
	for _, p := range parts {
		want.Write(binary.BigEndian.AppendUint64(nil, uint64(len(p))))
		want.Write(p)
	}
	out := filepath.Join(t.TempDir(), "a.ferry")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Pack(ctx, src, f)
	if err != nil || n != int64(want.Len()) {
		t.Fatalf("packed into a file: %d bytes, %v; want %d", n, err, want.Len())
	}
	f.Close()
	var buf bytes.Buffer
	if _, err := Pack(ctx, src, struct{ io.Writer }{&buf}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) || !bytes.Equal(buf.Bytes(), want.Bytes()) {
		t.Fatalf("packed bytes differ: %d into a file, %d into a writer, want %d", len(got), buf.Len(), want.Len())
	}
}
