package testenv

import (
	"os"
	"testing"
)

// Chromium returns the path of the Chromium the browser tests drive:
// $FERRY_CHROMIUM, or Debian's /usr/bin/chromium (scripts/test installs
// the chromium package when it is missing). Without one the test is
// skipped, or fails under FERRY_REQUIRE_SERVICES=1.
func Chromium(t testing.TB) string {
	t.Helper()
	if os.Getenv("FERRY_CHROMIUM") != "" {
		return need(t, "FERRY_CHROMIUM", "Chromium")
	}
	const debian = "/usr/bin/chromium"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	const msg = "Chromium is not available: install Debian's chromium package (scripts/test does) or set FERRY_CHROMIUM"
	if os.Getenv("FERRY_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
