package limiter_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
)

// benchPool is a pool sized for b.RunParallel's goroutines.
func benchPool(b *testing.B, srv *redistest.Server) *redis.Pool {
	p := srv.Pool(b)
	p.MaxIdle = 256
	return p
}

// BenchmarkAllow measures one decision per operation against real Redis:
// over 10k distinct keys, and on one hot key (mostly denied).
func BenchmarkAllow(b *testing.B) {
	srv := redistest.Shared(b)
	base := redistest.Key(b)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = base + "." + strconv.Itoa(i)
	}
	for _, bc := range []struct {
		name string
		key  func(i int64) string
	}{
		{"distinct-keys", func(i int64) string { return keys[i%int64(len(keys))] }},
		{"hot-key", func(int64) string { return keys[0] }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			lim := limiter.New(benchPool(b, srv))
			l := limiter.PerSecond(1000)
			var n atomic.Int64
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := lim.Allow(ctx, bc.key(n.Add(1)), l); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAllowSerial is one goroutine's latency per decision.
func BenchmarkAllowSerial(b *testing.B) {
	srv := redistest.Shared(b)
	lim := limiter.New(benchPool(b, srv))
	key := redistest.Key(b)
	ctx := context.Background()
	l := limiter.Per(1<<30, time.Hour)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := lim.Allow(ctx, key, l); err != nil {
			b.Fatal(err)
		}
	}
}
