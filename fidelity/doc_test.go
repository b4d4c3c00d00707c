package fidelity

import (
	"os"
	"regexp"
	"testing"
)

// FORMAT.md's table of reason codes is exactly Codes, with the same outcomes.
func TestFormatDocumentsEveryCode(t *testing.T) {
	doc, err := os.ReadFile("../docs/FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (omitted|skipped|rebuilt|lost|degraded) \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = m[2]
	}
	if len(documented) != len(Codes) {
		t.Errorf("FORMAT.md lists %d codes, the code %d", len(documented), len(Codes))
	}
	for _, info := range Codes {
		if documented[string(info.Code)] != string(info.Outcome) {
			t.Errorf("%s: FORMAT.md says %q, the code %q", info.Code, documented[string(info.Code)], info.Outcome)
		}
	}
}
