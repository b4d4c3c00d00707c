package archivediff

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"

	"github.com/ferry-matrix/ferry/archive"
)

// stateDigests turns export-local snapshot IDs into digests of the full
// state they stand for, so that two exports that number snapshots
// differently compare equal when their states are.
type stateDigests struct {
	snaps map[uint64]*archive.StateSnapshot
	memo  map[uint64]string
}

func loadSnapshots(ctx context.Context, r *archive.Reader) (*stateDigests, error) {
	st := &stateDigests{snaps: map[uint64]*archive.StateSnapshot{}, memo: map[uint64]string{}}
	if len(r.Manifest().FilesOf(archive.SectionStateSnapshots)) == 0 || !r.Manifest().ItemKnown("m.state") {
		return st, nil
	}
	err := archive.ReadSection(ctx, r, archive.SectionStateSnapshots, func(s *archive.StateSnapshot) error {
		c := *s
		st.snaps[s.ID] = &c
		return nil
	})
	return st, err
}

// of returns the digest of snapshot id's resolved state ("" for none, and
// a marker for a snapshot the archive lacks).
func (st *stateDigests) of(id uint64) string {
	if id == 0 {
		return ""
	}
	if d, ok := st.memo[id]; ok {
		return d
	}
	var chain []*archive.StateSnapshot
	seen := map[uint64]bool{}
	for cur := id; cur != 0 && !seen[cur]; {
		seen[cur] = true
		s, ok := st.snaps[cur]
		if !ok {
			return fmt.Sprintf("missing snapshot %d", cur)
		}
		chain = append(chain, s)
		cur = s.Parent
	}
	state := map[[2]string]string{}
	for i := len(chain) - 1; i >= 0; i-- {
		for _, k := range chain[i].Remove {
			delete(state, [2]string{k.Type, k.StateKey})
		}
		for _, e := range chain[i].Set {
			state[[2]string{e.Type, e.StateKey}] = e.EventID
		}
	}
	keys := make([][2]string, 0, len(state))
	for k := range state {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%q %q %q\n", k[0], k[1], state[k])
	}
	d := fmt.Sprintf("state:%d entries:%x", len(keys), h.Sum(nil)[:12])
	st.memo[id] = d
	return d
}
