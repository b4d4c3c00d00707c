package progress

import (
	"testing"
	"time"
)

func TestReporting(t *testing.T) {
	type call struct {
		done, total int64
		finished    bool
	}
	var calls []call
	r := &Reporting{Interval: time.Hour, Report: func(d, tot int64, f bool) { calls = append(calls, call{d, tot, f}) }}
	var c Counter = r
	c.SetTotal(10)
	for range 10 {
		c.Add(1) // within the interval: not reported
	}
	c.Done()
	want := []call{{0, 10, false}, {10, 10, true}}
	if len(calls) != len(want) || calls[0] != want[0] || calls[1] != want[1] {
		t.Fatalf("reported %+v, want %+v", calls, want)
	}
	if d, tot := r.Counts(); d != 10 || tot != 10 {
		t.Errorf("counts %d/%d", d, tot)
	}
	None.SetTotal(1)
	None.Add(1)
	None.Done()
}
