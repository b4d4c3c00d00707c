// Package scripts holds tests of the shell scripts' own logic.
package scripts

import (
	"os/exec"
	"strings"
	"testing"
)

// A failing step does not stop the steps after it; the run fails at the
// end and names every failed step.
func TestStepsRunAllAndFailAtTheEnd(t *testing.T) {
	script := `set -euo pipefail
source lib/steps.sh
step "first" false
step "second" echo ran-second
step "third" sh -c 'exit 3'
steps_finish
echo not-reached`
	out, err := exec.Command("bash", "-c", script).CombinedOutput()
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	for _, want := range []string{"ran-second", "FAILED steps: first third"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "not-reached") {
		t.Errorf("continued after steps_finish:\n%s", out)
	}

	out, err = exec.Command("bash", "-c", "set -euo pipefail\nsource lib/steps.sh\nstep ok true\nsteps_finish").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all steps passed") {
		t.Fatalf("all passing: %v\n%s", err, out)
	}
}
