package archive_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// maxSeed leaves out the hostile cases that carry a gigabyte of zeros:
// refused from their headers as they are, but a mutation that makes the
// manifest allow the gigabyte (a legal archive) costs seconds per run. The
// empty-record cases (a million records each) are left out for the same
// reason.
const maxSeed = 16 << 10

// addArchiveSeeds seeds a fuzz target with a fresh sample archive, the
// golden archives and the hostile cases (testdata/hostile), all packed.
func addArchiveSeeds(f *testing.F, add func(data []byte)) {
	add(writeSample(f, f.TempDir(), keywrap.Key{}))
	add([]byte("FRYPACK1"))
	for _, pattern := range []string{"testdata/golden/*.ferry", "testdata/hostile/*.ferry"} {
		paths, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			if strings.HasPrefix(filepath.Base(p), "empty-") {
				continue
			}
			if len(data) <= maxSeed || filepath.Base(filepath.Dir(p)) == "golden" {
				add(data)
			}
		}
	}
}

// openFuzz opens packed bytes as an archive (plaintext: the form anyone can
// make, and what an attacker with a public recipient key controls after
// decryption), or returns nil.
func openFuzz(data []byte) *archive.Reader {
	src, err := container.OpenPack("fuzz", bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		return nil
	}
	r, err := archive.Open(context.Background(), src, archive.OpenOptions{})
	if err != nil {
		return nil
	}
	return r
}

// FuzzOpen feeds arbitrary bytes to the packed-archive reader: it must
// return an error or a verified archive, never panic or hang.
func FuzzOpen(f *testing.F) {
	addArchiveSeeds(f, func(data []byte) { f.Add(data) })
	f.Fuzz(func(t *testing.T, data []byte) {
		if r := openFuzz(data); r != nil {
			_ = r.Walk(context.Background(), func(f *archive.File) error { return nil })
		}
	})
}

// FuzzValidate runs what `bot archive verify`, verify jobs and `!import`
// run on an archive: Validate, which decodes every record and checks the
// graph they describe. It must report problems, never panic or hang.
func FuzzValidate(f *testing.F) {
	addArchiveSeeds(f, func(data []byte) { f.Add(data) })
	f.Fuzz(func(t *testing.T, data []byte) {
		r := openFuzz(data)
		if r == nil {
			return
		}
		rep, err := archive.Validate(context.Background(), r)
		if err == nil && rep == nil {
			t.Fatal("Validate returned neither a report nor an error")
		}
	})
}

// FuzzExtract extracts arbitrary archives into a temporary root: files stay
// inside it, and a failed extract leaves it empty.
func FuzzExtract(f *testing.F) {
	addArchiveSeeds(f, func(data []byte) { f.Add(data, false); f.Add(data, true) })
	f.Fuzz(func(t *testing.T, data []byte, jsonl bool) {
		r := openFuzz(data)
		if r == nil {
			return
		}
		dir := t.TempDir()
		root, err := os.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		_, err = archive.Extract(context.Background(), r, root, archive.ExtractOptions{JSONL: jsonl})
		if err == nil {
			return
		}
		if left, _ := os.ReadDir(dir); len(left) > 0 {
			t.Fatalf("a failed extract (%v) left %s behind", err, left[0].Name())
		}
	})
}
