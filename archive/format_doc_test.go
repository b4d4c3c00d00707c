package archive

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/FORMAT.md's record tables, check table and section list must match
// the code: every section has a heading, every CBOR field a row, and no
// row names a field the type lacks.
func TestFormatDocumentsEveryField(t *testing.T) {
	doc, err := os.ReadFile("../docs/FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile("(?m)^### `([^`]+)` — (\\w+)$")
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\|")
	blocks := map[string][]string{}
	matches := heading.FindAllStringSubmatchIndex(string(doc), -1)
	for i, m := range matches {
		end := len(doc)
		if i+1 < len(matches) {
			end = matches[i+1][0]
		}
		if next := strings.Index(string(doc[m[1]:end]), "\n## "); next >= 0 {
			end = m[1] + next
		}
		name := string(doc[m[2]:m[3]])
		for _, r := range row.FindAllStringSubmatch(string(doc[m[1]:end]), -1) {
			blocks[name] = append(blocks[name], r[1])
		}
	}
	for _, s := range knownSections {
		documented, ok := blocks[s.name]
		if !ok {
			t.Errorf("section %s has no heading in FORMAT.md", s.name)
			continue
		}
		var fields []string
		for f := range s.typ.Fields() {
			fields = append(fields, cborName(f))
		}
		for _, f := range fields {
			if !slices.Contains(documented, f) {
				t.Errorf("%s: field %s is not documented", s.name, f)
			}
		}
		for _, f := range documented {
			if !slices.Contains(fields, f) {
				t.Errorf("%s: FORMAT.md documents %s, which the type lacks", s.name, f)
			}
		}
	}
	for _, c := range AllChecks {
		if !strings.Contains(string(doc), "| `"+string(c)+"` |") {
			t.Errorf("check %s is not in FORMAT.md's table", c)
		}
	}
}

func cborName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("cbor"), ",")
	return name
}
