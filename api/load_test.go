package api

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/internal/testrig/loadcheck"
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
	var rec loadcheck.Recorder
	stop := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for c := 0; c < 50; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			client := &http.Client{}
			for time.Now().Before(stop) {
				rec.Get(client, e.srv.URL+"/api/v1/exports/"+ids[c%2], "Authorization", "Bearer "+readerToken)
			}
		}(c)
	}
	wg.Wait()
	b.ReportMetric(float64(rec.Count()), "requests")
	b.ReportMetric(rec.Percentile(0.5), "p50-ms")
	b.ReportMetric(rec.Percentile(0.99), "p99-ms")
	b.ReportMetric(float64(rec.Failed()), "failed")
	if rec.Failed() > 0 {
		b.Fatalf("%d of %d status requests failed", rec.Failed(), rec.Count())
	}
	for _, id := range ids {
		e.do(b, "DELETE", "/api/v1/exports/"+id, adminToken, "")
	}
}
