package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with what the commands print now")

// testdata is absolute: tests change directory (t.Chdir) to run commands
// as an admin would, with relative paths.
var testdata, _ = filepath.Abs("testdata")

// golden compares got with testdata/<name>.golden, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(testdata, name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/bot -run %s -update to write it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from what the command prints now (go test ./cmd/bot -run %s -update rewrites it):\n--- want\n%s\n--- got\n%s", path, t.Name(), want, got)
	}
}

// archiveIDs are random in each run.
var archiveIDs = regexp.MustCompile(`\b[0-9a-f]{32}\b`)

// errorText is an error as main prints it, with dir written as $DIR and
// archive IDs as ARCHIVE-ID.
func errorText(err error, dir string) string {
	if err == nil {
		return "(no error)\n"
	}
	return archiveIDs.ReplaceAllString(strings.ReplaceAll("bot: "+err.Error(), dir, "$DIR"), "ARCHIVE-ID") + "\n"
}
