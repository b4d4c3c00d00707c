package archive_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/archive/sample"
)

var fixedID = container.ArchiveID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// writeSample writes the sample server into dir (stored form) and returns
// the packed single-file bytes too.
func writeSample(t testing.TB, dir string, key keywrap.Key) []byte {
	t.Helper()
	ctx := context.Background()
	b, err := container.OpenDirBucket(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	store := &container.BucketStore{Bucket: b}
	w, err := archive.NewWriter(ctx, store, archive.WriterOptions{ArchiveID: fixedID, Key: key, Export: sample.Export(),
		PartSize: 8 << 10, ChunkSize: 4 << 10, Now: func() time.Time { return time.UnixMilli(1700000000000) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := sample.Write(w, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	src, err := container.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var packed bytes.Buffer
	if _, err := container.Pack(ctx, src, &packed); err != nil {
		t.Fatal(err)
	}
	return packed.Bytes()
}

// readAll opens and fully verifies an archive, returning the number of events.
func readAll(ctx context.Context, loc string, key keywrap.Key) (int, error) {
	r, err := archive.OpenLocation(ctx, loc, archive.OpenOptions{Key: key})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	if err := r.Walk(ctx, func(*archive.File) error { return nil }); err != nil {
		return 0, err
	}
	n := 0
	err = archive.ReadSection(ctx, r, archive.SectionEvents, func(*archive.Event) error { n++; return nil })
	return n, err
}

func TestRoundTripStoredAndPacked(t *testing.T) {
	ctx := context.Background()
	for _, enc := range []bool{false, true} {
		var key keywrap.Key
		if enc {
			key = keywrap.New()
		}
		dir := t.TempDir()
		packed := writeSample(t, dir, key)
		packedPath := filepath.Join(t.TempDir(), "a.ferry")
		os.WriteFile(packedPath, packed, 0o600)
		for _, loc := range []string{dir, packedPath, "file://" + packedPath} {
			n, err := readAll(ctx, loc, key)
			if err != nil || n != 106 {
				t.Fatalf("encrypted=%v %s: %d events, %v", enc, loc, n, err)
			}
		}
	}
}

func TestGoldenPlaintextIsDeterministic(t *testing.T) {
	a := writeSample(t, t.TempDir(), keywrap.Key{})
	b := writeSample(t, t.TempDir(), keywrap.Key{})
	if !bytes.Equal(a, b) {
		t.Fatal("same data gave different archive bytes")
	}
	golden := filepath.Join("testdata", "golden", "sample-v1.1-plain.ferry")
	if os.Getenv("FERRY_UPDATE_GOLDEN") != "" {
		os.MkdirAll(filepath.Dir(golden), 0o755)
		if err := os.WriteFile(golden, a, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with FERRY_UPDATE_GOLDEN=1 to create)", err)
	}
	if !bytes.Equal(a, want) {
		t.Fatal("archive bytes differ from the golden file: the format changed; bump the version or the Changes section, then update the golden file")
	}
	if n, err := readAll(context.Background(), golden, keywrap.Key{}); err != nil || n != 106 {
		t.Fatalf("golden archive: %d events, %v", n, err)
	}
}

// Every single-bit flip in an encrypted packed archive is detected (sampled
// over the whole file), and none panics.
func TestBitFlipsAreDetected(t *testing.T) {
	ctx := context.Background()
	for _, enc := range []bool{true, false} {
		var key keywrap.Key
		if enc {
			key = keywrap.New()
		}
		packed := writeSample(t, t.TempDir(), key)
		step := len(packed)/300 + 1
		for off := 0; off < len(packed); off += step {
			bad := bytes.Clone(packed)
			bad[off] ^= 0x10
			p := filepath.Join(t.TempDir(), "bad.ferry")
			os.WriteFile(p, bad, 0o600)
			if _, err := readAll(ctx, p, key); err == nil {
				t.Errorf("encrypted=%v: flipped bit at offset %d of %d went unnoticed", enc, off, len(packed))
			}
		}
	}
}

func TestDamagedArchives(t *testing.T) {
	ctx := context.Background()
	key := keywrap.New()
	dir := t.TempDir()
	packed := writeSample(t, dir, key)
	parts, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	if len(parts) < 3 {
		t.Fatalf("want several parts, got %d", len(parts))
	}
	copyDir := func(t *testing.T) string {
		d := t.TempDir()
		for _, p := range parts {
			data, _ := os.ReadFile(p)
			os.WriteFile(filepath.Join(d, filepath.Base(p)), data, 0o600)
		}
		return d
	}
	cases := []struct {
		name   string
		damage func(t *testing.T) string
		want   string
	}{
		{"truncated pack", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "x")
			os.WriteFile(p, packed[:len(packed)-100], 0o600)
			return p
		}, "remain"},
		{"truncated part", func(t *testing.T) string {
			d := copyDir(t)
			p := filepath.Join(d, filepath.Base(parts[1]))
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)/2], 0o600)
			return d
		}, "part-00000001"},
		{"final part dropped", func(t *testing.T) string {
			d := copyDir(t)
			os.Remove(filepath.Join(d, filepath.Base(parts[len(parts)-1])))
			return d
		}, "not marked final"},
		{"middle part dropped", func(t *testing.T) string {
			d := copyDir(t)
			os.Remove(filepath.Join(d, filepath.Base(parts[1])))
			return d
		}, "missing"},
		{"parts swapped", func(t *testing.T) string {
			d := copyDir(t)
			a, b := filepath.Join(d, filepath.Base(parts[0])), filepath.Join(d, filepath.Base(parts[1]))
			da, _ := os.ReadFile(a)
			db, _ := os.ReadFile(b)
			os.WriteFile(a, db, 0o600)
			os.WriteFile(b, da, 0o600)
			return d
		}, "position"},
		{"part from another archive", func(t *testing.T) string {
			d := copyDir(t)
			other := t.TempDir()
			writeSampleWithID(t, other, key, container.ArchiveID{9})
			data, _ := os.ReadFile(filepath.Join(other, container.PartName(0)))
			os.WriteFile(filepath.Join(d, container.PartName(0)), data, 0o600)
			return d
		}, "archive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readAll(ctx, c.damage(t), key)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one mentioning %q", err, c.want)
			}
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		_, err := readAll(ctx, dir, keywrap.New())
		if !errors.Is(err, container.ErrWrongKey) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("no key", func(t *testing.T) {
		_, err := readAll(ctx, dir, keywrap.Key{})
		if !errors.Is(err, container.ErrNeedKey) {
			t.Fatalf("error = %v", err)
		}
	})
}

func writeSampleWithID(t *testing.T, dir string, key keywrap.Key, id container.ArchiveID) {
	b, _ := container.OpenDirBucket(dir, true)
	defer b.Close()
	w, err := archive.NewWriter(context.Background(), &container.BucketStore{Bucket: b}, archive.WriterOptions{ArchiveID: id, Key: key, Export: sample.Export(), PartSize: 8 << 10, ChunkSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	sample.Write(w, 100)
	w.Close()
}

func TestKeyWrapping(t *testing.T) {
	ctx := context.Background()
	key := keywrap.New()
	dir := t.TempDir()
	writeSample(t, dir, key)
	wrapped, err := keywrap.WrapPassphrase(key, fixedID.String(), "correct horse battery", 10)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := keywrap.PassphraseIdentity("correct horse battery")
	r, err := archive.OpenLocation(ctx, dir, archive.OpenOptions{KeyFile: wrapped, Identities: []age.Identity{good}})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	bad, _ := keywrap.PassphraseIdentity("wrong passphrase!!")
	_, err = archive.OpenLocation(ctx, dir, archive.OpenOptions{KeyFile: wrapped, Identities: []age.Identity{bad}})
	if !errors.Is(err, keywrap.ErrNoIdentity) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	other, _ := keywrap.WrapPassphrase(key, "00000000000000000000000000000000", "correct horse battery", 10)
	_, err = archive.OpenLocation(ctx, dir, archive.OpenOptions{KeyFile: other, Identities: []age.Identity{good}})
	if !errors.Is(err, keywrap.ErrWrongArchive) {
		t.Fatalf("key of another archive: %v", err)
	}
}

func TestManifestVersionsAndNames(t *testing.T) {
	_, err := archive.ParseManifest([]byte(`{"format":"org.matrix.msc2783.archive","version":2}`))
	if !errors.Is(err, archive.ErrUnsupportedVersion) || !strings.Contains(err.Error(), "upgrade Ferry") {
		t.Fatalf("unknown major version: %v", err)
	}
	m, err := archive.ParseManifest([]byte(`{"format":"org.matrix.msc2783.archive","version":1,"archive_id":"x",
		"items":{"org.matrix.msc2783.events":{"v":1},"org.example.world":{"v":[3,1],"_":{"big":true}},"m.users":{"v":9}},
		"files":[],"parts":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Items["m.events"]; !ok {
		t.Error("org.matrix.msc2783.events was not resolved to m.events")
	}
	if got := m.UnknownItems(); strings.Join(got, ",") != "m.users,org.example.world" {
		t.Errorf("unknown items = %v", got)
	}
	for _, p := range []string{"../etc/passwd", "/abs", "a/../b", "a//b"} {
		if _, err := archive.ParseManifest([]byte(`{"format":"org.matrix.msc2783.archive","version":1,"files":[{"path":"` + p + `","size":1,"sha256":"` + strings.Repeat("0", 64) + `"}],"parts":[]}`)); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
}

func TestSecretsNeedEncryption(t *testing.T) {
	b, _ := container.OpenDirBucket(t.TempDir(), true)
	defer b.Close()
	w, _ := archive.NewWriter(context.Background(), &container.BucketStore{Bucket: b}, archive.WriterOptions{Export: sample.Export()})
	err := w.Add(archive.SectionUsers, &archive.User{UserID: "@a:x", PasswordHash: "$2b$12$abc"})
	if !errors.Is(err, archive.ErrSensitiveInPlaintext) {
		t.Fatalf("password hash in plaintext archive: %v", err)
	}
}
