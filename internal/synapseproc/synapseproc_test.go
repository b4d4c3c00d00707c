package synapseproc

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// scripts/lib/synapse.sh installs the Synapse this package supports.
func TestScriptInstallsTheSupportedVersion(t *testing.T) {
	script, err := os.ReadFile("../../scripts/lib/synapse.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ferry_synapse_version=" + SupportedVersion + "\n", fmt.Sprintf("ferry_synapse_schema=%d\n", SupportedSchema)} {
		if !strings.Contains(string(script), want) {
			t.Errorf("scripts/lib/synapse.sh lacks %q", want)
		}
	}
}

func TestDatabaseArgs(t *testing.T) {
	got, err := databaseArgs("postgres://ferry:s3cret@127.0.0.1:5433/synapse?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`user: "ferry"`, `host: "127.0.0.1"`, "port: 5433", `database: "synapse"`, `password: "s3cret"`} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"mysql://x@h/db", "postgres://127.0.0.1:5432/", "not a url"} {
		if _, err := databaseArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
