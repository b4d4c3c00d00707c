package ratelimit

import (
	"sync"
	"time"
)

// Tally counts events per key (refused requests per client) and reports
// each key's count once per window, when the window ends: a flood makes
// one report per key and window instead of one per request. Safe for
// concurrent use.
type Tally struct {
	// Window is how long counts are gathered (default a minute).
	Window time.Duration
	// Report gets each key's count and the span it covers.
	Report func(key string, n int, from, to time.Time)

	mu   sync.Mutex
	open map[string]*window
}

type window struct {
	n        int
	from, to time.Time
	timer    *time.Timer
}

// Add counts one event of key.
func (t *Tally) Add(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if w := t.open[key]; w != nil {
		w.n++
		w.to = now
		return
	}
	if t.open == nil {
		t.open = map[string]*window{}
	}
	d := t.Window
	if d <= 0 {
		d = time.Minute
	}
	w := &window{n: 1, from: now, to: now}
	w.timer = time.AfterFunc(d, func() { t.close(key, w) })
	t.open[key] = w
}

func (t *Tally) close(key string, w *window) {
	t.mu.Lock()
	if t.open[key] != w {
		t.mu.Unlock()
		return
	}
	delete(t.open, key)
	n, from, to := w.n, w.from, w.to
	t.mu.Unlock()
	if t.Report != nil {
		t.Report(key, n, from, to)
	}
}

// Flush reports every open window now (at shutdown, in tests).
func (t *Tally) Flush() {
	t.mu.Lock()
	open := t.open
	t.open = nil
	t.mu.Unlock()
	for key, w := range open {
		w.timer.Stop()
		if t.Report != nil {
			t.Report(key, w.n, w.from, w.to)
		}
	}
}
