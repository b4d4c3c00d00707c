package fidelity_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
	"github.com/ferry-matrix/ferry/fidelity"
)

// A crafted archive and target that together trigger every reason code:
// the report must name each one, with the IDs it concerns.
func TestPreviewTriggersEveryCode(t *testing.T) {
	r := archivetest.OpenSample(t)
	var nameEvent, unverifiable, invalid string
	messages := 0
	crafted, _ := archivetest.Rewrite(t, r, func(section string, rec any) (bool, error) {
		e, ok := rec.(*archive.Event)
		if !ok {
			return true, nil
		}
		var ev map[string]any
		json.Unmarshal(e.JSON, &ev)
		switch {
		case ev["type"] == "m.room.name":
			nameEvent = e.EventID
			return false, nil // its successor's prev event goes missing
		case ev["type"] == "m.room.message":
			messages++
			sigs := ev["signatures"].(map[string]any)
			for server, keys := range sigs {
				for keyID, sig := range keys.(map[string]any) {
					switch messages {
					case 1: // signed by a key the archive does not hold
						unverifiable = e.EventID
						sigs[server] = map[string]any{"ed25519:rotated": sig}
					case 2: // a signature that does not verify
						invalid = e.EventID
						keys.(map[string]any)[keyID] = strings.Repeat("A", 86)
					}
				}
			}
			e.JSON, _ = json.Marshal(ev)
		}
		return true, nil
	}, func(w *archive.Writer) {
		for _, o := range []archive.Omission{
			{Code: string(fidelity.ExcludedByDefault), Item: "m.e2ee/keys#one_time", ID: "@alice:sample.ferry.test/DEVICE", Detail: "12 one-time keys"},
			{Code: string(fidelity.ExcludedByFilter), Item: archive.SectionEvents, ID: "!other:sample.ferry.test"},
			{Code: string(fidelity.SourceMissing), Item: archive.SectionMedia, ID: "mxc://sample.ferry.test/gone", Detail: "file missing from the media store"},
			{Code: string(fidelity.SourceCorrupt), Item: archive.SectionAccountData, ID: "@bob:sample.ferry.test", Detail: "content is not JSON"},
			{Code: string(fidelity.PasswordUnusable), Item: archive.SectionUsers, ID: "@bob:sample.ferry.test", Detail: "password pepper configured"},
		} {
			if err := w.Add(archive.SectionOmissions, &o); err != nil {
				t.Fatal(err)
			}
		}
		w.SetItem("m.e2ee", archive.Item{V: archive.ItemVersion{2}})
		if err := w.AddFile("m.e2ee/future.json", []byte(`{}`), 1); err != nil {
			t.Fatal(err)
		}
		if err := w.AddFile("m.future/things.json", []byte(`[]`), 3); err != nil {
			t.Fatal(err)
		}
		if err := w.AddFile("org.matrix.synapse/registration_tokens.json", []byte(`[]`), 2); err != nil {
			t.Fatal(err)
		}
	})
	v := archivetest.Validate(t, crafted)
	target := &fidelity.Target{Name: "example-server", RoomVersions: []string{"9"},
		Sections: map[string]fidelity.Handling{archive.SectionStateSnapshots: fidelity.Rebuilds}}
	rep := fidelity.Preview(crafted, v, target)

	byCode := map[fidelity.Code][]fidelity.Entry{}
	for _, e := range rep.Entries {
		byCode[e.Code] = append(byCode[e.Code], e)
	}
	for _, info := range fidelity.Codes {
		if len(byCode[info.Code]) == 0 {
			t.Errorf("code %s not triggered", info.Code)
		}
		for _, e := range byCode[info.Code] {
			if e.Outcome != info.Outcome {
				t.Errorf("%s has outcome %s, want %s", info.Code, e.Outcome, info.Outcome)
			}
		}
	}
	wantIDs := map[fidelity.Code]string{
		fidelity.SignatureUnverifiable:  unverifiable,
		fidelity.SignatureInvalid:       invalid,
		fidelity.RoomVersionUnsupported: "!sample:sample.ferry.test",
		fidelity.PasswordUnusable:       "@bob:sample.ferry.test",
	}
	for code, id := range wantIDs {
		if e := byCode[code]; len(e) != 1 || e[0].ID != id {
			t.Errorf("%s entries %+v, want one for %s", code, e, id)
		}
	}
	if e := byCode[fidelity.MissingEvent]; len(e) != 1 || !strings.Contains(e[0].Detail, nameEvent) {
		t.Errorf("missing event entries %+v, want the dropped %s", e, nameEvent)
	}
	if e := byCode[fidelity.TargetNoPlace]; len(e) != 1 || e[0].Item != "org.matrix.synapse" || e[0].Count != 2 {
		t.Errorf("no-place entries %+v", e)
	}
	text := rep.String()
	for _, info := range fidelity.Codes {
		if !strings.Contains(text, string(info.Code)) {
			t.Errorf("rendered report lacks %s", info.Code)
		}
	}
}

func TestPreviewOfCleanArchiveIsLossless(t *testing.T) {
	r := archivetest.OpenSample(t)
	rep := fidelity.Preview(r, archivetest.Validate(t, r), nil)
	if !rep.Lossless() {
		t.Fatalf("clean sample archive reported:\n%s", rep)
	}
}

func TestReportFoldsBeyondMaxIDs(t *testing.T) {
	var rep fidelity.Report
	for i := 0; i < fidelity.MaxIDs+50; i++ {
		rep.Add(fidelity.ExcludedByDefault, "m.e2ee/keys#one_time", "id", "")
	}
	if len(rep.Entries) != fidelity.MaxIDs+1 || rep.Totals()[fidelity.ExcludedByDefault] != fidelity.MaxIDs+50 {
		t.Fatalf("entries %d totals %v", len(rep.Entries), rep.Totals())
	}
}
