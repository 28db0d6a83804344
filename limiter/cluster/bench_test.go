package cluster_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/cluster"
)

// BenchmarkAllow measures one decision per operation on a 3-master cluster,
// over 10k keys, with and without a deadline (a deadline costs a goroutine
// per call, which lets the call return at the deadline whatever the node
// does), and batches of 4 keys through AllowAll.
func BenchmarkAllow(b *testing.B) {
	rc := redistest.StartCluster(b, 3)
	c, err := cluster.New(context.Background(), cluster.Config{Addrs: rc.Addrs(), MaxIdle: 256})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	lim := limiter.New(c)
	base := redistest.Key(b)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = base + "." + strconv.Itoa(i)
	}
	l := limiter.PerSecond(1000)
	var n atomic.Int64
	for _, bc := range []struct {
		name   string
		budget time.Duration
		batch  int
	}{
		{"no-deadline", 0, 1},
		{"deadline", time.Second, 1},
		{"AllowAll-4", time.Second, 4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				reqs := make([]limiter.Request, bc.batch)
				for pb.Next() {
					ctx, cancel := context.Background(), context.CancelFunc(func() {})
					if bc.budget > 0 {
						ctx, cancel = context.WithTimeout(ctx, bc.budget)
					}
					var err error
					if bc.batch == 1 {
						_, err = lim.Allow(ctx, keys[n.Add(1)%int64(len(keys))], l)
					} else {
						for i := range reqs {
							reqs[i] = limiter.Request{Key: keys[n.Add(1)%int64(len(keys))], Limit: l}
						}
						_, err = lim.AllowAll(ctx, reqs...)
					}
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
