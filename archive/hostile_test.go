package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// Hostile final parts: each must be refused with a message naming what is
// wrong, without reading (or allocating) what the attacker announces.
func TestHostileParts(t *testing.T) {
	ctx := context.Background()
	final := container.Header{ArchiveID: container.ArchiveID{7}, Index: 0, Last: true}
	cases := []struct {
		name    string
		entries []archivetest.RawEntry
		trailer io.Reader
		want    string
	}{
		{"dot-dot entry", []archivetest.RawEntry{{Name: "../../etc/passwd", Size: 4, Body: strings.NewReader("root")}}, nil, `"../../etc/passwd"`},
		{"absolute entry", []archivetest.RawEntry{{Name: "/etc/passwd", Size: 4, Body: strings.NewReader("root")}}, nil, "absolute path"},
		{"symlink entry", []archivetest.RawEntry{{Name: "m.core.json", Typeflag: tar.TypeSymlink}}, nil, "not a regular file"},
		{"zstd bomb in the manifest", []archivetest.RawEntry{{Name: archive.ManifestFile, Size: 512 << 20, Body: zeros{}}}, nil, "above the limit"},
		{"zstd bomb after the tar end", nil, io.LimitReader(zeros{}, 256<<20), "unexpected data after the tar stream"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			archivetest.CraftPart(t, filepath.Join(dir, container.PartName(0)), final, c.entries, c.trailer)
			_, err := archive.OpenLocation(ctx, dir, archive.OpenOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one mentioning %s", err, c.want)
			}
			if !strings.Contains(err.Error(), "part-00000000") && !strings.Contains(err.Error(), archive.ManifestFile) {
				t.Errorf("error does not say where: %v", err)
			}
		})
	}
}

// A manifest that lies about a file's hash or record count: the reader
// must notice when it reaches the file.
func TestManifestThatDoesNotMatch(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(f *archive.FileEntry)
		want   string
	}{
		{"hash", func(f *archive.FileEntry) { f.SHA256 = strings.Repeat("0", 64) }, "SHA-256"},
		{"count", func(f *archive.FileEntry) { f.Records++ }, "records"},
		{"size", func(f *archive.FileEntry) { f.Size++ }, "bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			archivetest.WriteSample(t, dir, keywrap.Key{}, 10)
			parts, _ := filepath.Glob(filepath.Join(dir, "part-*"))
			last := parts[len(parts)-1]
			manifest, core, h := archivetest.ReadFinalPart(t, last)
			var m map[string]any
			json.Unmarshal(manifest, &m)
			files := m["files"].([]any)
			for _, f := range files {
				fm := f.(map[string]any)
				if strings.HasPrefix(fm["path"].(string), "m.users/") {
					var fe archive.FileEntry
					b, _ := json.Marshal(fm)
					json.Unmarshal(b, &fe)
					tc.change(&fe)
					b, _ = json.Marshal(fe)
					clear(fm)
					json.Unmarshal(b, &fm)
				}
			}
			manifest, _ = json.Marshal(m)
			archivetest.CraftPart(t, last, h, []archivetest.RawEntry{
				{Name: archive.CoreFile, Size: int64(len(core)), Body: bytes.NewReader(core)},
				{Name: archive.ManifestFile, Size: int64(len(manifest)), Body: bytes.NewReader(manifest)},
			}, nil)
			r, err := archive.OpenLocation(ctx, dir, archive.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			err = r.Walk(ctx, func(*archive.File) error { return nil })
			if err == nil || !strings.Contains(err.Error(), "m.users/users.1.cbor") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one naming m.users/users.1.cbor and %s", err, tc.want)
			}
		})
	}
}

// CBOR that announces absurd lengths is refused by the strict decoder
// before anything of that size is allocated.
func TestCBORLengthBombs(t *testing.T) {
	r := archivetest.OpenSample(t)
	for name, data := range map[string][]byte{
		"byte string of 2^62 bytes": {0xa1, 0x67, 'u', 's', 'e', 'r', '_', 'i', 'd', 0x5b, 0x40, 0, 0, 0, 0, 0, 0, 0},
		"array of 2^32 elements":    {0xa1, 0x69, 't', 'h', 'r', 'e', 'e', 'p', 'i', 'd', 's', 0x9b, 0, 0, 0, 1, 0, 0, 0, 0},
		"map of 2^31 pairs":         {0xba, 0x80, 0, 0, 0},
		"indefinite length":         {0xbf, 0xff},
		"duplicate keys":            {0xa2, 0x67, 'u', 's', 'e', 'r', '_', 'i', 'd', 0x61, 'a', 0x67, 'u', 's', 'e', 'r', '_', 'i', 'd', 0x61, 'b'},
		"tag":                       {0xc1, 0x00},
		"deep nesting":              bytes.Repeat([]byte{0x81}, 100),
	} {
		f := &archive.File{Entry: archive.FileEntry{Path: "m.users/users.1.cbor", Records: 1}, Data: data}
		err := archive.DecodeRecords(r, f, func(*archive.User) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "m.users/users.1.cbor") {
			t.Errorf("%s: error = %v", name, err)
		}
	}
}
