package api

import (
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkStatusUnderLoad is the load check: 50 concurrent clients poll
// export status for 5 seconds while two exports run; it reports p50/p99
// latency and fails if any request fails. Not part of CI:
//
//	go test -run '^$' -bench StatusUnderLoad -benchtime 1x ./api/
func BenchmarkStatusUnderLoad(b *testing.B) {
	e := newEnv(b, 1e6, 1e6)
	e.fake.Users = 200000
	e.fake.OnUser = func(int) error { time.Sleep(20 * time.Microsecond); return nil }
	var ids []string
	for i := 0; i < 2; i++ {
		_, out := e.do(b, "POST", "/api/v1/exports", adminToken, `{"type":"full","plaintext":true}`)
		ids = append(ids, out["export_id"].(string))
	}
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	stop := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for c := 0; c < 50; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			client := &http.Client{}
			for time.Now().Before(stop) {
				req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/exports/"+ids[c%2], nil)
				req.Header.Set("Authorization", "Bearer "+readerToken)
				start := time.Now()
				resp, err := client.Do(req)
				d := time.Since(start)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat)), "requests")
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	b.ReportMetric(float64(failed.Load()), "failed")
	if failed.Load() > 0 {
		b.Fatalf("%d of %d status requests failed", failed.Load(), len(lat))
	}
	for _, id := range ids {
		e.do(b, "DELETE", "/api/v1/exports/"+id, adminToken, "")
	}
}
