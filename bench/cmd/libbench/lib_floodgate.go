package main

import (
	"context"
	"fmt"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/scripts"
)

// redigoPool is a plain redigo pool sized for g goroutines: every worker has
// a connection of its own and never waits for one.
func redigoPool(cfg *config, g int) *redis.Pool {
	return &redis.Pool{
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", cfg.addr)
		},
		MaxIdle:   g,
		MaxActive: g,
		Wait:      true,
	}
}

// floodgateDecider runs floodgate's Limiter.Allow over pool, as the service
// does: a per-call timeout (-timeout) and the default key prefix.
func floodgateDecider(ctx context.Context, cfg *config, pool limiter.Pool, closePool func()) (*decider, error) {
	var opts []limiter.Option
	if cfg.timeout > 0 {
		opts = append(opts, limiter.WithTimeout(cfg.timeout))
	}
	lim := limiter.New(pool, opts...)
	if err := lim.Load(ctx); err != nil {
		closePool()
		return nil, err
	}
	l := limiter.Per(benchLimit, benchWindow)
	return &decider{
		decide: func(ctx context.Context, key string) (bool, error) {
			res, err := lim.Allow(ctx, key, l)
			return res.Allowed, err
		},
		close: closePool,
	}, nil
}

var floodgatePool = library{
	name: "floodgate (pool)",
	slug: "fgpool",
	note: "floodgate (pool): limiter.Allow over a redigo *redis.Pool (MaxIdle = MaxActive = goroutines, Wait), limiter.WithTimeout(-timeout).",
	setup: func(ctx context.Context, cfg *config, g int) (*decider, error) {
		pool := redigoPool(cfg, g)
		return floodgateDecider(ctx, cfg, pool, func() { pool.Close() })
	},
}

// redigoEvalsha is the first version of the idea, without the library: a
// plain redigo pool and one EVALSHA of fixed_window.lua per decision, the
// reply checked as two integers and nothing else.
var redigoEvalsha = library{
	name: "redigo EVALSHA (no library)",
	slug: "rawsha",
	note: "redigo EVALSHA (no library): pool.Get + conn.Do(\"EVALSHA\", sha, 1, key, limit, window, 1) + redis.Int64s; the script loaded once with SCRIPT LOAD; no timeout.",
	setup: func(ctx context.Context, cfg *config, g int) (*decider, error) {
		pool := redigoPool(cfg, g)
		conn, err := pool.GetContext(ctx)
		if err != nil {
			pool.Close()
			return nil, err
		}
		sha, err := redis.String(conn.Do("SCRIPT", "LOAD", scripts.FixedWindow))
		conn.Close()
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("script load: %w", err)
		}
		window := benchWindow.Milliseconds()
		return &decider{
			decide: func(_ context.Context, key string) (bool, error) {
				conn := pool.Get()
				vals, err := redis.Int64s(conn.Do("EVALSHA", sha, 1, key, benchLimit, window, 1))
				conn.Close()
				if err != nil {
					return false, err
				}
				if len(vals) != 2 {
					return false, fmt.Errorf("reply has %d values, want 2", len(vals))
				}
				return vals[0] <= benchLimit, nil
			},
			close: func() { pool.Close() },
		}, nil
	},
}
