package archivediff_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivediff"
	"github.com/ferry-matrix/ferry/archive/archivetest"
)

func compare(t *testing.T, a, b *archive.Reader) *archivediff.Result {
	t.Helper()
	res, err := archivediff.Compare(context.Background(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestIdenticalArchivesAreEqual(t *testing.T) {
	a := archivetest.OpenSample(t)
	b, _ := archivetest.Rewrite(t, a, nil, nil)
	if res := compare(t, a, b); !res.Equal() || res.Compared == 0 {
		t.Fatalf("copy differs: %+v", res)
	}
}

func TestOneChangedFieldIsCaught(t *testing.T) {
	a := archivetest.OpenSample(t)
	b, _ := archivetest.Rewrite(t, a, func(_ string, rec any) (bool, error) {
		if u, ok := rec.(*archive.User); ok && u.UserID == "@bob:sample.ferry.test" {
			u.DisplayName = "Robert"
		}
		return true, nil
	}, nil)
	res := compare(t, a, b)
	if res.Total != 1 || len(res.Differences) != 1 {
		t.Fatalf("want exactly one difference, got %d: %v", res.Total, res.Differences)
	}
	d := res.Differences[0]
	if d.Kind != archivediff.Changed || d.Section != archive.SectionUsers || d.Key != "@bob:sample.ferry.test" ||
		len(d.Fields) != 1 || d.Fields[0] != `displayname: "Bob" -> "Robert"` {
		t.Fatalf("difference %v", d)
	}
}

func TestMissingAndAddedRecords(t *testing.T) {
	a := archivetest.OpenSample(t)
	b, _ := archivetest.Rewrite(t, a, func(_ string, rec any) (bool, error) {
		u, ok := rec.(*archive.User)
		return !ok || u.UserID != "@alice:sample.ferry.test", nil
	}, func(w *archive.Writer) {
		w.Add(archive.SectionUsers, &archive.User{UserID: "@carol:sample.ferry.test"})
	})
	res := compare(t, a, b)
	got := []string{}
	for _, d := range res.Differences {
		got = append(got, string(d.Kind)+" "+d.Key)
	}
	if strings.Join(got, ",") != "only_in_a @alice:sample.ferry.test,only_in_b @carol:sample.ferry.test" {
		t.Fatalf("differences %v", got)
	}
}

// Snapshot IDs are local to an export: renumbering them changes nothing.
func TestSnapshotNumberingIsNormalised(t *testing.T) {
	a := archivetest.OpenSample(t)
	shift := func(id uint64) uint64 {
		if id == 0 {
			return 0
		}
		return id + 1000
	}
	b, _ := archivetest.Rewrite(t, a, func(_ string, rec any) (bool, error) {
		switch v := rec.(type) {
		case *archive.StateSnapshot:
			v.ID, v.Parent = shift(v.ID), shift(v.Parent)
		case *archive.Event:
			v.StateBefore = shift(v.StateBefore)
			v.StreamOrdering += 7
		case *archive.Room:
			v.CurrentState = shift(v.CurrentState)
		}
		return true, nil
	}, nil)
	if res := compare(t, a, b); !res.Equal() {
		t.Fatalf("renumbered snapshots differ: %v", res.Differences)
	}
	// ...but pointing an event at another state does.
	c, _ := archivetest.Rewrite(t, a, func(_ string, rec any) (bool, error) {
		if e, ok := rec.(*archive.Event); ok && e.StateBefore == 3 {
			e.StateBefore = 2
		}
		return true, nil
	}, nil)
	res := compare(t, a, c)
	if res.Total != 1 || !strings.HasPrefix(res.Differences[0].Fields[0], "state_before: ") {
		t.Fatalf("changed state not caught: %v", res.Differences)
	}
}
