package archive

import (
	"bytes"
	"context"
	"fmt"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// EditFunc sees each record of a known section during Copy, decoded into
// its record type (a pointer it may change). Returning false drops it.
type EditFunc func(section string, rec any) (keep bool, err error)

// CopyReport says what Copy carried over.
type CopyReport struct {
	Records int64
	Dropped int64
	Changed int64
	Blobs   int64
	// PassedThrough lists files of items this reader does not understand
	// (vendor namespaces, newer item versions), copied byte for byte.
	PassedThrough []string
}

// Copy writes every record, file and blob of r into w: the basis of
// `bot archive decrypt`, of re-encrypting to other recipients, and of
// re-exporting an imported archive. Records are copied byte for byte
// unless edit changes them; files of unknown items are passed through
// unchanged with their item versions and options, so a newer archive's data
// survives an older Ferry. The writer-made blob index is rebuilt. The
// caller closes w (its Core and Export come from WriterOptions; use
// r.Core() and r.Manifest().Export to keep them).
func Copy(ctx context.Context, r *Reader, w *Writer, edit EditFunc) (*CopyReport, error) {
	rep := &CopyReport{}
	m := r.Manifest()
	for name, it := range m.Items {
		if !m.ItemKnown(name) || len(it.Opts) > 0 {
			w.SetItem(name, it)
		}
	}
	err := r.Walk(ctx, func(f *File) error {
		// Cut parts as the writer's PartSize asks, as an export does.
		if _, err := w.MaybeCheckpoint(nil); err != nil {
			return err
		}
		if f.Blob != nil {
			rep.Blobs++
			_, err := w.AddBlob(f.BlobPath, f.BlobSize, f.Blob)
			return err
		}
		path := f.Entry.Path
		section := sectionOfPath(path)
		switch {
		case path == CoreFile || section == SectionBlobIndex:
			return nil
		case !f.Known:
			rep.PassedThrough = append(rep.PassedThrough, path)
			return w.AddFile(path, f.Data, f.Entry.Records)
		}
		s, isSection := lookupSection(section)
		if !isSection {
			// A known item's non-record file (none in version 1): keep it.
			return w.AddFile(path, f.Data, f.Entry.Records)
		}
		return RawRecords(r, f, func(raw cbor.RawMessage) error {
			rep.Records++
			if edit == nil {
				return w.AddRaw(section, raw)
			}
			rec := reflect.New(s.typ).Interface()
			if err := r.DecodeRaw(raw, rec); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			before, err := r.codec.enc.Marshal(rec)
			if err != nil {
				return err
			}
			keep, err := edit(section, rec)
			if err != nil || !keep {
				if !keep {
					rep.Dropped++
				}
				return err
			}
			after, err := r.codec.enc.Marshal(rec)
			if err != nil {
				return err
			}
			if bytes.Equal(before, after) {
				return w.AddRaw(section, raw)
			}
			rep.Changed++
			return w.Add(section, rec)
		})
	})
	return rep, err
}
