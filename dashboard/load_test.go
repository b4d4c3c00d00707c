package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/internal/testrig/loadcheck"
	"github.com/ferry-matrix/ferry/jobs"
	"github.com/ferry-matrix/ferry/links"
	"github.com/ferry-matrix/ferry/source"
	"github.com/ferry-matrix/ferry/source/sourcetest"
	"github.com/ferry-matrix/ferry/storage"
	"github.com/ferry-matrix/ferry/store"
)

// BenchmarkDashboardUnderLoad is the dashboard's load check, on the real
// application layer (SQLite state, file:// storage, an in-memory source
// slowed so that two exports run throughout): 50 signed-in sessions each
// keep the event stream open and load the exports page in a loop for 5
// seconds. It reports the page's p50/p99 latency, the stream's time to
// its first event (p50/p99) and the events each session received, and
// fails if any request or stream failed. Not part of CI:
//
//	go test -run '^$' -bench DashboardUnderLoad -benchtime 1x ./dashboard/
func BenchmarkDashboardUnderLoad(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+b.TempDir()+"/ferry.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	bucket, err := storage.Open(ctx, "file://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bucket.Close() })
	fake := &sourcetest.Fake{Users: 200000, OnUser: func(int) error { time.Sleep(20 * time.Microsecond); return nil }}
	js := jobs.New(st, bucket)
	js.Instance, js.PartSize = "dashboard-load", 16<<10
	js.Open = func(context.Context, string) (source.Source, error) { return fake, nil }
	stop, err := js.Start(ctx, jobs.Config{FetchPollInterval: 50 * time.Millisecond, Concurrency: 2})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stop(context.Background()) })
	signer, _ := links.NewSigner(bytes.Repeat([]byte{9}, 32), nil)
	a := app.New(st, bucket, js, &links.Handler{Store: bucket, Signer: signer}, app.Config{Source: "fake", BaseURL: "http://ferry.test"})
	srv := httptest.NewServer((&Server{Svc: a}).Handler())
	b.Cleanup(srv.Close)

	const sessions = 50
	var cookies []string
	for i := range sessions {
		link, err := a.IssueLogin(ctx, "@admin:example.org", app.RoleAdmin, app.Actor{Name: "@admin:example.org", Via: "room !admins:example.org"})
		if err != nil {
			b.Fatal(err)
		}
		_, token, err := a.Login(ctx, link[strings.LastIndex(link, "/")+1:], "bench")
		if err != nil {
			b.Fatalf("session %d: %v", i, err)
		}
		cookies = append(cookies, sessionCookie+"="+token)
	}
	var ids []string
	for range 2 {
		v, err := a.Submit(ctx, app.ExportRequest{Plaintext: true, By: app.Actor{Name: "@admin:example.org", Via: "api"}})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, v.ID)
	}

	var pages, firsts loadcheck.Recorder
	var events atomic.Int64
	streamCtx, endStreams := context.WithCancel(ctx)
	stopAt := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for c := range sessions {
		wg.Add(2)
		go func() { // the event stream, open all along
			defer wg.Done()
			req, _ := http.NewRequestWithContext(streamCtx, "GET", srv.URL+"/ui/events", nil)
			req.Header.Set("Cookie", cookies[c])
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				firsts.Fail()
				return
			}
			defer resp.Body.Close()
			lines := bufio.NewScanner(resp.Body)
			lines.Buffer(nil, 1<<20)
			first := true
			for lines.Scan() {
				if !strings.HasPrefix(lines.Text(), "data: ") {
					continue
				}
				if first {
					first = false
					firsts.Add(time.Since(start))
				}
				events.Add(1)
			}
			if streamCtx.Err() == nil || first { // ended early, or never sent anything
				firsts.Fail()
			}
		}()
		go func() { // the exports page, again and again
			defer wg.Done()
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for time.Now().Before(stopAt) {
				pages.Get(client, srv.URL+"/ui/exports", "Cookie", cookies[c])
			}
		}()
	}
	time.Sleep(time.Until(stopAt))
	running := 0
	for _, id := range ids {
		if v, err := a.Get(ctx, id); err == nil && v.Running() {
			running++
		}
	}
	endStreams()
	wg.Wait()
	if running != 2 {
		b.Errorf("%d of the 2 exports still ran at the end: make the source slower", running)
	}
	pages.Report(b, "page")
	b.ReportMetric(firsts.Percentile(0.5), "stream-first-event-p50-ms")
	b.ReportMetric(firsts.Percentile(0.99), "stream-first-event-p99-ms")
	b.ReportMetric(float64(events.Load())/sessions, "events/stream")
	failed := pages.Failed() + firsts.Failed()
	b.ReportMetric(float64(failed), "failed")
	if failed > 0 {
		b.Fatalf("%d pages and %d streams failed (of %d pages)", pages.Failed(), firsts.Failed(), pages.Count())
	}
	for _, id := range ids {
		a.Cancel(ctx, id, app.Actor{Name: "@admin:example.org", Via: "api"})
	}
}
