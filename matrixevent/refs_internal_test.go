package matrixevent

import (
	"encoding/json"
	"slices"
	"testing"
)

// ScanStrings, where it answers, gives what encoding/json gives.
func FuzzScanStrings(f *testing.F) {
	for _, s := range []string{`[]`, ` [ ] `, `["$a","$b"]`, "[ \"$a\" ,\n\"$b\" ]", `["$a\"b"]`, `["$a\u0041"]`,
		`[["$a",{"sha256":"x"}]]`, `["\xff"]`, `[null]`, `["$a",]`, `["$a"`, `["$a"]x`, `"x"`, `[1]`, `["é"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return // parseRefs sees values encoding/json already read
		}
		got, ok := ScanStrings(s)
		if !ok {
			return
		}
		want, err := generalRefs(json.RawMessage(s))
		if err != nil || !slices.Equal(got, want) || (got == nil) != (want == nil) {
			t.Fatalf("%q: ScanStrings %q, encoding/json %q (%v)", s, got, want, err)
		}
	})
}
