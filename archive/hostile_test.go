package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

type rawEntry struct {
	name     string
	typeflag byte
	size     int64
	body     io.Reader
}

// craftPart writes a plaintext part by hand (bypassing the writer's checks):
// header, then zstd(tar(entries) + trailer).
func craftPart(t *testing.T, path string, h container.Header, entries []rawEntry, trailer io.Reader) {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(h.Marshal())
	zw, _ := zstd.NewWriter(&buf, zstd.WithEncoderCRC(true))
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		tf := e.typeflag
		if tf == 0 {
			tf = tar.TypeReg
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tf, Size: e.size, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if e.size > 0 {
			if _, err := io.CopyN(tw, e.body, e.size); err != nil {
				t.Fatal(err)
			}
		}
	}
	tw.Close()
	if trailer != nil {
		io.Copy(zw, trailer)
	}
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// Hostile final parts: each must be refused with a message naming what is
// wrong, without reading (or allocating) what the attacker announces.
func TestHostileParts(t *testing.T) {
	ctx := context.Background()
	final := container.Header{ArchiveID: container.ArchiveID{7}, Index: 0, Last: true}
	cases := []struct {
		name    string
		entries []rawEntry
		trailer io.Reader
		want    string
	}{
		{"dot-dot entry", []rawEntry{{name: "../../etc/passwd", size: 4, body: strings.NewReader("root")}}, nil, `"../../etc/passwd"`},
		{"absolute entry", []rawEntry{{name: "/etc/passwd", size: 4, body: strings.NewReader("root")}}, nil, "absolute path"},
		{"symlink entry", []rawEntry{{name: "m.core.json", typeflag: tar.TypeSymlink}}, nil, "not a regular file"},
		{"zstd bomb in the manifest", []rawEntry{{name: archive.ManifestFile, size: 512 << 20, body: zeros{}}}, nil, "above the limit"},
		{"zstd bomb after the tar end", nil, io.LimitReader(zeros{}, 256<<20), "unexpected data after the tar stream"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			craftPart(t, filepath.Join(dir, container.PartName(0)), final, c.entries, c.trailer)
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
			manifest, core, h := readFinalPart(t, last)
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
			craftPart(t, last, h, []rawEntry{
				{name: archive.CoreFile, size: int64(len(core)), body: bytes.NewReader(core)},
				{name: archive.ManifestFile, size: int64(len(manifest)), body: bytes.NewReader(manifest)},
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

func readFinalPart(t *testing.T, path string) (manifest, core []byte, h container.Header) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := container.OpenPart(f, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	for {
		e, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(e)
		switch e.Name {
		case archive.ManifestFile:
			manifest = data
		case archive.CoreFile:
			core = data
		}
	}
	return manifest, core, pr.Header()
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
