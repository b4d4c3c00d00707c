package archive_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// Throughput of the archive pipeline (CBOR encode -> tar -> zstd ->
// AES-256-GCM streaming AEAD) and of reading it back with every check, in
// MB/s of record data, with the peak heap at two sizes: the peak must not
// grow with the size. Run: go test -run '^$' -bench . -benchtime 1x ./archive/
// (or make bench). Figures are in the closing notes of issue 2.

var benchSizes = []int{64 << 20, 512 << 20}

// benchPool holds synthetic events generated once (more than the zstd
// window, so repeats do not compress away), so that generating them is not
// what the benchmark measures.
var benchPool = sync.OnceValue(func() []*archive.Event {
	var pool []*archive.Event
	genEvents(24<<20, func(e *archive.Event) error { pool = append(pool, e); return nil })
	return pool
})

// benchEvents yields total bytes of events from the pool.
func benchEvents(total int, fn func(*archive.Event) error) (int64, error) {
	pool := benchPool()
	var written int64
	for i := 0; written < int64(total); i++ {
		e := pool[i%len(pool)]
		written += int64(len(e.JSON)) + 80
		if err := fn(e); err != nil {
			return written, err
		}
	}
	return written, nil
}

// genEvents yields synthetic event records of about 1 KiB with text that
// compresses like chat (not like zeros).
func genEvents(total int, fn func(*archive.Event) error) (int64, error) {
	words := strings.Fields("the quick brown fox jumps over lazy dog matrix room server event federation message hello world ferry export archive state key sync timeline media upload thumbnail device encryption backup")
	rng := rand.New(rand.NewPCG(1, 2))
	var written int64
	for i := 0; written < int64(total); i++ {
		var body strings.Builder
		for body.Len() < 700 {
			body.WriteString(words[rng.IntN(len(words))])
			body.WriteByte(' ')
		}
		id := fmt.Sprintf("$%043d", i)
		js := fmt.Sprintf(`{"auth_events":["$a%042d","$b%042d"],"content":{"body":%q,"msgtype":"m.text"},"depth":%d,"hashes":{"sha256":"%043d"},"origin_server_ts":%d,"prev_events":["$p%042d"],"room_id":"!bench:bench.test","sender":"@user%d:bench.test","signatures":{"bench.test":{"ed25519:a":"%086d"}},"type":"m.room.message"}`,
			i, i, body.String(), i, i, 1700000000000+i, i, i%100, i)
		e := &archive.Event{EventID: id, RoomID: "!bench:bench.test", JSON: []byte(js), StateBefore: uint64(i/50 + 1), StreamOrdering: int64(i)}
		written += int64(len(js)) + 80
		if err := fn(e); err != nil {
			return written, err
		}
	}
	return written, nil
}

// discardSink throws parts away: the benchmark measures the pipeline, not a disk.
type discardSink struct{}

func (discardSink) CreatePart(context.Context, int) (io.WriteCloser, error) {
	return nopCloser{io.Discard}, nil
}
func (discardSink) RemovePartsFrom(context.Context, int) error { return nil }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// peakHeap samples the live heap (as measured by the last GC, so garbage
// awaiting collection does not count) while fn runs, above what was live
// before.
func peakHeap(fn func()) uint64 {
	benchPool()
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	fn()
	close(stop)
	wg.Wait()
	return peak.Load() - min(peak.Load(), base)
}

func writeBench(ctx context.Context, sink container.Sink, key keywrap.Key, size int) (int64, error) {
	w, err := archive.NewWriter(ctx, sink, archive.WriterOptions{Key: key, Export: archive.ExportInfo{ServerName: "bench.test", Type: "full"},
		PartSize: 64 << 20, Concurrency: runtime.GOMAXPROCS(0)})
	if err != nil {
		return 0, err
	}
	n, err := benchEvents(size, func(e *archive.Event) error {
		if err := w.Add(archive.SectionEvents, e); err != nil {
			return err
		}
		_, err := w.MaybeCheckpoint(nil)
		return err
	})
	if err != nil {
		return n, err
	}
	_, err = w.Close()
	return n, err
}

func BenchmarkWrite(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dMB", size>>20), func(b *testing.B) {
			ctx := context.Background()
			key := keywrap.New()
			benchPool()
			b.ResetTimer()
			var n int64
			var peak uint64
			for i := 0; i < b.N; i++ {
				peak = max(peak, peakHeap(func() {
					var err error
					if n, err = writeBench(ctx, discardSink{}, key, size); err != nil {
						b.Fatal(err)
					}
				}))
			}
			b.SetBytes(n)
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
}

func BenchmarkReadVerify(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dMB", size>>20), func(b *testing.B) {
			ctx := context.Background()
			key := keywrap.New()
			dir := b.TempDir()
			bucket, err := container.OpenDirBucket(dir, true)
			if err != nil {
				b.Fatal(err)
			}
			defer bucket.Close()
			n, err := writeBench(ctx, &container.BucketStore{Bucket: bucket}, key, size)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var peak uint64
			for i := 0; i < b.N; i++ {
				peak = max(peak, peakHeap(func() {
					r, err := archive.OpenLocation(ctx, dir, archive.OpenOptions{Key: key})
					if err != nil {
						b.Fatal(err)
					}
					defer r.Close()
					records := 0
					err = r.Walk(ctx, func(f *archive.File) error {
						return archive.DecodeRecords(r, f, func(*archive.Event) error { records++; return nil })
					})
					if err != nil {
						b.Fatal(err)
					}
				}))
			}
			b.SetBytes(n)
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
}
