package pipeline_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/pipeline"
)

// BenchmarkMux measures the limiter's Allow through a Mux (default options)
// against real Redis, at 1, 16 and 64 goroutines on 10k distinct keys. Its
// figures compare with BenchmarkPool's from the same run.
func BenchmarkMux(b *testing.B) {
	benchAllow(b, func(b *testing.B, srv *redistest.Server) limiter.Pool {
		m := pipeline.New(pipeline.DialURL(srv.URL))
		b.Cleanup(func() { m.Close() })
		return m
	})
}

// BenchmarkPool is BenchmarkMux over a plain *redis.Pool that keeps a
// connection per goroutine.
func BenchmarkPool(b *testing.B) {
	benchAllow(b, func(b *testing.B, srv *redistest.Server) limiter.Pool {
		p := srv.Pool(b)
		p.MaxIdle = 256
		return p
	})
}

// benchAllow runs exactly n goroutines (b.RunParallel would run a multiple
// of GOMAXPROCS) sharing b.N decisions, and reports decisions per second.
func benchAllow(b *testing.B, pool func(*testing.B, *redistest.Server) limiter.Pool) {
	b.Helper()
	srv := redistest.Shared(b)
	base := redistest.Key(b)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = base + "." + strconv.Itoa(i)
	}
	l := limiter.Per(1<<30, time.Hour)
	ctx := context.Background()
	for _, goroutines := range []int{1, 16, 64} {
		b.Run("goroutines-"+strconv.Itoa(goroutines), func(b *testing.B) {
			p := pool(b, srv)
			lim := limiter.New(p)
			if err := lim.Load(ctx); err != nil {
				b.Fatal(err)
			}
			run := func(total int64) {
				var next atomic.Int64
				var wg sync.WaitGroup
				for g := 0; g < goroutines; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := next.Add(1); i <= total; i = next.Add(1) {
							if _, err := lim.Allow(ctx, keys[i%int64(len(keys))], l); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			}
			run(int64(4 * goroutines)) // dial and warm every connection
			b.ReportAllocs()
			b.ResetTimer()
			run(int64(b.N))
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
			if m, ok := p.(*pipeline.Mux); ok {
				st := m.Stats()
				b.ReportMetric(float64(st.Sent)/float64(max(st.Flushes, 1)), "cmds/flush")
			}
		})
	}
}
