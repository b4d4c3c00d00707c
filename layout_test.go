package ferry

import (
	"os/exec"
	"strings"
	"testing"
)

// testRigs is where the test harnesses live: they start servers, seed
// them and compare what clients see, and product code never imports them.
const testRigs = "github.com/ferry-matrix/ferry/internal/testrig/"

// No package of the product (anything but the rigs themselves) imports a
// test rig; only tests do.
func TestNoProductCodeImportsTestRigs(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	packages := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], testRigs) {
			continue
		}
		packages++
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, testRigs) {
				t.Errorf("%s imports the test rig %s: move what it needs out of internal/testrig", fields[0], imp)
			}
		}
	}
	if packages < 20 {
		t.Fatalf("go list found only %d product packages:\n%s", packages, out)
	}
}
