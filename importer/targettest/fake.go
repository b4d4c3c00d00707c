package targettest

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/fidelity"
	"github.com/ferry-matrix/ferry/importer"
)

// Fake is an in-memory import target of one server that keeps every
// record of the archive's known sections, one at a time, and follows the
// contract as a real target must (refusals, reruns, cancellation between
// records, progress): for tests of the suite itself and of code that runs
// imports without a homeserver. The zero value is not usable: NewFake.
type Fake struct {
	serverName string

	mu      sync.Mutex
	users   int64                      // users no import wrote
	records map[string]map[string]bool // section -> record keys ("path#n")
	started string                     // the archive whose import was started here
}

var _ importer.Target = (*Fake)(nil)

// NewFake returns an empty fake target for serverName.
func NewFake(serverName string) *Fake {
	return &Fake{serverName: serverName, records: map[string]map[string]bool{}}
}

// Populate adds n users that no import wrote: the target is no longer
// empty.
func (f *Fake) Populate(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users += n
}

// Capabilities: the fake holds everything.
func (f *Fake) Capabilities() *fidelity.Target { return &fidelity.Target{Name: "Fake 1"} }

func (f *Fake) Check(_ context.Context, r *archive.Reader, opts importer.Options) (*importer.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name := r.Core().ServerName; name != f.serverName {
		return nil, importer.Refuse("the archive is of server %q, the target %q", name, f.serverName)
	}
	s := &importer.State{Name: "Fake 1", Users: f.users + int64(len(f.records[archive.SectionUsers])),
		Rooms: int64(len(f.records[archive.SectionRooms])), Resuming: f.started == r.Manifest().ArchiveID}
	if (s.Users > 0 || s.Rooms > 0) && !s.Resuming && !opts.AllowNonEmpty {
		return nil, importer.Refuse("the target is not empty (%d users, %d rooms)", s.Users, s.Rooms)
	}
	return s, nil
}

// Import keeps the records of the known m.* sections in one phase,
// checking ctx before each.
func (f *Fake) Import(ctx context.Context, r *archive.Reader, _ importer.Options, p importer.Progress, res *importer.Result) error {
	if p == nil {
		p = importer.NoProgress
	}
	m := r.Manifest()
	res.InArchive = map[string]int64{}
	for _, file := range m.Files {
		if s := archive.SectionOf(file.Path); f.keeps(m, s) {
			res.InArchive[s] += file.Records
		}
	}
	var total int64
	for _, n := range res.InArchive {
		total += n
	}
	f.mu.Lock()
	f.started = m.ArchiveID
	f.mu.Unlock()
	p.Phase("importing records", total)
	return r.Walk(ctx, func(file *archive.File) error {
		s := archive.SectionOf(file.Entry.Path)
		if file.Data == nil || !f.keeps(m, s) {
			return nil
		}
		for i := range file.Entry.Records {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("importing %s: %w", file.Entry.Path, err)
			}
			key := fmt.Sprintf("%s#%d", file.Entry.Path, i)
			f.mu.Lock()
			if f.records[s] == nil {
				f.records[s] = map[string]bool{}
			}
			if f.records[s][key] {
				res.Skipped++
			}
			f.records[s][key] = true
			f.mu.Unlock()
			p.Add(1)
		}
		return nil
	})
}

// keeps: the records of known m.* sections.
func (f *Fake) keeps(m *archive.Manifest, section string) bool {
	return strings.HasPrefix(section, "m.") && m.ItemKnown(archive.ItemOf(section))
}

// ReadBack counts the records kept per section, and the users no import
// wrote.
func (f *Fake) ReadBack(context.Context, importer.Options) (map[string]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int64{}
	for s, keys := range f.records {
		out[s] = int64(len(keys))
	}
	if f.users > 0 {
		out["populated users"] = f.users
	}
	return out, nil
}
