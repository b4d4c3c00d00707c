package archive_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/archivetest"
)

// Extract's JSON lines say what the records say: each line, parsed, is the
// record decoded into Go values (byte strings holding JSON as that JSON,
// other byte strings base64), one line per record, for every section file
// of the sample.
func TestExtractJSONLinesAreTheRecords(t *testing.T) {
	ctx := context.Background()
	r := archivetest.OpenSample(t)
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := archive.Extract(ctx, r, root, archive.ExtractOptions{JSONL: true}); err != nil {
		t.Fatal(err)
	}
	files := 0
	err = r.Walk(ctx, func(f *archive.File) error {
		if f.Data == nil || !strings.HasSuffix(f.Entry.Path, ".cbor") {
			return nil
		}
		files++
		out, err := root.Open(strings.TrimSuffix(f.Entry.Path, ".cbor") + ".jsonl")
		if err != nil {
			return err
		}
		defer out.Close()
		lines := bufio.NewScanner(out)
		lines.Buffer(nil, 64<<20)
		return archive.RawRecords(r, f, func(raw cbor.RawMessage) error {
			var v any
			if err := r.DecodeRaw(raw, &v); err != nil {
				return err
			}
			want, _ := json.Marshal(asJSON(v))
			if !lines.Scan() {
				t.Fatalf("%s: fewer lines than records", f.Entry.Path)
			}
			var got, wantV any
			if err := json.Unmarshal(lines.Bytes(), &got); err != nil {
				t.Fatalf("%s: %v: %s", f.Entry.Path, err, lines.Bytes())
			}
			json.Unmarshal(want, &wantV)
			if !reflect.DeepEqual(got, wantV) {
				t.Fatalf("%s:\n got %s\nwant %s", f.Entry.Path, lines.Bytes(), want)
			}
			return nil
		})
	})
	if err != nil || files < 10 {
		t.Fatalf("%d files compared: %v", files, err)
	}
}

// asJSON is a decoded record as JSON shows it: byte strings holding JSON
// become that JSON, other byte strings stay base64.
func asJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = asJSON(x)
		}
	case []any:
		for i, x := range t {
			t[i] = asJSON(x)
		}
	case []byte:
		if json.Valid(t) {
			return json.RawMessage(t)
		}
	}
	return v
}
