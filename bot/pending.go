package bot

import (
	"sync"
	"time"
)

// pending holds values that wait a while for a code (a !confirm code, an
// /unlock/ token) and are then taken once or expire.
type pending[T any] struct {
	mu    sync.Mutex
	items map[string]pendingItem[T]
}

type pendingItem[T any] struct {
	v       T
	expires time.Time
}

// put keeps v under code for ttl, dropping what has expired.
func (p *pending[T]) put(code string, v T, ttl time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.items == nil {
		p.items = map[string]pendingItem[T]{}
	}
	for c, it := range p.items {
		if now.After(it.expires) {
			delete(p.items, c)
		}
	}
	p.items[code] = pendingItem[T]{v: v, expires: now.Add(ttl)}
}

// get returns what waits under code, if it has not expired; take (when
// set) decides whether this caller takes it (it is then removed).
func (p *pending[T]) get(code string, take func(T) bool) (T, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	it, ok := p.items[code]
	if !ok || time.Now().After(it.expires) {
		var zero T
		return zero, false
	}
	if take != nil && take(it.v) {
		delete(p.items, code)
	}
	return it.v, true
}
