package main

import (
	"context"
	"time"
)

// library is one contender: how to build it for a cell, and its name in the
// table. Each lives in its own lib_*.go file; this list is the whole roster,
// in table order. Adding a contender is one entry here and one file.
type library struct {
	// name is the table's row label.
	name string
	// slug goes into this library's key prefix, so that no two libraries
	// share a counter.
	slug string
	// note, if set, is printed under the table (how the library is driven).
	note string
	// unavailable, if set, is why the library cannot run in this build; the
	// table shows it instead of numbers.
	unavailable string
	// setup builds a decider for a cell of g goroutines against the Redis
	// at cfg.addr. Its setup cost (dialing, loading scripts) is not measured.
	setup func(ctx context.Context, cfg *config, g int) (*decider, error)
}

// decider makes one rate-limit decision per call of decide. decide must be
// safe for concurrent use; it reports whether the request was allowed.
type decider struct {
	decide func(ctx context.Context, key string) (allowed bool, err error)
	close  func()
}

// libraries is the roster, in table order.
func libraries() []library {
	return []library{
		floodgatePool,
		floodgateMux,
		redigoEvalsha,
		redisRate,
		ululeLimiter,
		rueidisLimiter,
		rueidisScript,
		httprateRedis,
	}
}

// The one limit every library is given: high enough that every decision of
// a run is allowed (a denial is counted and shown, and means the harness is
// wrong), over a window long enough that no counter expires during a run.
const (
	benchLimit  = 1 << 30
	benchWindow = time.Hour
)
