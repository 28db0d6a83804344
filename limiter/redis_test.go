package limiter_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSequence walks one key through a window step by step.
func TestSequence(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	lim := limiter.New(srv.Pool(t))
	ctx := ctxT(t)
	key := redistest.Key(t)
	l := limiter.Per(3, 10*time.Second)
	steps := []struct {
		n             int
		allowed       bool
		remaining     int
		wantRetryZero bool
	}{
		{1, true, 2, true},
		{0, true, 2, true}, // a peek spends nothing
		{1, true, 1, true},
		{2, false, 1, false}, // denied: spends nothing
		{1, true, 0, true},
		{1, false, 0, false},
		{1, false, 0, false},
	}
	for i, s := range steps {
		res, err := lim.AllowN(ctx, key, l, s.n)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if res.Allowed != s.allowed || res.Remaining != s.remaining || (res.RetryAfter == 0) != s.wantRetryZero {
			t.Errorf("step %d: got %+v, want allowed=%v remaining=%d retryAfterZero=%v", i, res, s.allowed, s.remaining, s.wantRetryZero)
		}
		if res.ResetAfter <= 0 || res.ResetAfter > l.Period {
			t.Errorf("step %d: ResetAfter %v outside (0, %v]", i, res.ResetAfter, l.Period)
		}
		if !res.Allowed && res.RetryAfter != res.ResetAfter {
			t.Errorf("step %d: RetryAfter %v, want ResetAfter %v", i, res.RetryAfter, res.ResetAfter)
		}
		if res.Limit != l {
			t.Errorf("step %d: Limit %v, want %v", i, res.Limit, l)
		}
	}
	// The stored counter is the tutorial's requests.<key>, and it expires.
	if got := srv.Int(t, "GET", limiter.DefaultPrefix+key); got != 3 {
		t.Errorf("stored count = %d, want 3 (denied calls spend nothing)", got)
	}
	if ttl := srv.Int(t, "PTTL", limiter.DefaultPrefix+key); ttl <= 0 {
		t.Errorf("PTTL = %d, want an expiry", ttl)
	}
}

// TestExactUnderConcurrency: several independent pools (as several app
// instances would have), many goroutines each, one key: exactly the limit is
// admitted in a window, with no errors.
func TestExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	const pools, goroutines, perG, limit = 4, 16, 10, 97
	key := redistest.Key(t)
	ctx := ctxT(t)
	var allowed, denied, errs atomic.Int64
	var wg sync.WaitGroup
	for p := 0; p < pools; p++ {
		lim := limiter.New(srv.Pool(t))
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perG; i++ {
					res, err := lim.Allow(ctx, key, limiter.Per(limit, time.Minute))
					switch {
					case err != nil:
						errs.Add(1)
						t.Error(err)
					case res.Allowed:
						allowed.Add(1)
					default:
						denied.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	if errs.Load() != 0 || allowed.Load() != limit || denied.Load() != pools*goroutines*perG-limit {
		t.Errorf("allowed %d, denied %d, errors %d; want allowed %d, denied %d, errors 0",
			allowed.Load(), denied.Load(), errs.Load(), limit, pools*goroutines*perG-limit)
	}
}

// TestExactAcrossWindows hammers one key over several short windows and
// checks that no window admits more than the limit. Each admitted request
// knows its window by when that window ends (now + ResetAfter); windows of
// one key never overlap, so their ends are at least a period apart.
func TestExactAcrossWindows(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	const limit, period = 20, 300 * time.Millisecond
	key := redistest.Key(t)
	ctx := ctxT(t)
	var mu sync.Mutex
	var ends []time.Time
	var wg sync.WaitGroup
	stop := time.Now().Add(5 * period)
	for p := 0; p < 3; p++ {
		lim := limiter.New(srv.Pool(t))
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					res, err := lim.Allow(ctx, key, limiter.Per(limit, period))
					if err != nil {
						t.Error(err)
						return
					}
					if res.Allowed {
						end := time.Now().Add(res.ResetAfter)
						mu.Lock()
						ends = append(ends, end)
						mu.Unlock()
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	windows, inWindow := 0, 0
	var first time.Time
	for _, e := range ends {
		if windows == 0 || e.Sub(first) > period/2 {
			windows++
			first, inWindow = e, 0
		}
		inWindow++
		if inWindow > limit {
			t.Fatalf("window %d admitted more than %d", windows, limit)
		}
	}
	if windows < 3 {
		t.Errorf("only %d windows seen; the test did not span enough of them", windows)
	}
}

func TestWindowResets(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	lim := limiter.New(srv.Pool(t))
	ctx := ctxT(t)
	key := redistest.Key(t)
	l := limiter.Per(2, 150*time.Millisecond)
	for i, want := range []bool{true, true, false} {
		if res, err := lim.Allow(ctx, key, l); err != nil || res.Allowed != want {
			t.Fatalf("step %d: got %+v, %v; want allowed %v", i, res, err, want)
		}
	}
	res, _ := lim.Allow(ctx, key, l)
	time.Sleep(res.RetryAfter + 20*time.Millisecond)
	res, err := lim.Allow(ctx, key, l)
	if err != nil || !res.Allowed || res.Remaining != 1 {
		t.Fatalf("after the window: got %+v, %v; want allowed with 1 remaining", res, err)
	}
}

func TestKeysAreSeparate(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	lim := limiter.New(srv.Pool(t))
	ctx := ctxT(t)
	a, b := redistest.Key(t), redistest.Key(t)
	l := limiter.PerMinute(1)
	steps := []struct {
		key  string
		want bool
	}{{a, true}, {a, false}, {b, true}, {b, false}}
	for i, s := range steps {
		if res, err := lim.Allow(ctx, s.key, l); err != nil || res.Allowed != s.want {
			t.Errorf("step %d: got %+v, %v; want allowed %v", i, res, err, s.want)
		}
	}
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	lim := limiter.New(srv.Pool(t), limiter.WithPrefix("custom:"))
	key := redistest.Key(t)
	if _, err := lim.Allow(ctxT(t), key, limiter.PerMinute(5)); err != nil {
		t.Fatal(err)
	}
	if got := srv.Int(t, "EXISTS", "custom:"+key); got != 1 {
		t.Errorf("EXISTS custom:key = %d, want 1", got)
	}
	if got := srv.Int(t, "EXISTS", limiter.DefaultPrefix+key); got != 0 {
		t.Errorf("EXISTS with the default prefix = %d, want 0", got)
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	lim := limiter.New(srv.Pool(t))
	ctx := ctxT(t)
	key := redistest.Key(t)
	l := limiter.PerHour(1)
	if res, err := lim.Allow(ctx, key, l); err != nil || !res.Allowed {
		t.Fatalf("first: %+v, %v", res, err)
	}
	if res, err := lim.Allow(ctx, key, l); err != nil || res.Allowed {
		t.Fatalf("second: %+v, %v", res, err)
	}
	if err := lim.Reset(ctx, key); err != nil {
		t.Fatal(err)
	}
	if res, err := lim.Allow(ctx, key, l); err != nil || !res.Allowed {
		t.Fatalf("after Reset: %+v, %v", res, err)
	}
}

// TestKeyWithoutExpiryGetsOne: a counter some other client created without
// an expiry must not block its owner forever.
func TestKeyWithoutExpiryGetsOne(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	lim := limiter.New(srv.Pool(t))
	key := redistest.Key(t)
	full := limiter.DefaultPrefix + key
	srv.Do(t, "SET", full, 5)
	t.Cleanup(func() { srv.Do(t, "DEL", full) })
	res, err := lim.Allow(ctxT(t), key, limiter.Per(5, 200*time.Millisecond))
	if err != nil || res.Allowed {
		t.Fatalf("got %+v, %v; want denied (the count was already 5)", res, err)
	}
	if ttl := srv.Int(t, "PTTL", full); ttl <= 0 || ttl > 200 {
		t.Fatalf("PTTL = %d, want (0, 200]", ttl)
	}
	time.Sleep(250 * time.Millisecond)
	if res, err := lim.Allow(ctxT(t), key, limiter.Per(5, 200*time.Millisecond)); err != nil || !res.Allowed {
		t.Fatalf("after the expiry: got %+v, %v; want allowed", res, err)
	}
}

func TestNotAnIntegerIsAnError(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	lim := limiter.New(srv.Pool(t))
	key := redistest.Key(t)
	full := limiter.DefaultPrefix + key
	srv.Do(t, "SET", full, "not a number", "PX", 60000)
	if _, err := lim.Allow(ctxT(t), key, limiter.PerMinute(5)); err == nil {
		t.Fatal("got no error for a key holding a string")
	}
	if got := srv.String(t, "GET", full); got != "not a number" {
		t.Errorf("the key was changed to %q", got)
	}
}

// TestAllowAll decides two keys in one pipeline.
func TestAllowAll(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	lim := limiter.New(srv.Pool(t))
	ctx := ctxT(t)
	a, b := redistest.Key(t), redistest.Key(t)
	steps := []struct{ allowedA, allowedB bool }{{true, true}, {true, false}, {false, false}}
	for i, s := range steps {
		res, err := lim.AllowAll(ctx,
			limiter.Request{Key: a, Limit: limiter.PerMinute(2)},
			limiter.Request{Key: b, Limit: limiter.PerMinute(1)})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if res[0].Allowed != s.allowedA || res[1].Allowed != s.allowedB {
			t.Errorf("step %d: got %v/%v, want %v/%v", i, res[0].Allowed, res[1].Allowed, s.allowedA, s.allowedB)
		}
	}
}

// TestScriptFlush: Redis loses its script cache between two calls; the next
// decision loads the script again by itself.
func TestScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	lim := limiter.New(srv.Pool(t))
	ctx := ctxT(t)
	key := redistest.Key(t)
	if err := lim.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		srv.Do(t, "SCRIPT", "FLUSH")
		res, err := lim.Allow(ctx, key, limiter.PerMinute(10))
		if err != nil || !res.Allowed || res.Remaining != 9-i {
			t.Fatalf("step %d after SCRIPT FLUSH: got %+v, %v", i, res, err)
		}
		srv.Do(t, "SCRIPT", "FLUSH")
		res2, err := lim.AllowAll(ctx, limiter.Request{Key: key + ".b", Limit: limiter.PerMinute(10)})
		if err != nil || !res2[0].Allowed || res2[0].Remaining != 9-i {
			t.Fatalf("step %d: AllowAll after SCRIPT FLUSH: got %+v, %v", i, res2, err)
		}
	}
}

// TestKilledAndRestarted: while Redis is down every call is an error, not a
// panic nor a verdict; after it is back, calls succeed again.
func TestKilledAndRestarted(t *testing.T) {
	srv := redistest.Start(t)
	lim := limiter.New(srv.Pool(t), limiter.WithTimeout(200*time.Millisecond))
	ctx := ctxT(t)
	key := redistest.Key(t)
	l := limiter.PerMinute(1000)

	var down atomic.Bool
	var okWhileDown, errsWhileDown, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				wasDown := down.Load()
				res, err := lim.Allow(ctx, key, l)
				total.Add(1)
				if err == nil && (res.Remaining < 0 || res.Remaining > l.Count) {
					t.Errorf("a wrong answer: %+v", res)
				}
				if wasDown && down.Load() {
					if err == nil {
						okWhileDown.Add(1)
					} else {
						errsWhileDown.Add(1)
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	srv.Kill(t)
	down.Store(true)
	time.Sleep(300 * time.Millisecond)
	down.Store(false)
	srv.Restart(t)

	// Back up: within a few seconds every call succeeds again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := lim.Allow(ctx, key, l)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 5s after the restart: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if okWhileDown.Load() != 0 {
		t.Errorf("%d calls succeeded while Redis was down", okWhileDown.Load())
	}
	if errsWhileDown.Load() == 0 {
		t.Errorf("no call failed while Redis was down (total %d)", total.Load())
	}
	for i := 0; i < 20; i++ {
		if _, err := lim.Allow(ctx, key, l); err != nil {
			t.Fatalf("call %d after recovery: %v", i, err)
		}
	}
}

// countingPool fails the test if anything asks it for a connection.
type countingPool struct{ gets atomic.Int64 }

func (p *countingPool) GetContext(context.Context) (redis.Conn, error) {
	p.gets.Add(1)
	return nil, errors.New("countingPool: no connections")
}

func TestInvalidInputSendsNothing(t *testing.T) {
	t.Parallel()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	ok := limiter.PerSecond(5)
	tests := []struct {
		name  string
		ctx   context.Context
		key   string
		limit limiter.Limit
		n     int
		want  error
	}{
		{"empty key", context.Background(), "", ok, 1, limiter.ErrInvalid},
		{"zero limit", context.Background(), "k", limiter.Limit{}, 1, limiter.ErrInvalid},
		{"limit count 0", context.Background(), "k", limiter.PerSecond(0), 1, limiter.ErrInvalid},
		{"negative limit", context.Background(), "k", limiter.PerSecond(-3), 1, limiter.ErrInvalid},
		{"period under a millisecond", context.Background(), "k", limiter.Per(5, time.Microsecond), 1, limiter.ErrInvalid},
		{"negative cost", context.Background(), "k", ok, -1, limiter.ErrInvalid},
		{"cost above the limit", context.Background(), "k", ok, 6, limiter.ErrInvalid},
		{"context done", done, "k", ok, 1, context.Canceled},
	}
	for _, tt := range tests {
		pool := &countingPool{}
		lim := limiter.New(pool)
		_, err := lim.AllowN(tt.ctx, tt.key, tt.limit, tt.n)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: AllowN err = %v, want %v", tt.name, err, tt.want)
		}
		n := tt.n
		if n == 0 {
			n = 1
		}
		_, err = lim.AllowAll(tt.ctx, limiter.Request{Key: "ok", Limit: ok}, limiter.Request{Key: tt.key, Limit: tt.limit, N: n})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: AllowAll err = %v, want %v", tt.name, err, tt.want)
		}
		if got := pool.gets.Load(); got != 0 {
			t.Errorf("%s: %d connections asked for, want 0", tt.name, got)
		}
	}
	pool := &countingPool{}
	if err := limiter.New(pool).Reset(context.Background(), ""); !errors.Is(err, limiter.ErrInvalid) || pool.gets.Load() != 0 {
		t.Errorf("Reset with an empty key: err %v, %d connections", err, pool.gets.Load())
	}
}

func TestNewNilPoolPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New(nil) did not panic")
		}
	}()
	limiter.New(nil)
}
