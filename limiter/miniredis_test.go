package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/limiter"
)

// TestWindowExpiryFakeClock steps a window with miniredis's fake clock: fast
// and deterministic, where the real-Redis tests must sleep.
func TestWindowExpiryFakeClock(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	pool := &redis.Pool{DialContext: func(ctx context.Context) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", mr.Addr())
	}}
	t.Cleanup(func() { pool.Close() })
	lim := limiter.New(pool)
	ctx := context.Background()
	l := limiter.Per(2, 10*time.Second)
	steps := []struct {
		advance   time.Duration
		allowed   bool
		remaining int
		reset     time.Duration
	}{
		{0, true, 1, 10 * time.Second},
		{4 * time.Second, true, 0, 6 * time.Second},
		{time.Second, false, 0, 5 * time.Second},
		{4999 * time.Millisecond, false, 0, time.Millisecond},
		{time.Millisecond, true, 1, 10 * time.Second}, // a new window
		{9 * time.Second, true, 0, time.Second},
		{time.Second, true, 1, 10 * time.Second},
	}
	for i, s := range steps {
		mr.FastForward(s.advance)
		res, err := lim.Allow(ctx, "fake", l)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if res.Allowed != s.allowed || res.Remaining != s.remaining || res.ResetAfter != s.reset {
			t.Errorf("step %d: got %+v, want allowed=%v remaining=%d reset=%v", i, res, s.allowed, s.remaining, s.reset)
		}
	}
}
