package limiter

import (
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Result is the outcome of one decision. It is a plain value.
type Result struct {
	// Allowed reports whether the request fits in the current window.
	Allowed bool
	// Limit is the limit the decision was made under.
	Limit Limit
	// Remaining is how many more requests of cost 1 the window allows now;
	// never below 0.
	Remaining int
	// ResetAfter is the time until the current window ends and the count
	// starts again from 0, as Redis measures it.
	ResetAfter time.Duration
	// RetryAfter is how long to wait before the same request can be allowed:
	// 0 when Allowed, else the time until the window resets.
	RetryAfter time.Duration
	// Cached reports a denial answered by the Limiter's deny cache, without
	// asking Redis (see WithDenyCache).
	Cached bool
}

// decode turns the script's reply {count, ttl} into a Result for a call of
// cost n under limit l.
func decode(reply interface{}, l Limit, n int) (Result, error) {
	count, ttl, err := replyPair(reply)
	if err != nil {
		return Result{}, err
	}
	if ttl < 0 {
		return Result{}, fmt.Errorf("limiter: decode reply: negative ttl %d", ttl)
	}
	res := Result{
		Limit:      l,
		Allowed:    count <= int64(l.Count),
		ResetAfter: time.Duration(ttl) * time.Millisecond,
	}
	spent := count // what the window holds after this call
	if !res.Allowed {
		spent = count - int64(n) // a denied call spends nothing
		res.RetryAfter = res.ResetAfter
	}
	if rem := int64(l.Count) - spent; rem > 0 {
		res.Remaining = int(rem)
	}
	return res, nil
}

// replyPair reads the script's reply, two integers, without allocating in
// the usual case.
func replyPair(reply interface{}) (count, ttl int64, err error) {
	if vs, ok := reply.([]interface{}); ok && len(vs) == 2 {
		c, ok1 := vs[0].(int64)
		t, ok2 := vs[1].(int64)
		if ok1 && ok2 {
			return c, t, nil
		}
	}
	vals, err := redis.Int64s(reply, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("limiter: decode reply: %w", err)
	}
	if len(vals) != 2 {
		return 0, 0, fmt.Errorf("limiter: decode reply: got %d values, want 2", len(vals))
	}
	return vals[0], vals[1], nil
}
