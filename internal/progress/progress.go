// Package progress is a small progress counter: the total when it is
// known, the units done as they are done, and the end. Work that takes a
// while counts into one, and whoever shows it (a job's progress row, a
// terminal) implements it, instead of taking lines of text to print.
package progress

import (
	"sync"
	"time"
)

// Counter counts the units of one piece of work (records, bytes).
// Implementations are safe for concurrent use.
type Counter interface {
	SetTotal(n int64) // how many units in all; 0: not known
	Add(n int64)      // n more units done
	Done()            // the work has ended (successfully or not)
}

// None counts nothing.
var None Counter = none{}

type none struct{}

func (none) SetTotal(int64) {}
func (none) Add(int64)      {}
func (none) Done()          {}

// Reporting is a Counter that hands its counts to Report: at most every
// Interval (default 1 s) while counting, and always on SetTotal and Done.
type Reporting struct {
	Interval time.Duration
	Report   func(done, total int64, finished bool)

	mu          sync.Mutex
	done, total int64
	last        time.Time
}

func (r *Reporting) SetTotal(n int64) {
	r.mu.Lock()
	r.total = n
	r.mu.Unlock()
	r.report(true, false)
}

func (r *Reporting) Add(n int64) {
	r.mu.Lock()
	r.done += n
	r.mu.Unlock()
	r.report(false, false)
}

func (r *Reporting) Done() { r.report(true, true) }

// Counts returns the units done and the total so far.
func (r *Reporting) Counts() (done, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done, r.total
}

func (r *Reporting) report(force, finished bool) {
	r.mu.Lock()
	interval := r.Interval
	if interval <= 0 {
		interval = time.Second
	}
	now := time.Now()
	if !force && now.Sub(r.last) < interval {
		r.mu.Unlock()
		return
	}
	r.last = now
	done, total := r.done, r.total
	r.mu.Unlock()
	if r.Report != nil {
		r.Report(done, total, finished)
	}
}
