package sqlq

import "testing"

func TestDollar(t *testing.T) {
	if got := Dollar("SELECT a FROM t WHERE b = ? AND c IN (?, ?)"); got != "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)" {
		t.Fatal(got)
	}
}
