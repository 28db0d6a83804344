package limiter

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"
)

func TestDenyCacheBounded(t *testing.T) {
	t.Parallel()
	const size = 1000
	c := newDenyCache(size)
	l := PerSecond(1)
	until := time.Now().Add(time.Hour)
	for i := 0; i < 200000; i++ {
		c.put(strconv.Itoa(i), l, time.Now(), until)
	}
	if n := c.len(); n > size+denyShards || n < size/2 {
		t.Fatalf("after 200k puts the cache holds %d entries, want about %d and never more than %d", n, size, size+denyShards)
	}
}

func TestDenyCacheEntries(t *testing.T) {
	t.Parallel()
	c := newDenyCache(100)
	now := time.Now()
	l := PerSecond(5)
	c.put("k", l, now, now.Add(time.Second))
	tests := []struct {
		name  string
		key   string
		limit Limit
		at    time.Time
		hit   bool
		left  time.Duration
	}{
		{"hit", "k", l, now, true, time.Second},
		{"later", "k", l, now.Add(400 * time.Millisecond), true, 600 * time.Millisecond},
		{"expired", "k", l, now.Add(time.Second), false, 0},
		{"other limit", "k", PerSecond(6), now, false, 0},
		{"other key", "j", l, now, false, 0},
	}
	for _, tt := range tests {
		res, ok := c.get(tt.key, tt.limit, tt.at)
		if ok != tt.hit {
			t.Errorf("%s: hit %v, want %v", tt.name, ok, tt.hit)
			continue
		}
		if ok && (res.Allowed || res.Remaining != 0 || res.RetryAfter != tt.left || res.ResetAfter != tt.left || res.Limit != tt.limit) {
			t.Errorf("%s: got %+v, want a denial with %v left", tt.name, res, tt.left)
		}
	}
	c.reset("k", now.Add(time.Millisecond))
	if _, ok := c.get("k", l, now); ok {
		t.Error("hit after reset")
	}
	// A decision sent before the reset cannot put the entry back.
	c.put("k", l, now, now.Add(time.Second))
	if _, ok := c.get("k", l, now); ok {
		t.Error("a decision from before the reset put its denial back")
	}
	c.put("k", l, now.Add(2*time.Millisecond), now.Add(time.Second))
	if _, ok := c.get("k", l, now.Add(2*time.Millisecond)); !ok {
		t.Error("a decision from after the reset was not cached")
	}
}

type countPool struct {
	*redis.Pool
	gets atomic.Int64
}

func (p *countPool) GetContext(ctx context.Context) (redis.Conn, error) {
	p.gets.Add(1)
	return p.Pool.GetContext(ctx)
}

// TestDenyCacheExact steps a key through windows on miniredis's fake clock:
// the cached answers are exactly Redis's, Redis is asked once per window
// beyond the limit, and the key is allowed again when the window resets.
func TestDenyCacheExact(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	pool := &countPool{Pool: &redis.Pool{DialContext: func(ctx context.Context) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", mr.Addr())
	}}}
	t.Cleanup(func() { pool.Close() })
	cached := New(pool, WithDenyCache(10))
	plain := New(pool)
	ctx := context.Background()
	l := Per(3, 10*time.Second)
	for w := 0; w < 3; w++ {
		for i := 0; i < 3; i++ {
			if res, err := cached.Allow(ctx, "k", l); err != nil || !res.Allowed {
				t.Fatalf("window %d request %d: %+v %v", w, i, res, err)
			}
		}
		before := pool.gets.Load()
		for i := 0; i < 50; i++ {
			res, err := cached.Allow(ctx, "k", l)
			if err != nil || res.Allowed || res.Remaining != 0 || res.RetryAfter <= 0 || res.RetryAfter > l.Period {
				t.Fatalf("window %d flood %d: %+v %v", w, i, res, err)
			}
		}
		if got := pool.gets.Load() - before; got != 0 {
			t.Errorf("window %d: the flood asked Redis %d times, want 0", w, got)
		}
		// Redis agrees: the window is spent.
		if res, err := plain.Allow(ctx, "k", l); err != nil || res.Allowed {
			t.Fatalf("window %d: Redis says %+v %v", w, res, err)
		}
		// A real clock has passed no time; move Redis's to the window's end
		// and the cache's with it by waiting out the cache entry.
		mr.FastForward(l.Period)
		cached.denied.reset(DefaultPrefix+"k", time.Now())
	}
	// Reset clears the local entry.
	for i := 0; i < 4; i++ {
		cached.Allow(ctx, "r", l)
	}
	if _, ok := cached.Denied("r", l); !ok {
		t.Fatal("no cached denial after the limit")
	}
	if err := cached.Reset(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, ok := cached.Denied("r", l); ok {
		t.Fatal("cached denial survived Reset")
	}
	if res, err := cached.Allow(ctx, "r", l); err != nil || !res.Allowed {
		t.Fatalf("after Reset: %+v %v", res, err)
	}
}
