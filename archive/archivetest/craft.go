package archivetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/tink-crypto/tink-go/v2/streamingaead/subtle"

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
	if err := os.WriteFile(path, CraftPartBytes(t, h, nil, entries, trailer), 0o600); err != nil {
		t.Fatal(err)
	}
}

// CraftPartBytes returns a hand-made part: header, then zstd(tar(entries) +
// trailer), sealed with key when it is set (the header's Encrypted flag
// follows the key).
func CraftPartBytes(t testing.TB, h container.Header, key []byte, entries []RawEntry, trailer io.Reader) []byte {
	t.Helper()
	h.Encrypted = key != nil
	var buf bytes.Buffer
	hdr := h.Marshal()
	buf.Write(hdr)
	var body io.Writer = &buf
	var seal io.WriteCloser
	if key != nil {
		aead, err := subtle.NewAESGCMHKDF(key, "SHA256", container.KeySize, container.SegmentSize, 0)
		if err != nil {
			t.Fatal(err)
		}
		if seal, err = aead.NewEncryptingWriter(&buf, hdr); err != nil {
			t.Fatal(err)
		}
		body = seal
	}
	zw, _ := zstd.NewWriter(body, zstd.WithEncoderCRC(true), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
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
	if seal != nil {
		if err := seal.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// Bytes is a RawEntry holding data.
func Bytes(name string, data []byte) RawEntry {
	return RawEntry{Name: name, Size: int64(len(data)), Body: bytes.NewReader(data)}
}

// Zeros is a RawEntry of size zero bytes: a few kilobytes once compressed,
// whatever its size.
func Zeros(name string, size int64) RawEntry {
	return RawEntry{Name: name, Size: size, Body: io.LimitReader(zeroReader{}, size)}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// Listed is the manifest entry of a file holding data.
func Listed(path string, part int, data []byte, records int64) archive.FileEntry {
	sum := sha256.Sum256(data)
	return archive.FileEntry{Path: path, Part: part, Size: int64(len(data)), Records: records, SHA256: hex.EncodeToString(sum[:])}
}

// Crafted is a hand-made archive, written as given, lies included: its data
// parts, then a final part holding Core and Manifest (or Final, when set).
type Crafted struct {
	ID       container.ArchiveID
	Key      []byte // seals every part when set
	Parts    [][]RawEntry
	Core     []byte
	Manifest archive.Manifest
	Final    []RawEntry
	Trailer  io.Reader // bytes after the final part's tar stream
}

// Pack returns the archive in packed form. Entry bodies are consumed.
func (c *Crafted) Pack(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("FRYPACK1")
	add := func(part []byte) {
		buf.Write(binary.BigEndian.AppendUint64(nil, uint64(len(part))))
		buf.Write(part)
	}
	for i, entries := range c.Parts {
		add(CraftPartBytes(t, container.Header{ArchiveID: c.ID, Index: uint32(i)}, c.Key, entries, nil))
	}
	final := c.Final
	if final == nil {
		m, err := json.Marshal(c.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		final = []RawEntry{Bytes(archive.CoreFile, c.Core), Bytes(archive.ManifestFile, m)}
	}
	add(CraftPartBytes(t, container.Header{ArchiveID: c.ID, Index: uint32(len(c.Parts)), Last: true}, c.Key, final, c.Trailer))
	return buf.Bytes()
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
