package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/fxamacker/cbor/v2"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

var update = flag.Bool("update", false, "rewrite the hostile archives under testdata/hostile")

// A hostile archive: made by hand with archivetest's crafting helpers, kept
// as a golden input under testdata/hostile (go test -run TestHostileArchives
// -update rewrites them), and refused with a message naming the problem.
type hostileCase struct {
	name  string
	build func(t testing.TB) *archivetest.Crafted
	// want is a part of the error every reading path (open, validate,
	// walk, extract) must give; "" for the one valid archive.
	want string
}

const (
	hostileServer = "hostile.test"
	hostileUsers  = "m.users/users.1.cbor"
	hostileBlob   = "m.media/files/hostile.test/blob"
	hostileClaim  = 1 << 30 // what the big cases claim: 1 GiB of zeros
)

var hostileID = container.ArchiveID{0xf0, 0x0d}

// hostileEnc encodes records as writers must (sorted keys), so that the
// golden inputs come out the same from every -update.
var hostileEnc, _ = cbor.CoreDetEncOptions().EncMode()

func hostileRecord(t testing.TB, v any) []byte {
	b, err := hostileEnc.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hostileUser(t testing.TB) []byte {
	return hostileRecord(t, archive.User{UserID: "@alice:" + hostileServer})
}

// hostile builds an archive of the given data parts, files (m.core.json is
// added, in the final part) and parts table.
func hostile(t testing.TB, parts [][]archivetest.RawEntry, files []archive.FileEntry, table []archive.PartEntry) *archivetest.Crafted {
	core := []byte(`{"server_name":"` + hostileServer + `"}`)
	items := map[string]archive.Item{"m.core": {V: archive.ItemVersion{1}}, "m.users": {V: archive.ItemVersion{1}}}
	for _, f := range files {
		items[archive.ItemOf(f.Path)] = archive.Item{V: archive.ItemVersion{1}}
	}
	return &archivetest.Crafted{ID: hostileID, Parts: parts, Core: core, Manifest: archive.Manifest{
		Format: archive.FormatMagic, Version: archive.FormatVersion, ArchiveID: hostileID.String(),
		CreatedAt: time.UnixMilli(1700000000000).UTC(), Encryption: archive.EncryptionNone,
		Export: archive.ExportInfo{ServerName: hostileServer, Type: "full", Source: archive.SourceInfo{Implementation: "hostile"}},
		Items:  items,
		Files:  append(files, archivetest.Listed(archive.CoreFile, len(parts), core, 0)),
		Parts:  table,
	}}
}

// validHostile is the one valid archive of the family: one user in one part.
func validHostile(t testing.TB) *archivetest.Crafted {
	u := hostileUser(t)
	return hostile(t, [][]archivetest.RawEntry{{archivetest.Bytes(hostileUsers, u)}},
		[]archive.FileEntry{archivetest.Listed(hostileUsers, 0, u, 1)}, []archive.PartEntry{{Index: 0}})
}

// zeroFile lists hostileUsers as size zero bytes (its hash is not checked
// before its size).
func zeroFile(size int64) archive.FileEntry {
	return archive.FileEntry{Path: hostileUsers, Part: 0, Size: size, Records: 1, SHA256: strings.Repeat("0", 64)}
}

// blobPart is a data part holding the blobs of digests (of zero bytes) and
// their index, chunk n of the blob index.
func blobPart(t testing.TB, part, n int, digests ...archive.BlobDigest) ([]archivetest.RawEntry, archive.FileEntry) {
	var entries []archivetest.RawEntry
	var index []byte
	for _, d := range digests {
		entries = append(entries, archivetest.Zeros(d.Path, d.Size))
		index = append(index, hostileRecord(t, d)...)
	}
	path := archive.SectionFileName(archive.SectionBlobIndex, n)
	return append(entries, archivetest.Bytes(path, index)), archivetest.Listed(path, part, index, int64(len(digests)))
}

func zeroDigest(path string, size int64) archive.BlobDigest {
	h := sha256.New()
	io.CopyN(h, zeros{}, size)
	return archive.BlobDigest{Path: path, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// withFinal is an archive of only a final part holding entries.
func withFinal(entries []archivetest.RawEntry, trailer io.Reader) func(t testing.TB) *archivetest.Crafted {
	return func(t testing.TB) *archivetest.Crafted {
		return &archivetest.Crafted{ID: container.ArchiveID{7}, Final: entries, Trailer: trailer}
	}
}

var hostileCases = []hostileCase{
	{"valid", validHostile, ""},
	// Sizes and counts the manifest claims, checked against the format before reading.
	{"oversized-file", func(t testing.TB) *archivetest.Crafted {
		return hostile(t, [][]archivetest.RawEntry{{archivetest.Zeros(hostileUsers, hostileClaim)}},
			[]archive.FileEntry{zeroFile(hostileClaim)}, []archive.PartEntry{{Index: 0}})
	}, `file "m.users/users.1.cbor" is 1073741824 bytes, above the format's limit`},
	{"oversized-file-encrypted", func(t testing.TB) *archivetest.Crafted {
		c := hostile(t, [][]archivetest.RawEntry{{archivetest.Zeros(hostileUsers, hostileClaim)}},
			[]archive.FileEntry{zeroFile(hostileClaim)}, []archive.PartEntry{{Index: 0}})
		c.Manifest.Encryption = archive.EncryptionStream
		return c
	}, `file "m.users/users.1.cbor" is 1073741824 bytes, above the format's limit`},
	{"tar-size-disagrees", func(t testing.TB) *archivetest.Crafted {
		return hostile(t, [][]archivetest.RawEntry{{archivetest.Zeros(hostileUsers, hostileClaim)}},
			[]archive.FileEntry{zeroFile(10)}, []archive.PartEntry{{Index: 0}})
	}, `m.users/users.1.cbor: tar entry is 1073741824 bytes, the manifest says 10`},
	{"records-beyond-bytes", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		c.Manifest.Files[0].Records = 1 << 40
		return c
	}, `claims 1099511627776 records in`},
	{"record-not-cbor", func(t testing.TB) *archivetest.Crafted {
		u := append(hostileUser(t), 0xa1, 0x61) // a second record, cut short
		return hostile(t, [][]archivetest.RawEntry{{archivetest.Bytes(hostileUsers, u)}},
			[]archive.FileEntry{archivetest.Listed(hostileUsers, 0, u, 2)}, []archive.PartEntry{{Index: 0}})
	}, `m.users/users.1.cbor at offset 29: record 2 is not valid CBOR: unexpected EOF`},
	{"more-records-than-listed", func(t testing.TB) *archivetest.Crafted {
		u := append(hostileUser(t), hostileUser(t)...)
		return hostile(t, [][]archivetest.RawEntry{{archivetest.Bytes(hostileUsers, u)}},
			[]archive.FileEntry{archivetest.Listed(hostileUsers, 0, u, 1)}, []archive.PartEntry{{Index: 0}})
	}, `m.users/users.1.cbor: holds 2 records, the manifest says 1`},
	{"blob-beyond-count", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		c.Parts = append(c.Parts, []archivetest.RawEntry{archivetest.Zeros(hostileBlob, hostileClaim)})
		c.Manifest.Parts = append(c.Manifest.Parts, archive.PartEntry{Index: 1})
		c.Manifest.Files[1].Part = 2
		return c
	}, `blob "m.media/files/hostile.test/blob" is one more than the 0 blobs the manifest gives this part`},
	{"blob-beyond-bytes", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		entries, index := blobPart(t, 1, 1, archive.BlobDigest{Path: hostileBlob, Size: hostileClaim, SHA256: strings.Repeat("0", 64)})
		c.Parts = append(c.Parts, entries)
		c.Manifest.Parts = append(c.Manifest.Parts, archive.PartEntry{Index: 1, Blobs: 1, BlobBytes: 1024})
		c.Manifest.Files = []archive.FileEntry{c.Manifest.Files[0], index, c.Manifest.Files[1]}
		c.Manifest.Files[2].Part = 2
		return c
	}, `blob "m.media/files/hostile.test/blob" is 1073741824 bytes, past the 1024 blob bytes the manifest gives this part`},
	// Names used twice, in one part or across parts.
	{"duplicate-manifest", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		m, _ := json.Marshal(c.Manifest)
		c.Final = []archivetest.RawEntry{archivetest.Bytes(archive.CoreFile, c.Core), archivetest.Bytes(archive.ManifestFile, m), archivetest.Bytes(archive.ManifestFile, m)}
		return c
	}, `entry "manifest.json" appears twice`},
	{"duplicate-core", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		m, _ := json.Marshal(c.Manifest)
		c.Final = []archivetest.RawEntry{archivetest.Bytes(archive.CoreFile, c.Core), archivetest.Bytes(archive.CoreFile, c.Core), archivetest.Bytes(archive.ManifestFile, m)}
		return c
	}, `entry "m.core.json" appears twice`},
	{"duplicate-file-in-part", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		c.Parts[0] = append(c.Parts[0], archivetest.Bytes(hostileUsers, hostileUser(t)))
		return c
	}, `entry "m.users/users.1.cbor" appears twice`},
	{"duplicate-file-across-parts", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		c.Parts = append(c.Parts, []archivetest.RawEntry{archivetest.Bytes(hostileUsers, hostileUser(t))})
		c.Manifest.Parts = append(c.Manifest.Parts, archive.PartEntry{Index: 1})
		c.Manifest.Files[1].Part = 2
		return c
	}, `entry "m.users/users.1.cbor" appears twice`},
	{"duplicate-blob-across-parts", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		d := zeroDigest(hostileBlob, 10)
		p0, i0 := blobPart(t, 0, 1, d)
		p1, i1 := blobPart(t, 1, 2, d)
		c.Parts = [][]archivetest.RawEntry{append(c.Parts[0], p0...), p1}
		c.Manifest.Parts = []archive.PartEntry{{Index: 0, Blobs: 1, BlobBytes: 10}, {Index: 1, Blobs: 1, BlobBytes: 10}}
		c.Manifest.Files = []archive.FileEntry{c.Manifest.Files[0], i0, i1, c.Manifest.Files[1]}
		c.Manifest.Files[3].Part = 2
		return c
	}, `entry "m.media/files/hostile.test/blob" appears twice`},
	// Files listed where no reader looks for them.
	{"file-listed-in-final-part", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		c.Parts[0] = nil
		c.Manifest.Files[0].Part = 1
		return c
	}, `lists "m.users/users.1.cbor" in the final part`},
	{"blob-listed-as-file", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		c.Parts[0] = append(c.Parts[0], archivetest.Bytes(hostileBlob, []byte("x")))
		c.Manifest.Files = append([]archive.FileEntry{archivetest.Listed(hostileBlob, 0, []byte("x"), 0)}, c.Manifest.Files...)
		return c
	}, `file "m.media/files/hostile.test/blob" is `},
	// Entry names and kinds, and zstd bombs, in the final part.
	{"dot-dot-entry", withFinal([]archivetest.RawEntry{archivetest.Bytes("../../etc/passwd", []byte("root"))}, nil), `entry "../../etc/passwd"`},
	{"absolute-entry", withFinal([]archivetest.RawEntry{archivetest.Bytes("/etc/passwd", []byte("root"))}, nil), "absolute path"},
	{"symlink-entry", withFinal([]archivetest.RawEntry{{Name: archive.CoreFile, Typeflag: tar.TypeSymlink}}, nil), "not a regular file"},
	{"zstd-bomb-in-manifest", withFinal([]archivetest.RawEntry{archivetest.Zeros(archive.ManifestFile, hostileClaim)}, nil), "manifest.json: 1073741824 bytes is above the limit"},
	{"zstd-bomb-after-tar-end", withFinal(nil, io.LimitReader(zeros{}, hostileClaim)), "unexpected data after the tar stream"},
}

// hostileIdentity is the identity the encrypted hostile cases' keys are
// wrapped to: what an attacker who knows the bot's public recipient makes.
func hostileIdentity(t testing.TB) *age.X25519Identity {
	path := filepath.Join("testdata", "hostile", "identity.txt")
	if *update {
		if _, err := os.Stat(path); err != nil {
			id, _ := age.GenerateX25519Identity()
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := keywrap.ParseIdentities(data)
	if err != nil {
		t.Fatal(err)
	}
	return ids[0].(*age.X25519Identity)
}

// hostileArchive returns the packed golden archive of c and the options
// that open it, writing it first under -update.
func hostileArchive(t testing.TB, c hostileCase) (string, archive.OpenOptions) {
	path := filepath.Join("testdata", "hostile", c.name+".ferry")
	keyPath := path + ".key.age"
	encrypted := strings.HasSuffix(c.name, "-encrypted")
	if *update {
		cr := c.build(t)
		if encrypted {
			key := keywrap.New()
			cr.Key = key.Bytes()
			wrapped, err := keywrap.Wrap(key, cr.ID.String(), hostileIdentity(t).Recipient())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(keyPath, wrapped, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, cr.Pack(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !encrypted {
		return path, archive.OpenOptions{}
	}
	wrapped, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return path, archive.OpenOptions{KeyFile: wrapped, Identities: []age.Identity{hostileIdentity(t)}}
}

// Every hostile archive is refused by every reading path (open, validate as
// `bot archive verify` does, walk as import does, extract) with a message
// naming the problem, allocating a small fraction of what it claims, and
// leaving nothing behind where extract wrote.
func TestHostileArchives(t *testing.T) {
	ctx := context.Background()
	const maxAlloc = 32 << 20 // every claim above is 1 GiB
	for _, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			path, opts := hostileArchive(t, c)
			out := filepath.Join(t.TempDir(), "out")
			if err := os.Mkdir(out, 0o700); err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(out)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var errs []string
			check := func(stage string, err error) {
				switch {
				case c.want == "" && err != nil:
					t.Errorf("%s of a valid archive: %v", stage, err)
				case c.want != "" && err == nil:
					t.Errorf("%s accepted it", stage)
				case c.want != "" && !strings.Contains(err.Error(), c.want):
					t.Errorf("%s: error = %v\nwant one saying %s", stage, err, c.want)
				}
				if err != nil {
					errs = append(errs, stage+": "+err.Error())
				}
			}
			r, err := archive.OpenLocation(ctx, path, opts)
			if err != nil {
				check("open", err)
			} else {
				rep, err := archive.Validate(ctx, r)
				if err == nil && !rep.OK() {
					err = errors.New(rep.Problems[0].String())
				}
				check("validate", err)
				check("walk", r.Walk(ctx, func(*archive.File) error { return nil }))
				_, err = archive.Extract(ctx, r, root, archive.ExtractOptions{JSONL: true})
				check("extract", err)
				r.Close()
			}
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxAlloc {
				t.Errorf("reading it allocated %d MiB (limit %d MiB)", alloc>>20, maxAlloc>>20)
			}
			left, _ := os.ReadDir(out)
			if c.want != "" && len(left) > 0 {
				t.Errorf("a failed extract left %d entries behind, the first %s", len(left), left[0].Name())
			}
			if c.want == "" && len(left) == 0 {
				t.Error("extract of the valid archive wrote nothing")
			}
			t.Logf("%d KiB allocated; %s", (after.TotalAlloc-before.TotalAlloc)>>10, strings.Join(errs, "; "))
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

// Archives whose structure is sound but whose records are many and tiny: an
// empty map is one byte and zstd packs millions of them into a few hundred
// bytes. Validate must not keep a Go value per record it cannot use.
var emptyRecordCases = []hostileCase{
	{"empty-memberships", func(t testing.TB) *archivetest.Crafted {
		const n = 1 << 20 // records of one byte each: {}
		c := validHostile(t)
		data := bytes.Repeat([]byte{0xa0}, n)
		path := archive.SectionFileName(archive.SectionMemberships, 1)
		c.Parts[0] = append(c.Parts[0], archivetest.Bytes(path, data))
		c.Manifest.Files = append([]archive.FileEntry{archivetest.Listed(path, 0, data, n)}, c.Manifest.Files...)
		c.Manifest.Items["m.rooms"] = archive.Item{V: archive.ItemVersion{1}}
		return c
	}, "unknown_room"},
	{"empty-thumbnails", func(t testing.TB) *archivetest.Crafted {
		const records, thumbnails = 192, 1 << 14
		c := validHostile(t)
		var data []byte
		for i := range records {
			data = append(data, hostileRecord(t, map[string]any{"origin": hostileServer, "media_id": fmt.Sprint(i), "size": 0,
				"thumbnails": emptyMaps(thumbnails)})...)
		}
		path := archive.SectionFileName(archive.SectionMedia, 1)
		c.Parts[0] = append(c.Parts[0], archivetest.Bytes(path, data))
		c.Manifest.Files = append([]archive.FileEntry{archivetest.Listed(path, 0, data, records)}, c.Manifest.Files...)
		return c
	}, ""},
	{"empty-maps-in-a-record", func(t testing.TB) *archivetest.Crafted {
		c := validHostile(t)
		maps := emptyMaps(1 << 20)
		u := hostileRecord(t, map[string]any{"user_id": "@alice:" + hostileServer, "x": [][]map[string]any{maps, maps, maps, maps}})
		c.Parts[0] = []archivetest.RawEntry{archivetest.Bytes(hostileUsers, u)}
		c.Manifest.Files[0] = archivetest.Listed(hostileUsers, 0, u, 1)
		return c
	}, ""},
}

// emptyMaps is n empty CBOR maps (one byte each).
func emptyMaps(n int) []map[string]any {
	maps, empty := make([]map[string]any, n), map[string]any{}
	for i := range maps {
		maps[i] = empty
	}
	return maps
}

// Validating and extracting (as JSON lines) the empty-record archives holds
// a small heap: Validate keeps nothing of a record it cannot use (before,
// each one-byte membership of an unknown room kept 80 bytes, and each empty
// thumbnail 88: 150 MiB from 1 KB), and extract transcodes records to JSON
// without a Go value per map (before, 4 Mi empty maps took 194 MiB).
func TestEmptyRecordsCostNoMemory(t *testing.T) {
	ctx := context.Background()
	const maxHeap = 32 << 20
	for _, c := range emptyRecordCases {
		t.Run(c.name, func(t *testing.T) {
			path, opts := hostileArchive(t, c)
			r := archivetest.Open(t, path, opts)
			var rep *archive.ValidationReport
			var err error
			grew := peakHeap(func() { rep, err = archive.Validate(ctx, r) })
			if err != nil {
				t.Fatal(err)
			}
			if c.want != "" && rep.Counts[archive.Check(c.want)] == 0 {
				t.Errorf("no %s problem: %v", c.want, rep.Problems)
			}
			if c.want == "" && !rep.OK() {
				t.Errorf("problems: %v", rep.Problems)
			}
			if grew > maxHeap {
				t.Errorf("the live heap grew by %d MiB while validating (limit %d MiB)", grew>>20, maxHeap>>20)
			}
			t.Logf("validate: the live heap grew by %d KiB at most; %d records", grew>>10, rep.Records)
			root, err := os.OpenRoot(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			grew = peakHeap(func() { _, err = archive.Extract(ctx, r, root, archive.ExtractOptions{JSONL: true}) })
			if err != nil {
				t.Fatal(err)
			}
			if grew > maxHeap {
				t.Errorf("the live heap grew by %d MiB while extracting JSON lines (limit %d MiB)", grew>>20, maxHeap>>20)
			}
			t.Logf("extract: the live heap grew by %d KiB at most", grew>>10)
		})
	}
}

// Validation's batches run on across event files, so they are bounded by
// the bytes of their events, every field counted, not by file: an archive
// of many files, each one event with a 2 MiB field, costs validation the
// same memory whatever their number.
func TestValidateMemoryDoesNotGrowWithBigEvents(t *testing.T) {
	grew := map[int]uint64{}
	for _, files := range []int{24, 96} {
		c := validHostile(t)
		for i := range files {
			rec := hostileRecord(t, map[string]any{"event_id": fmt.Sprintf("$e%d", i), "room_id": "!r:" + hostileServer,
				"json": []byte(`{}`), "state_before": 0, "rejected": strings.Repeat("r", 2<<20)})
			path := archive.SectionFileName(archive.SectionEvents, i+1)
			c.Parts[0] = append(c.Parts[0], archivetest.Bytes(path, rec))
			c.Manifest.Files = append(c.Manifest.Files, archivetest.Listed(path, 0, rec, 1))
		}
		c.Manifest.Items["m.events"] = archive.Item{V: archive.ItemVersion{1}}
		p := filepath.Join(t.TempDir(), "a.ferry")
		if err := os.WriteFile(p, c.Pack(t), 0o644); err != nil {
			t.Fatal(err)
		}
		r := archivetest.Open(t, p, archive.OpenOptions{})
		var rep *archive.ValidationReport
		var err error
		grew[files] = peakHeap(func() { rep, err = archive.Validate(context.Background(), r) })
		if err != nil {
			t.Fatal(err)
		}
		if rep.Events != int64(files) {
			t.Fatalf("%d events validated of %d", rep.Events, files)
		}
	}
	t.Logf("heap grew %d MiB for 24 files, %d MiB for 96", grew[24]>>20, grew[96]>>20)
	// 96 such events are 192 MiB; a few batches of them are in flight at
	// once (about 25-55 MiB measured, with the collector's timing), where
	// batches bounded by the events' JSON alone held 178 MiB.
	if grew[96] > 96<<20 {
		t.Fatalf("validation's memory grows with the number of big events: %d MiB for 24 files, %d MiB for 96", grew[24]>>20, grew[96]>>20)
	}
}
