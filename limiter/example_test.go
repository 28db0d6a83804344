package limiter_test

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/limiter"
)

func Example() {
	mr, _ := miniredis.Run() // stands in for a real Redis here
	defer mr.Close()
	pool := &redis.Pool{DialContext: func(ctx context.Context) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", mr.Addr())
	}}
	defer pool.Close()

	lim := limiter.New(pool, limiter.WithTimeout(100*time.Millisecond))
	for i := 1; i <= 4; i++ {
		res, err := lim.Allow(context.Background(), "user-42", limiter.Per(3, 10*time.Second))
		if err != nil {
			fmt.Println("limiter unavailable:", err)
			continue
		}
		fmt.Printf("request %d: allowed=%v remaining=%d retry-after=%v\n", i, res.Allowed, res.Remaining, res.RetryAfter)
	}
	// Output:
	// request 1: allowed=true remaining=2 retry-after=0s
	// request 2: allowed=true remaining=1 retry-after=0s
	// request 3: allowed=true remaining=0 retry-after=0s
	// request 4: allowed=false remaining=0 retry-after=10s
}

func ExampleLimit_String() {
	fmt.Println(limiter.PerSecond(10))
	fmt.Println(limiter.Per(10, 10*time.Second))
	// Output:
	// 10 per second
	// 10 per 10s
}
