package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `bot archive extract` of a real Synapse's archive, media included: every
// original lands at m.media/files/<server>/<id> byte for byte as in the
// media store, and every thumbnail beside it in m.media/thumbnails/, where
// format 1.0 made them collide with their file.
func TestExtractRealSynapseMedia(t *testing.T) {
	ctx := context.Background()
	db, media := synapseFixture(t)
	dir := t.TempDir()
	t.Setenv("FERRY_TEST_PASS", "a long enough passphrase")
	archivePath := filepath.Join(dir, "full.ferry")
	if err := run(ctx, []string{"export", "--quiet", "--db", db, "--media-store", media, "--signing-key", fixtureDir + "fixture.test.signing.key",
		"--synapse-config", fixtureDir + "homeserver.yaml", "--passphrase-env", "FERRY_TEST_PASS", "--to", archivePath}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "extracted")
	if err := run(ctx, []string{"archive", "extract", "--key-file", archivePath + ".key.age", "--passphrase-env", "FERRY_TEST_PASS", archivePath, out}); err != nil {
		t.Fatal(err)
	}
	const server = "fixture.test"
	files, err := os.ReadDir(filepath.Join(out, "m.media", "files", server))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		id := f.Name()
		got, err := os.ReadFile(filepath.Join(out, "m.media", "files", server, id))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(media, "local_content", id[0:2], id[2:4], id[4:]))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("media %s: extracted file differs from the media store's", id)
		}
	}
	thumbnails := 0
	err = filepath.WalkDir(filepath.Join(out, "m.media", "thumbnails", server), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(out, "m.media", "thumbnails", server), path)
		id, name, _ := strings.Cut(rel, string(filepath.Separator))
		want, err := os.ReadFile(filepath.Join(media, "local_thumbnails", id[0:2], id[2:4], id[4:], name))
		if err != nil {
			return err
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
			t.Errorf("thumbnail %s: extracted file differs from the media store's", rel)
		}
		thumbnails++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The fixture's INVENTORY.md: 31 rows in local_media_repository_thumbnails.
	if len(files) == 0 || thumbnails != 31 {
		t.Fatalf("extracted %d media files and %d thumbnails, want files and 31 thumbnails", len(files), thumbnails)
	}
}

// A format 1.0 archive (the old golden one, thumbnail included) still
// extracts: its thumbnail goes to the 1.1 place.
func TestExtractFormat10Archive(t *testing.T) {
	out := filepath.Join(t.TempDir(), "extracted")
	if err := run(context.Background(), []string{"archive", "extract", "../../archive/testdata/golden/sample-v1.0-plain.ferry", out}); err != nil {
		t.Fatal(err)
	}
	for path, prefix := range map[string]string{
		"m.media/files/sample.ferry.test/avatarbob":                            "ferry sample avatar ",
		"m.media/thumbnails/sample.ferry.test/avatarbob/32-32-text-plain-crop": "ferry sample thumbnail ",
	} {
		data, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(path)))
		if err != nil || !bytes.HasPrefix(data, []byte(prefix)) {
			t.Errorf("%s: %q %v", path, data, err)
		}
	}
}
