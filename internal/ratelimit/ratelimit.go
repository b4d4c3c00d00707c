// Package ratelimit is a token bucket per key, for the HTTP API and the
// bot's commands, with what an HTTP server needs around it: the client
// address of a request (X-Forwarded-For only from trusted proxies) and a
// tally that reports refusals once per key and window instead of once per
// request.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Limiter is a token bucket per key (a client, a user): rate tokens a
// second, up to burst. Safe for concurrent use; idle keys are forgotten.
type Limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	buckets map[string]*bucket
	// sweepAt is the number of buckets at which idle ones are next looked
	// for: twice what the last sweep kept, so that many live keys don't
	// make every new key scan the map.
	sweepAt int
}

type bucket struct {
	tokens float64
	last   time.Time
}

const minSweep = 10000

// New makes a limiter.
func New(rate float64, burst int) *Limiter {
	return &Limiter{rate: rate, burst: float64(max(burst, 1)), buckets: map[string]*bucket{}, sweepAt: minSweep}
}

// Allow takes a token of key, if it has one.
func (l *Limiter) Allow(key string) bool {
	ok, _ := l.Take(key)
	return ok
}

// Take takes a token of key, if it has one; if not, it says how long until
// one is there (for a Retry-After answer).
func (l *Limiter) Take(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.sweepAt { // forget idle clients
			for k, old := range l.buckets {
				if now.Sub(old.last) > time.Minute {
					delete(l.buckets, k)
				}
			}
			l.sweepAt = max(minSweep, 2*len(l.buckets))
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		if l.rate <= 0 {
			return false, time.Hour
		}
		return false, time.Duration(math.Ceil((1-b.tokens)/l.rate*1e9)) * time.Nanosecond
	}
	b.tokens--
	return true, 0
}
