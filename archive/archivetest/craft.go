package archivetest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
)

// RawEntry is one tar entry of a hand-made part.
type RawEntry struct {
	Name     string
	Typeflag byte
	Size     int64
	Body     io.Reader
}

// CraftPart writes a plaintext part by hand (bypassing the writer's
// checks): header, then zstd(tar(entries) + trailer).
func CraftPart(t testing.TB, path string, h container.Header, entries []RawEntry, trailer io.Reader) {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(h.Marshal())
	zw, _ := zstd.NewWriter(&buf, zstd.WithEncoderCRC(true))
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		tf := e.Typeflag
		if tf == 0 {
			tf = tar.TypeReg
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.Name, Typeflag: tf, Size: e.Size, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		if e.Size > 0 {
			if _, err := io.CopyN(tw, e.Body, e.Size); err != nil {
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

// ReadFinalPart returns the manifest and m.core.json of a plaintext final
// part, and its header.
func ReadFinalPart(t testing.TB, path string) (manifest, core []byte, h container.Header) {
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

// EditManifest rewrites the manifest of a plaintext archive in stored form
// (a directory of parts): edit changes its JSON object.
func EditManifest(t testing.TB, dir string, edit func(m map[string]any)) {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	if len(parts) == 0 {
		t.Fatalf("no parts in %s", dir)
	}
	last := parts[len(parts)-1]
	manifest, core, h := ReadFinalPart(t, last)
	var m map[string]any
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	manifest, _ = json.Marshal(m)
	CraftPart(t, last, h, []RawEntry{
		{Name: archive.CoreFile, Size: int64(len(core)), Body: bytes.NewReader(core)},
		{Name: archive.ManifestFile, Size: int64(len(manifest)), Body: bytes.NewReader(manifest)},
	}, nil)
}
