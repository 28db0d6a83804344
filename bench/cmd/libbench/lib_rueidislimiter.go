//go:build rueidislimiter

// Built with -tags rueidislimiter, once the module can be fetched:
//
//	go get github.com/redis/rueidis/rueidislimiter
//	go run -tags rueidislimiter ./cmd/libbench

package main

import (
	"context"

	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislimiter"
)

var rueidisLimiter = library{
	name: "rueidislimiter",
	slug: "rueidislimiter",
	note: "rueidislimiter: RateLimiterClient.Allow (Limit 2^30 per hour) over an auto-pipelined rueidis client (rueidis defaults, DisableCache).",
	setup: func(ctx context.Context, cfg *config, g int) (*decider, error) {
		lim, err := rueidislimiter.NewRateLimiter(rueidislimiter.RateLimiterOption{
			ClientBuilder: rueidis.NewClient,
			ClientOption:  rueidisOption(cfg),
			Limit:         benchLimit,
			Window:        benchWindow,
		})
		if err != nil {
			return nil, err
		}
		return &decider{
			decide: func(ctx context.Context, key string) (bool, error) {
				res, err := lim.Allow(ctx, key)
				return res.Allowed, err
			},
			close: lim.Close,
		}, nil
	},
}
