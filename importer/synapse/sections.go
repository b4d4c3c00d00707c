package synapse

import (
	"context"
	"sync"

	"github.com/ferry-matrix/ferry/archive"
)

// A data part is one encrypted, compressed stream: reading one section of
// it decrypts and decompresses the whole part. The small sections a
// restore reads one by one (users, account data, rooms, receipts,
// pushers...) share the first part with the bulk of the events, so each
// would cost a pass over that part. A restore reads their verified files
// in one walk instead, and keeps them (at most smallSectionsMax bytes;
// beyond that each is read as before, so memory stays bounded whatever
// the server's size) until it ends.

// smallSections are the sections read once and kept.
var smallSections = []string{archive.SectionUsers, archive.SectionAccountData, archive.SectionFilters, archive.SectionBackupVersions,
	archive.SectionBackupSessions, archive.SectionDevices, archive.SectionE2EEKeys, archive.SectionRooms, archive.SectionReceipts,
	archive.SectionPushers, archive.SectionRedactions, archive.SectionMedia}

// smallSectionsMax bounds the bytes kept.
const smallSectionsMax = 128 << 20

// keptFiles are the verified files of an archive's small sections, by path.
type keptFiles map[string][]byte

// kept holds, per reader a restore is running on, its kept files.
var kept sync.Map // *archive.Reader -> keptFiles

// keepSmallSections reads the small sections' files in one walk and keeps
// them for readSection until the returned func is called. When they are
// larger than smallSectionsMax, nothing is kept.
func keepSmallSections(ctx context.Context, r *archive.Reader) (func(), error) {
	m := r.Manifest()
	var paths []string
	var size int64
	for _, s := range smallSections {
		if !m.ItemKnown(archive.ItemOf(s)) {
			continue
		}
		for _, f := range m.FilesOf(s) {
			paths = append(paths, f.Path)
			size += f.Size
		}
	}
	if size > smallSectionsMax || len(paths) == 0 {
		return func() {}, nil
	}
	files := keptFiles{}
	err := r.ReadFiles(ctx, paths, func(path string, data []byte) error {
		files[path] = data
		return nil
	})
	if err != nil {
		return nil, err
	}
	kept.Store(r, files)
	return func() { kept.Delete(r) }, nil
}

// readSection is archive.ReadSection, from the kept files when the
// section's are.
func readSection[T any](ctx context.Context, r *archive.Reader, section string, fn func(*T) error) error {
	v, ok := kept.Load(r)
	if !ok {
		return archive.ReadSection(ctx, r, section, fn)
	}
	files := v.(keptFiles)
	entries := r.Manifest().FilesOf(section)
	for _, e := range entries {
		if _, ok := files[e.Path]; !ok {
			return archive.ReadSection(ctx, r, section, fn)
		}
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		f := &archive.File{Entry: e, Data: files[e.Path], Known: true}
		if err := archive.DecodeRecords(r, f, fn); err != nil {
			return err
		}
	}
	return nil
}
