package archive_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/archive/sample"
)

var (
	openSample = archivetest.OpenSample
	rewrite    = archivetest.Rewrite
	validate   = archivetest.Validate
)

func TestValidateSampleIsClean(t *testing.T) {
	rep := validate(t, openSample(t))
	if !rep.OK() || len(rep.Problems) != 0 {
		t.Fatalf("sample archive has problems: %v", rep.Problems)
	}
	if rep.Events != 106 || rep.Signatures.Valid != 106 || len(rep.Rooms) != 1 || rep.Blobs != 2 {
		t.Fatalf("unexpected report: %+v", rep)
	}
}

func TestCopyIsByteExact(t *testing.T) {
	r := openSample(t)
	out, rep := rewrite(t, r, nil, nil)
	if rep.Records == 0 || rep.Changed != 0 || rep.Blobs != 2 {
		t.Fatalf("copy report %+v", rep)
	}
	records := func(r *archive.Reader) map[string][]string {
		m := map[string][]string{}
		r.Walk(context.Background(), func(f *archive.File) error {
			if f.Data == nil || f.Entry.Path == archive.CoreFile {
				return nil
			}
			section := archive.SectionOf(f.Entry.Path)
			return archive.RawRecords(r, f, func(raw cbor.RawMessage) error {
				m[section] = append(m[section], string(raw))
				return nil
			})
		})
		return m
	}
	a, b := records(r), records(out)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("sections differ: %d vs %d", len(a), len(b))
	}
	for section, recs := range a {
		if !slices.Equal(recs, b[section]) {
			t.Errorf("%s: records differ after the copy", section)
		}
	}
	if !validate(t, out).OK() {
		t.Fatal("copy does not validate")
	}
}

// Each defect Validate claims to find, made by changing one thing in the
// sample archive. want lists the checks that must fire; no other error may.
func TestValidateFindsEachDefect(t *testing.T) {
	r := openSample(t)
	var createID, nameID, bobJoinID string
	ctx := context.Background()
	archive.ReadSection(ctx, r, archive.SectionEvents, func(e *archive.Event) error {
		var ev struct {
			Type     string  `json:"type"`
			StateKey *string `json:"state_key"`
		}
		json.Unmarshal(e.JSON, &ev)
		switch {
		case ev.Type == "m.room.create":
			createID = e.EventID
		case ev.Type == "m.room.name":
			nameID = e.EventID
		case ev.Type == "m.room.member" && *ev.StateKey == "@bob:"+sample.ServerName:
			bobJoinID = e.EventID
		}
		return nil
	})
	firstMessage := true
	cases := []struct {
		name string
		edit archive.EditFunc
		want []archive.Check
	}{
		{"missing auth event", func(s string, rec any) (bool, error) {
			e, ok := rec.(*archive.Event)
			return !ok || e.EventID != createID, nil
		}, []archive.Check{archive.CheckMissingAuthEvent, archive.CheckMissingPrevEvent, archive.CheckSnapshotOutside}},
		{"missing prev event", func(s string, rec any) (bool, error) {
			e, ok := rec.(*archive.Event)
			return !ok || e.EventID != nameID, nil
		}, []archive.Check{archive.CheckMissingPrevEvent, archive.CheckSnapshotOutside}},
		{"snapshot pointing outside the archive", func(s string, rec any) (bool, error) {
			if snap, ok := rec.(*archive.StateSnapshot); ok && snap.ID == 1 {
				snap.Set[0].EventID = "$not-in-this-archive"
			}
			return true, nil
		}, []archive.Check{archive.CheckSnapshotOutside}},
		{"missing snapshot", func(s string, rec any) (bool, error) {
			if e, ok := rec.(*archive.Event); ok && e.EventID == nameID {
				e.StateBefore = 9999
			}
			return true, nil
		}, []archive.Check{archive.CheckMissingSnapshot}},
		{"membership disagreeing with state", func(s string, rec any) (bool, error) {
			if m, ok := rec.(*archive.Membership); ok && m.EventID == bobJoinID {
				m.Membership = "leave"
			}
			return true, nil
		}, []archive.Check{archive.CheckMembershipMismatch}},
		{"bad signature", func(s string, rec any) (bool, error) {
			if e, ok := rec.(*archive.Event); ok && e.EventID == nameID {
				e.JSON = replaceSignature(t, e.JSON)
			}
			return true, nil
		}, []archive.Check{archive.CheckBadSignature}},
		{"content hash", func(s string, rec any) (bool, error) {
			if e, ok := rec.(*archive.Event); ok && firstMessage && json.Valid(e.JSON) && isMessage(e.JSON) {
				firstMessage = false
				e.JSON = setBody(t, e.JSON, "tampered")
			}
			return true, nil
		}, []archive.Check{archive.CheckContentHash}},
		{"event ID mismatch", func(s string, rec any) (bool, error) {
			if e, ok := rec.(*archive.Event); ok && e.EventID == nameID {
				e.EventID = "$forged"
			}
			return true, nil
		}, []archive.Check{archive.CheckEventIDMismatch, archive.CheckMissingPrevEvent, archive.CheckSnapshotOutside}},
		{"dangling media reference", func(s string, rec any) (bool, error) {
			_, isMedia := rec.(*archive.Media)
			return !isMedia, nil
		}, []archive.Check{archive.CheckDanglingMedia}},
		{"missing media file", func(s string, rec any) (bool, error) {
			if m, ok := rec.(*archive.Media); ok {
				m.Path = archive.MediaBlobPath(m.Origin, "elsewhere", "")
			}
			return true, nil
		}, []archive.Check{archive.CheckMissingMediaFile}},
		{"unknown user", func(s string, rec any) (bool, error) {
			u, ok := rec.(*archive.User)
			return !ok || u.UserID != "@bob:"+sample.ServerName, nil
		}, []archive.Check{archive.CheckUnknownUser}},
		{"unsupported room version", func(s string, rec any) (bool, error) {
			if room, ok := rec.(*archive.Room); ok {
				room.Version = "org.example.v99"
			}
			return true, nil
		}, []archive.Check{archive.CheckUnsupportedRoomVersion}},
		{"event in an unknown room", func(s string, rec any) (bool, error) {
			_, isRoom := rec.(*archive.Room)
			return !isRoom, nil
		}, []archive.Check{archive.CheckUnknownRoom}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := rewrite(t, r, tc.edit, nil)
			rep := validate(t, out)
			if rep.OK() {
				t.Fatalf("defect not detected; report: %+v", rep)
			}
			var got []archive.Check
			for _, p := range rep.Problems {
				if p.Severity == archive.SeverityError && !slices.Contains(got, p.Check) {
					got = append(got, p.Check)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("checks fired %v, want %v\n%v", got, want, rep.Problems)
			}
		})
	}
}

func TestValidateReportsDamagedFile(t *testing.T) {
	dir := t.TempDir()
	writeSample(t, dir, keywrap.Key{})
	p := filepath.Join(dir, container.PartName(0))
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 0x10
	os.WriteFile(p, data, 0o644)
	r, err := archive.OpenLocation(context.Background(), dir, archive.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep := validate(t, r)
	if rep.OK() || rep.Counts[archive.CheckFile] != 1 {
		t.Fatalf("damaged part not reported: %+v", rep.Problems)
	}
}

func TestUnknownNamespacePassesThroughCopy(t *testing.T) {
	r := openSample(t)
	vendor := []byte(`{"registration_tokens":[{"token":"abc","uses_allowed":5}]}`)
	withVendor, _ := rewrite(t, r, nil, func(w *archive.Writer) {
		w.SetItem("org.example.vendor", archive.Item{V: archive.ItemVersion{3, 1}, Opts: map[string]any{"mode": "x"}})
		if err := w.AddFile("org.example.vendor/tokens.json", vendor, 1); err != nil {
			t.Fatal(err)
		}
	})
	if got := withVendor.Manifest().UnknownItems(); !slices.Equal(got, []string{"org.example.vendor"}) {
		t.Fatalf("unknown items %v", got)
	}
	if rep := validate(t, withVendor); !rep.OK() || !slices.Equal(rep.Unknown, []string{"org.example.vendor"}) {
		t.Fatalf("unknown namespace must be reported, not an error: %+v", rep)
	}
	again, rep := rewrite(t, withVendor, nil, nil)
	if !slices.Equal(rep.PassedThrough, []string{"org.example.vendor/tokens.json"}) {
		t.Fatalf("passed through %v", rep.PassedThrough)
	}
	it := again.Manifest().Items["org.example.vendor"]
	if !slices.Equal(it.V, archive.ItemVersion{3, 1}) || it.Opts["mode"] != "x" {
		t.Fatalf("item version/options lost: %+v", it)
	}
	var found bool
	again.Walk(context.Background(), func(f *archive.File) error {
		if f.Entry.Path == "org.example.vendor/tokens.json" {
			found = string(f.Data) == string(vendor)
		}
		return nil
	})
	if !found {
		t.Fatal("vendor file not preserved byte for byte")
	}
}

func isMessage(data []byte) bool {
	var ev struct {
		Type string `json:"type"`
	}
	json.Unmarshal(data, &ev)
	return ev.Type == "m.room.message"
}

func replaceSignature(t *testing.T, data []byte) []byte {
	var ev map[string]any
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatal(err)
	}
	for _, sigs := range ev["signatures"].(map[string]any) {
		for k := range sigs.(map[string]any) {
			sigs.(map[string]any)[k] = base64.RawStdEncoding.EncodeToString(make([]byte, 64))
		}
	}
	out, _ := json.Marshal(ev)
	return out
}

func setBody(t *testing.T, data []byte, body string) []byte {
	var ev map[string]any
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatal(err)
	}
	ev["content"].(map[string]any)["body"] = body
	out, _ := json.Marshal(ev)
	return out
}

// Validation checks events in batches that run on across files, taken
// in archive order: the report is the same whether the events lie in one
// file or in hundreds, defects included.
func TestValidateReportDoesNotDependOnFiles(t *testing.T) {
	dir := t.TempDir()
	archivetest.WriteSample(t, dir, keywrap.Key{}, 5000)
	r := archivetest.Open(t, dir, archive.OpenOptions{})
	n := 0
	edit := func(s string, rec any) (bool, error) {
		if e, ok := rec.(*archive.Event); ok && isMessage(e.JSON) {
			n++
			switch n % 997 {
			case 1:
				e.JSON = replaceSignature(t, e.JSON)
			case 2:
				e.JSON = setBody(t, e.JSON, "tampered")
			}
		}
		return true, nil
	}
	reports := map[int]*archive.ValidationReport{}
	files := map[int]int{}
	for _, chunk := range []int{4 << 10, 32 << 20} {
		n = 0
		out := t.TempDir()
		b, err := container.OpenDirBucket(out, true)
		if err != nil {
			t.Fatal(err)
		}
		w, err := archive.NewWriter(context.Background(), &container.BucketStore{Bucket: b}, archive.WriterOptions{
			Export: r.Manifest().Export, Core: r.Core(), ChunkSize: chunk})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := archive.Copy(context.Background(), r, w, edit); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b.Close()
		copied := archivetest.Open(t, out, archive.OpenOptions{})
		files[chunk] = len(copied.Manifest().FilesOf(archive.SectionEvents))
		reports[chunk] = validate(t, copied)
	}
	if files[4<<10] < 100 || files[32<<20] != 1 {
		t.Fatalf("event files: %d and %d, want hundreds and one", files[4<<10], files[32<<20])
	}
	many, one := reports[4<<10], reports[32<<20]
	var listed int64
	for _, f := range r.Manifest().FilesOf(archive.SectionEvents) {
		listed += f.Records
	}
	if many.Events != listed || one.Events != listed {
		t.Fatalf("%d and %d events validated of %d", many.Events, one.Events, listed)
	}
	if one.Errors() < 10 {
		t.Fatalf("%d errors: the defects were not made", one.Errors())
	}
	if !slices.Equal(many.Problems, one.Problems) || many.Events != one.Events || many.Signatures != one.Signatures {
		t.Fatalf("reports differ:\n%d events, %+v\n%v\nagainst\n%d events, %+v\n%v",
			many.Events, many.Signatures, many.Problems, one.Events, one.Signatures, one.Problems)
	}
}
