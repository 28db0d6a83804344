package limiter

import (
	"hash/maphash"
	"sync"
	"time"
)

// denyCache remembers keys whose window is spent, so that later requests in
// the same window are denied locally, without Redis.
//
// It is exact by construction, for counters that live out their window. An
// entry is made only when Redis reports a window with nothing remaining, and
// it lasts until start+ResetAfter, where start is when the decision was sent:
// Redis measured the TTL after start, so the real window ends no earlier than
// that. A fixed window never un-denies before it resets, and a denied request
// spends nothing in Redis, so the local answer is the one Redis would give.
// A counter Redis loses early (a restart without persistence, FLUSHDB,
// eviction, a Reset by another process) is still denied here until its window
// would have ended; a Reset in this process clears the entry, and fences off
// decisions sent before it.
//
// It is bounded: each shard holds at most max/shards entries; a full shard
// drops an expired entry among the first few it looks at, else the first one,
// so a put costs O(1) however full the cache is.
type denyCache struct {
	seed   maphash.Seed
	shards [denyShards]denyShard
	max    int // per shard
}

const denyShards = 32

type denyShard struct {
	mu      sync.Mutex
	m       map[string]denyEntry
	resetAt time.Time // the last Reset of a key in this shard
}

type denyEntry struct {
	limit Limit
	until time.Time
}

func newDenyCache(size int) *denyCache {
	c := &denyCache{seed: maphash.MakeSeed(), max: (size + denyShards - 1) / denyShards}
	for i := range c.shards {
		c.shards[i].m = make(map[string]denyEntry)
	}
	return c
}

func (c *denyCache) shard(key string) *denyShard {
	return &c.shards[maphash.String(c.seed, key)%denyShards]
}

// get returns the denial cached for key under limit, if any, as of now.
func (c *denyCache) get(key string, limit Limit, now time.Time) (Result, bool) {
	s := c.shard(key)
	s.mu.Lock()
	e, ok := s.m[key]
	s.mu.Unlock()
	if !ok || e.limit != limit {
		return Result{}, false
	}
	left := e.until.Sub(now)
	if left <= 0 {
		return Result{}, false
	}
	return Result{Limit: limit, ResetAfter: left, RetryAfter: left, Cached: true}, true
}

// put records that key's window under limit is spent until until, from a
// decision sent at start; it is dropped if a Reset came after start.
func (c *denyCache) put(key string, limit Limit, start, until time.Time) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if start.Before(s.resetAt) {
		return
	}
	if _, ok := s.m[key]; !ok && len(s.m) >= c.max {
		now := time.Now()
		victim, looked := "", 0
		for k, e := range s.m { // map order: a pseudo-random start
			if victim == "" || !e.until.After(now) {
				victim = k
			}
			if looked++; looked == 8 || !e.until.After(now) {
				break
			}
		}
		delete(s.m, victim)
	}
	s.m[key] = denyEntry{limit: limit, until: until}
}

// reset forgets key and ignores puts from decisions sent before now.
func (c *denyCache) reset(key string, now time.Time) {
	s := c.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.resetAt = now
	s.mu.Unlock()
}

func (c *denyCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].m)
		c.shards[i].mu.Unlock()
	}
	return n
}
