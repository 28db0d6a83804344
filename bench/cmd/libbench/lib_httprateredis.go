//go:build httprateredis

// Built with -tags httprateredis, once the module can be fetched:
//
//	go get github.com/go-chi/httprate-redis
//	go run -tags httprateredis ./cmd/libbench

package main

import (
	"context"
	"fmt"
	"time"

	httprateredis "github.com/go-chi/httprate-redis"
)

// httprateRedis drives httprate-redis's LimitCounter directly, the way
// httprate's middleware uses it for one request: Get the current and the
// previous window's counts, compute the sliding-window rate, and
// IncrementBy 1 when under the limit (two round trips: MGET, then a
// MULTI/INCRBY/EXPIRE/EXEC transaction). httprate's own in-process mutex,
// HTTP handling and key function are left out.
var httprateRedis = library{
	name: "go-chi/httprate-redis (LimitCounter)",
	slug: "httprate",
	note: "go-chi/httprate-redis: its LimitCounter driven directly (Get + IncrementBy per decision, the middleware's two calls, sliding-window rate computed as httprate does), no HTTP and without httprate's mutex.",
	setup: func(ctx context.Context, cfg *config, g int) (*decider, error) {
		c, err := goRedisClient(ctx, cfg, g)
		if err != nil {
			return nil, err
		}
		counter, err := httprateredis.NewRedisLimitCounter(&httprateredis.Config{
			Client:           c,
			PrefixKey:        cfg.runTag + "-httprate",
			FallbackDisabled: true,
		})
		if err != nil {
			c.Close()
			return nil, err
		}
		counter.Config(benchLimit, benchWindow)
		return &decider{
			decide: func(ctx context.Context, key string) (bool, error) {
				now := time.Now().UTC()
				cur := now.Truncate(benchWindow)
				prev := cur.Add(-benchWindow)
				curCount, prevCount, err := counter.Get(key, cur, prev)
				if err != nil {
					return false, fmt.Errorf("get: %w", err)
				}
				weight := float64(benchWindow-now.Sub(cur)) / float64(benchWindow)
				rate := float64(prevCount)*weight + float64(curCount)
				if rate+1 > benchLimit {
					return false, nil
				}
				if err := counter.IncrementBy(key, cur, 1); err != nil {
					return false, fmt.Errorf("increment: %w", err)
				}
				return true, nil
			},
			close: func() { c.Close() },
		}, nil
	},
}
