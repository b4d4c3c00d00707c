// Package loadcheck records what the load benchmarks measure: the
// latency of each request that many concurrent clients make, and how many
// failed; it reports p50 and p99 as benchmark metrics.
package loadcheck

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Recorder collects latencies and failures; its methods are safe for
// concurrent clients.
type Recorder struct {
	mu     sync.Mutex
	lat    []time.Duration
	failed atomic.Int64
}

// Get makes one request with client, headers given as name, value pairs,
// and records its latency; anything but 200 counts as failed.
func (r *Recorder) Get(client *http.Client, url string, headers ...string) {
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	start := time.Now()
	resp, err := client.Do(req)
	d := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		r.Fail()
	}
	if resp != nil {
		resp.Body.Close()
	}
	r.Add(d)
}

// Add records one latency.
func (r *Recorder) Add(d time.Duration) {
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.mu.Unlock()
}

// Fail counts one failure.
func (r *Recorder) Fail() { r.failed.Add(1) }

// Failed is how many failed so far.
func (r *Recorder) Failed() int64 { return r.failed.Load() }

// Count is how many latencies were recorded.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lat)
}

// Percentile is the q quantile (0..1) of the latencies, in milliseconds
// (0 without any).
func (r *Recorder) Percentile(q float64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lat) == 0 {
		return 0
	}
	slices.Sort(r.lat)
	return float64(r.lat[int(q*float64(len(r.lat)-1))].Microseconds()) / 1000
}

// Report reports the count, p50 and p99 as metrics named after what
// ("requests", "requests-p50-ms", ...), and the failures as "failed".
func (r *Recorder) Report(b *testing.B, what string) {
	b.ReportMetric(float64(r.Count()), what)
	b.ReportMetric(r.Percentile(0.5), what+"-p50-ms")
	b.ReportMetric(r.Percentile(0.99), what+"-p99-ms")
}
