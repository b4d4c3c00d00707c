package archive

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/fxamacker/cbor/v2"
)

// ExtractOptions say how Extract writes files.
type ExtractOptions struct {
	// JSONL writes the record files of known sections as JSON lines
	// (<section>.<N>.jsonl) instead of CBOR.
	JSONL bool
}

// Extract writes every file and media blob of r into root, which must be
// empty, as Walk verifies them, then manifest.json and m.core.json as
// indented JSON. It returns the number of files written.
//
// Every file is created new inside root (os.Root: no name escapes it, none
// overwrites another). Nothing is written that Walk has not checked against
// the manifest first: a blob the manifest does not allow is refused from its
// tar header, before its first byte. When Extract fails it removes
// everything it wrote, leaving root empty.
func Extract(ctx context.Context, r *Reader, root *os.Root, opts ExtractOptions) (n int, err error) {
	dir, err := root.Open(".")
	if err != nil {
		return 0, err
	}
	names, err := dir.Readdirnames(1)
	dir.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	if len(names) > 0 {
		return 0, fmt.Errorf("%s is not empty: extract into a new directory", root.Name())
	}
	defer func() {
		if err != nil {
			if cerr := emptyRoot(root); cerr != nil {
				err = fmt.Errorf("%w (and removing what was written failed: %v)", err, cerr)
			}
		}
	}()
	err = r.Walk(ctx, func(f *File) error {
		n++
		if f.Blob != nil {
			return writeInRoot(root, f.BlobPath, func(w io.Writer) error { _, err := io.Copy(w, f.Blob); return err })
		}
		p := f.Entry.Path
		if !opts.JSONL || !f.Known || !strings.HasSuffix(p, sectionFileExt) {
			return writeInRoot(root, p, func(w io.Writer) error { _, err := w.Write(f.Data); return err })
		}
		return writeInRoot(root, strings.TrimSuffix(p, sectionFileExt)+".jsonl", func(w io.Writer) error {
			bw := bufio.NewWriter(w)
			err := RawRecords(r, f, func(raw cbor.RawMessage) error {
				if err := writeJSONLine(bw, raw); err != nil {
					return formatErr(p, -1, "record has no JSON form", err)
				}
				return nil
			})
			if err != nil {
				return err
			}
			return bw.Flush()
		})
	})
	if err != nil {
		return n, fmt.Errorf("extract stopped after %d files: %w", n, err)
	}
	for _, file := range []struct {
		name string
		v    any
	}{{ManifestFile, r.Manifest()}, {CoreFile, r.Core()}} {
		data, err := json.MarshalIndent(file.v, "", "  ")
		if err != nil {
			return n, err
		}
		if err := writeInRoot(root, file.name, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// emptyRoot removes everything in root (which Extract found empty).
func emptyRoot(root *os.Root) error {
	dir, err := root.Open(".")
	if err != nil {
		return err
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := root.RemoveAll(name); err != nil {
			return err
		}
	}
	return nil
}

func writeInRoot(root *os.Root, name string, write func(io.Writer) error) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
