package main

import (
	"context"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"
	ulule "github.com/ulule/limiter/v3"
	ululeredis "github.com/ulule/limiter/v3/drivers/store/redis"
)

// goRedisClient is a go-redis v9 client whose pool holds a connection for
// each of g goroutines (its default is 10 per GOMAXPROCS), kept idle between
// calls, with go-redis's defaults otherwise.
func goRedisClient(ctx context.Context, cfg *config, g int) (*goredis.Client, error) {
	c := goredis.NewClient(&goredis.Options{
		Addr:         cfg.addr,
		PoolSize:     g,
		MinIdleConns: g,
		MaxIdleConns: g,
	})
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

var redisRate = library{
	name: "go-redis/redis_rate v10 (GCRA)",
	slug: "redisrate",
	note: "go-redis/redis_rate: Limiter.Allow with Limit{Rate = Burst = 2^30 per hour} over a go-redis v9 client (PoolSize = goroutines); GCRA script by EVALSHA.",
	setup: func(ctx context.Context, cfg *config, g int) (*decider, error) {
		c, err := goRedisClient(ctx, cfg, g)
		if err != nil {
			return nil, err
		}
		lim := redis_rate.NewLimiter(c)
		l := redis_rate.Limit{Rate: benchLimit, Burst: benchLimit, Period: benchWindow}
		return &decider{
			decide: func(ctx context.Context, key string) (bool, error) {
				res, err := lim.Allow(ctx, key, l)
				if err != nil {
					return false, err
				}
				return res.Allowed > 0, nil
			},
			close: func() { c.Close() },
		}, nil
	},
}

var ululeLimiter = library{
	name: "ulule/limiter v3 (redis store)",
	slug: "ulule",
	note: "ulule/limiter: Limiter.Get (one EVALSHA incr script) with its go-redis v9 store (drivers/store/redis), PoolSize = goroutines.",
	setup: func(ctx context.Context, cfg *config, g int) (*decider, error) {
		c, err := goRedisClient(ctx, cfg, g)
		if err != nil {
			return nil, err
		}
		store, err := ululeredis.NewStore(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		lim := ulule.New(store, ulule.Rate{Limit: benchLimit, Period: benchWindow})
		return &decider{
			decide: func(ctx context.Context, key string) (bool, error) {
				res, err := lim.Get(ctx, key)
				if err != nil {
					return false, err
				}
				return !res.Reached, nil
			},
			close: func() { c.Close() },
		}, nil
	},
}
