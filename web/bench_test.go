package web_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
)

// BenchmarkHandler measures the service's handler without a network: the
// /healthz floor, /api/ping decided in Redis (all allowed, 1000 identities),
// and a flood from one identity over its limit (answered by the deny cache).
// Profile with -cpuprofile to see the HTTP path's own cost.
func BenchmarkHandler(b *testing.B) {
	srv := redistest.Shared(b)
	pool := srv.Pool(b)
	pool.MaxIdle = 64
	mk := func(limit int, opts ...limiter.Option) http.Handler {
		cp := &countingPool{Pool: pool}
		lopts := append([]limiter.Option{limiter.WithPrefix(redistest.Key(b) + "."), limiter.WithTimeout(time.Second)}, opts...)
		return newHandler(cp, limiter.Per(limit, 10*time.Second), lopts...)
	}
	cookies := func(h http.Handler, n int) []string {
		out := make([]string, n)
		for i := range out {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			out[i] = issued(w.Result()).Value
		}
		return out
	}
	run := func(b *testing.B, h http.Handler, path string, cs []string) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				r := httptest.NewRequest(http.MethodGet, path, nil)
				if len(cs) > 0 {
					r.Header.Set("Cookie", "user-limiter="+cs[i%len(cs)])
					i++
				}
				h.ServeHTTP(discard{}, r)
			}
		})
	}
	open := mk(1 << 30)
	b.Run("healthz", func(b *testing.B) { run(b, open, "/healthz", nil) })
	b.Run("ping-allowed", func(b *testing.B) { run(b, open, "/api/ping", cookies(open, 1000)) })
	flood := mk(10, limiter.WithDenyCache(1000))
	b.Run("ping-flood", func(b *testing.B) { run(b, flood, "/api/ping", cookies(flood, 1)) })
}

// discard is a ResponseWriter that keeps nothing, so the benchmark measures
// the handler rather than a recorder.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}
