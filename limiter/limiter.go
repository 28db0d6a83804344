package limiter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/scripts"
)

// DefaultPrefix is the prefix of every counter key unless WithPrefix says
// otherwise: the tutorial's "requests.<identity>".
const DefaultPrefix = "requests."

// ErrInvalid is wrapped by every error about a caller's input (an empty key, a
// bad Limit, a negative cost). Such a call sends nothing to Redis.
var ErrInvalid = errors.New("invalid input")

// Pool is the one method a Limiter needs of a connection pool. *redis.Pool has
// it, and so do the pipelining Mux and the cluster adapter of floodgate's
// sub-packages. The connection it returns must support redigo's
// ConnWithContext. A Pool that also has the method
//
//	DoTimeout(ctx context.Context, timeout time.Duration, cmd string, args ...interface{}) (interface{}, error)
//
// (the Mux and the Cluster have it) runs AllowN's command through it, bounded by the
// Limiter's timeout, instead of a connection under a derived context.
type Pool interface {
	GetContext(ctx context.Context) (redis.Conn, error)
}

var _ Pool = (*redis.Pool)(nil)

// fixedWindow is the decision script. Its SHA1 is computed once; DoContext
// sends EVALSHA and falls back to EVAL when Redis answers NOSCRIPT, so a
// restarted or flushed Redis heals on the next call.
var fixedWindow = redis.NewScript(scripts.FixedWindowKeys, scripts.FixedWindow)

// The constant arguments of the script's EVALSHA and EVAL, boxed once.
var (
	fixedWindowHash interface{} = fixedWindow.Hash()
	fixedWindowSrc  interface{} = scripts.FixedWindow
	fixedWindowKeys interface{} = scripts.FixedWindowKeys
)

// directPool is an optional interface of a Pool: one command without a
// connection handle, bounded by ctx and by timeout (zero: by ctx alone)
// without deriving a context. *pipeline.Mux and *cluster.Cluster have it. AllowN uses it when the
// Pool has it, which saves the handle, the derived context and its timer on
// every decision; the error of a call cut short must wrap ctx's error or
// context.DeadlineExceeded, as DoContext's would.
type directPool interface {
	DoTimeout(ctx context.Context, timeout time.Duration, cmd string, args ...interface{}) (interface{}, error)
}

// Limiter decides fixed-window rate limits on Redis. It is safe for concurrent
// use by many goroutines; build it with New.
type Limiter struct {
	pool    Pool
	direct  directPool // pool, when it has DoTimeout; else nil
	prefix  string
	timeout time.Duration
	denied  *denyCache // nil when off
}

// A Limiter's zero value is not usable; New is the only constructor.

// Option configures a Limiter in New.
type Option func(*Limiter)

// WithPrefix sets the prefix put before every key (default DefaultPrefix).
func WithPrefix(prefix string) Option { return func(l *Limiter) { l.prefix = prefix } }

// WithTimeout bounds each call (waiting for a connection, dialing, writing and
// reading together) by d, on top of the caller's context. Zero, the default,
// leaves the bound to the caller's context alone.
func WithTimeout(d time.Duration) Option { return func(l *Limiter) { l.timeout = d } }

// WithDenyCache keeps, in this process, up to about size keys (rounded up to
// a multiple of 32) whose window is spent, and denies their requests locally
// until the window resets, without asking Redis: a flood from one key over
// its limit then costs Redis about one call per window per process. The
// answer is Redis's as long as the counter lives out its window in Redis: a
// counter lost early (Redis restarted without persistence, FLUSHDB, eviction,
// or Reset called by another process) is still denied here until the window
// it had would have ended. size <= 0 turns the cache off, which is the
// default.
func WithDenyCache(size int) Option {
	return func(l *Limiter) {
		l.denied = nil
		if size > 0 {
			l.denied = newDenyCache(size)
		}
	}
}

// New returns a Limiter over pool. It panics if pool is nil: that is a
// programming error, not a runtime condition.
func New(pool Pool, opts ...Option) *Limiter {
	if pool == nil {
		panic("limiter: New with a nil pool")
	}
	l := &Limiter{pool: pool, prefix: DefaultPrefix}
	for _, o := range opts {
		o(l)
	}
	l.direct, _ = pool.(directPool)
	return l
}

// Prefix returns the prefix the Limiter puts before keys.
func (l *Limiter) Prefix() string { return l.prefix }

// Load loads the decision script into Redis's script cache. Call it at
// start-up so that a script Redis rejects fails the boot rather than the first
// request; decisions load it again by themselves whenever Redis lost it.
func (l *Limiter) Load(ctx context.Context) error {
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	conn, err := l.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("limiter: load: get connection: %w", err)
	}
	defer conn.Close()
	sha, err := redis.String(redis.DoContext(conn, ctx, "SCRIPT", "LOAD", scripts.FixedWindow))
	if err != nil {
		return fmt.Errorf("limiter: load: %w", err)
	}
	if sha != fixedWindow.Hash() {
		return fmt.Errorf("limiter: load: redis returned sha %q, want %q", sha, fixedWindow.Hash())
	}
	return nil
}

// Ping checks that Redis answers.
func (l *Limiter) Ping(ctx context.Context) error {
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	conn, err := l.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("limiter: ping: get connection: %w", err)
	}
	defer conn.Close()
	if _, err := redis.DoContext(conn, ctx, "PING"); err != nil {
		return fmt.Errorf("limiter: ping: %w", err)
	}
	return nil
}

// Allow decides one request of cost 1 for key under limit. It is AllowN(ctx,
// key, limit, 1).
func (l *Limiter) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	return l.AllowN(ctx, key, limit, 1)
}

// AllowN decides a request of cost n for key under limit, in one round trip to
// Redis. A denied request spends nothing. n may be 0 to read the window's
// state without spending. Invalid input is an error wrapping ErrInvalid, and a
// context already done is its error; neither sends anything to Redis.
func (l *Limiter) AllowN(ctx context.Context, key string, limit Limit, n int) (Result, error) {
	if err := validate(ctx, key, limit, n); err != nil {
		return Result{}, err
	}
	full := l.prefix + key
	start := time.Now()
	if res, ok := l.cachedDenial(full, limit, n, start); ok {
		return res, nil
	}
	reply, err := l.eval(ctx, full, limit, n, start)
	if err != nil {
		return Result{}, err
	}
	res, err := decode(reply, limit, n)
	if err == nil {
		l.remember(full, res, start)
	}
	return res, err
}

// eval runs the decision script for one request, sent at start, and returns
// its reply. Errors carry the "limiter: " prefix.
func (l *Limiter) eval(ctx context.Context, full string, limit Limit, n int, start time.Time) (interface{}, error) {
	if l.direct == nil {
		ctx, cancel := l.withTimeout(ctx)
		defer cancel()
		conn, err := l.pool.GetContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("limiter: get connection: %w", err)
		}
		defer conn.Close()
		reply, err := fixedWindow.DoContext(ctx, conn, full, limit.Count, limit.periodMillis(), n)
		if err != nil {
			return nil, fmt.Errorf("limiter: eval: %w", err)
		}
		return reply, nil
	}
	// What redis.Script.DoContext does, over the pool's DoTimeout: EVALSHA,
	// then EVAL when Redis lost the script, both within one budget.
	args := []interface{}{fixedWindowHash, fixedWindowKeys, full, limit.Count, limit.periodMillis(), n}
	reply, err := l.direct.DoTimeout(ctx, l.timeout, "EVALSHA", args...)
	if e, ok := err.(redis.Error); ok && strings.HasPrefix(string(e), "NOSCRIPT ") {
		timeout := l.timeout
		if timeout > 0 {
			if timeout -= time.Since(start); timeout <= 0 {
				return nil, fmt.Errorf("limiter: eval: %w", context.DeadlineExceeded)
			}
		}
		args[0] = fixedWindowSrc
		reply, err = l.direct.DoTimeout(ctx, timeout, "EVAL", args...)
	}
	if err != nil {
		return nil, fmt.Errorf("limiter: eval: %w", err)
	}
	return reply, nil
}

// Denied reports, from this Limiter's deny cache alone and without Redis,
// whether key's window under limit is known to be spent; if so the Result is
// the denial Redis would give. With the cache off it always reports false.
// Middleware deciding several limits uses it to refuse a request without
// spending the others.
func (l *Limiter) Denied(key string, limit Limit) (Result, bool) {
	return l.cachedDenial(l.prefix+key, limit, 1, time.Now())
}

// cachedDenial answers from the deny cache when it can.
func (l *Limiter) cachedDenial(full string, limit Limit, n int, now time.Time) (Result, bool) {
	if l.denied == nil || n == 0 {
		return Result{}, false
	}
	return l.denied.get(full, limit, now)
}

// remember caches a spent window, from a decision sent at start.
func (l *Limiter) remember(full string, res Result, start time.Time) {
	if l.denied != nil && res.Remaining == 0 && res.ResetAfter > 0 {
		l.denied.put(full, res.Limit, start, start.Add(res.ResetAfter))
	}
}

// Request is one decision of a batch given to AllowAll.
type Request struct {
	Key   string
	Limit Limit
	// N is the request's cost; AllowAll treats 0 as 1. Use AllowN to peek.
	N int
}

func (r Request) cost() int {
	if r.N == 0 {
		return 1
	}
	return r.N
}

// AllowAll decides every request of reqs in one round trip (a pipeline on one
// connection) and returns their results in order. Each is decided on its own:
// a request denied under one key still spends under the others, as separate
// Allow calls would. Errors are as for AllowN; if any request fails, AllowAll
// returns the error and no results.
func (l *Limiter) AllowAll(ctx context.Context, reqs ...Request) ([]Result, error) {
	for _, r := range reqs {
		if err := validate(ctx, r.Key, r.Limit, r.cost()); err != nil {
			return nil, err
		}
	}
	results := make([]Result, len(reqs))
	start := time.Now()
	pending := make([]int, 0, len(reqs)) // the requests Redis must decide
	for i, r := range reqs {
		if res, ok := l.cachedDenial(l.prefix+r.Key, r.Limit, r.cost(), start); ok {
			results[i] = res
			continue
		}
		pending = append(pending, i)
	}
	if len(pending) == 0 {
		return results, nil
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	conn, err := l.pool.GetContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("limiter: get connection: %w", err)
	}
	defer conn.Close()
	for _, i := range pending {
		r := reqs[i]
		if err := fixedWindow.SendHash(conn, l.prefix+r.Key, r.Limit.Count, r.Limit.periodMillis(), r.cost()); err != nil {
			return nil, fmt.Errorf("limiter: send: %w", err)
		}
	}
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("limiter: flush: %w", err)
	}
	replies := make([]interface{}, len(pending))
	var firstErr error
	for j := range pending {
		// Every reply is read, even after an error reply, so that the
		// connection stays in step.
		reply, err := redis.ReceiveContext(conn, ctx)
		var rerr redis.Error
		switch {
		case err == nil:
			replies[j] = reply
		case !errors.As(err, &rerr):
			// The connection failed: nothing more can be read from it.
			return nil, fmt.Errorf("limiter: eval: %w", err)
		case strings.HasPrefix(string(rerr), "NOSCRIPT "):
			// Left nil: evaluated again below.
		case firstErr == nil:
			firstErr = fmt.Errorf("limiter: eval: %w", err)
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	for j, i := range pending {
		r, reply := reqs[i], replies[j]
		full := l.prefix + r.Key
		if reply == nil {
			// Redis lost the script: EVAL it, which also caches it again.
			if reply, err = fixedWindow.DoContext(ctx, conn, full, r.Limit.Count, r.Limit.periodMillis(), r.cost()); err != nil {
				return nil, fmt.Errorf("limiter: eval: %w", err)
			}
		}
		if results[i], err = decode(reply, r.Limit, r.cost()); err != nil {
			return nil, err
		}
		l.remember(full, results[i], start)
	}
	return results, nil
}

// Reset deletes key's counter, so that its next request starts a new window.
// It also forgets key's entry in this Limiter's deny cache (and ignores
// denials of key from decisions sent before it); other processes' caches
// keep denying it until the window they saw resets.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if key == "" {
		return fmt.Errorf("limiter: reset: empty key: %w", ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("limiter: reset: %w", err)
	}
	full := l.prefix + key
	if l.denied != nil {
		// Forgotten before the DEL, so no request waits on the old entry,
		// and fenced, so a decision sent before this Reset cannot put it
		// back when its reply comes in after.
		l.denied.reset(full, time.Now())
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	conn, err := l.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("limiter: reset: get connection: %w", err)
	}
	defer conn.Close()
	if _, err := redis.DoContext(conn, ctx, "DEL", full); err != nil {
		return fmt.Errorf("limiter: reset: %w", err)
	}
	return nil
}

// withTimeout bounds ctx by the Limiter's timeout, unless ctx already ends
// first.
func (l *Limiter) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if l.timeout <= 0 {
		return ctx, func() {}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= l.timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, l.timeout)
}

// validate checks a decision's input before anything is sent to Redis.
func validate(ctx context.Context, key string, limit Limit, n int) error {
	switch {
	case key == "":
		return fmt.Errorf("limiter: empty key: %w", ErrInvalid)
	case n < 0:
		return fmt.Errorf("limiter: negative cost %d: %w", n, ErrInvalid)
	case n > limit.Count && limit.Count >= 1:
		return fmt.Errorf("limiter: cost %d exceeds the limit %v and could never be allowed: %w", n, limit, ErrInvalid)
	}
	if err := limit.Validate(); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("limiter: %w", err)
	}
	return nil
}
