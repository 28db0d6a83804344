package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"go.uber.org/goleak"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/pipeline"
)

// burst makes n concurrent decisions on distinct keys and returns their
// errors and the longest call.
func burst(lim *limiter.Limiter, key string, n int) (errs []error, longest time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, err := lim.Allow(context.Background(), key+"."+strconv.Itoa(i), limiter.PerMinute(1000))
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			longest = max(longest, d)
		}()
	}
	wg.Wait()
	return errs, longest
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var connectedClients = regexp.MustCompile(`connected_clients:(\d+)`)

// clients is the number of clients connected to srv, this query's included.
func clients(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	m := connectedClients.FindStringSubmatch(srv.String(t, "INFO", "clients"))
	if m == nil {
		t.Fatal("INFO clients without connected_clients")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestPaused: Redis stops answering (SIGSTOP). Every decision returns within
// its budget; pending requests are all answered once the hang timeout passes
// and their connections are given up; after Resume decisions succeed again,
// and no goroutine or connection is left over. Not parallel: goleak.
func TestPaused(t *testing.T) {
	srv := redistest.Start(t)
	leaks := goleak.IgnoreCurrent()
	const budget, hang, slack = 100 * time.Millisecond, 300 * time.Millisecond, 40 * time.Millisecond
	m := pipeline.New(pipeline.DialURL(srv.URL), pipeline.WithHangTimeout(hang))
	defer m.Close()
	lim := limiter.New(m, limiter.WithTimeout(budget))
	key := redistest.Key(t)
	if err := lim.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if errs, _ := burst(lim, key, 50); len(errs) > 0 {
		t.Fatalf("before the pause: %v", errs[0])
	}

	srv.Pause(t)
	paused := true
	defer func() {
		if paused {
			srv.Resume(t)
		}
	}()
	// Round 0 runs on the connections that were live, round 1 on ones dialed
	// after the hang timeout gave those up (TCP still connects to a stopped
	// Redis; nothing answers).
	var lost uint64
	for round := 0; round < 2; round++ {
		// Calls without a deadline of their own end with the hang timeout.
		hangErrs := make(chan error, 5)
		start := time.Now()
		for i := 0; i < cap(hangErrs); i++ {
			go func() {
				_, err := do(context.Background(), m, "PING")
				hangErrs <- err
			}()
		}
		errs, longest := burst(lim, key, 50)
		t.Logf("round %d: 50 decisions with Redis paused, the longest took %v (budget %v)", round, longest, budget)
		if len(errs) != 50 {
			t.Errorf("round %d: %d of 50 decisions failed while Redis was paused, want all", round, len(errs))
		}
		for _, err := range errs {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("round %d: err %v, want the budget's DeadlineExceeded", round, err)
				break
			}
		}
		if longest > budget+slack {
			t.Errorf("round %d: a decision took %v, budget %v", round, longest, budget)
		}
		for i := 0; i < cap(hangErrs); i++ {
			if err := <-hangErrs; !errors.Is(err, pipeline.ErrHung) {
				t.Errorf("round %d: PING without a deadline: err %v, want ErrHung", round, err)
			}
		}
		if d := time.Since(start); d < hang || d > hang+time.Second {
			t.Errorf("round %d: hung requests answered after %v, want about %v", round, d, hang)
		}
		// A connection that carried nothing since the pause may stay: it
		// has no overdue request. Decisions sent a moment after the PINGs,
		// on another connection, reach their hang timeout a moment later.
		prev := lost
		waitFor(t, hang, fmt.Sprintf("round %d: pending requests answered and hung connections given up", round), func() bool {
			st := m.Stats()
			return st.Pending == 0 && st.Lost > prev
		})
		lost = m.Stats().Lost
	}
	if st := m.Stats(); st.Dials > 3*2 {
		t.Errorf("%d dials while paused, want a few", st.Dials)
	}

	srv.Resume(t)
	paused = false
	if errs, longest := burst(lim, key, 50); len(errs) > 0 {
		t.Fatalf("after Resume: %d decisions failed (%v), longest %v", len(errs), errs[0], longest)
	}
	// Redis closes the connections given up while it slept; ours are 2.
	waitFor(t, 3*time.Second, "Redis still has more than our 2 connections", func() bool { return clients(t, srv) <= 2+1 })
	if st := m.Stats(); st.Conns > 2 {
		t.Errorf("after Resume: %+v", st)
	}
	m.Close()
	goleak.VerifyNone(t, leaks,
		// dockertest's HTTP client to the Docker engine (Pause, Resume).
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// TestKilledAndRestarted: Redis dies and comes back on the same address.
// While it is down every call is an error (never a verdict, never a panic);
// the first burst of decisions after the restart is decided by Redis, every
// one, whether the Mux was idle or busy when Redis died.
func TestKilledAndRestarted(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	m := newMux(t, srv, pipeline.WithHangTimeout(500*time.Millisecond))
	lim := limiter.New(m, limiter.WithTimeout(200*time.Millisecond))
	key := redistest.Key(t)
	l := limiter.PerMinute(1000)

	t.Run("idle", func(t *testing.T) {
		if errs, _ := burst(lim, key+".idle-before", 50); len(errs) > 0 {
			t.Fatal(errs[0])
		}
		srv.Kill(t)
		waitFor(t, time.Second, "the closed connections still live", func() bool { return m.Stats().Conns == 0 })
		for i := 0; i < 10; i++ {
			if res, err := lim.Allow(context.Background(), key, l); err == nil {
				t.Fatalf("Redis down, and a verdict: %+v", res)
			}
		}
		srv.Restart(t)
		if errs, longest := burst(lim, key+".idle-after", 50); len(errs) > 0 {
			t.Fatalf("first burst after the restart: %d of 50 failed, e.g. %v (longest %v)", len(errs), errs[0], longest)
		}
	})

	t.Run("busy", func(t *testing.T) {
		var down atomic.Bool
		var okWhileDown, errsWhileDown atomic.Int64
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
					res, err := lim.Allow(context.Background(), key+".busy", l)
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
					time.Sleep(time.Millisecond)
				}
			}()
		}
		time.Sleep(100 * time.Millisecond)
		srv.Kill(t)
		down.Store(true)
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		if okWhileDown.Load() != 0 || errsWhileDown.Load() == 0 {
			t.Errorf("while Redis was down: %d verdicts, %d errors; want none and some", okWhileDown.Load(), errsWhileDown.Load())
		}
		srv.Restart(t)
		if errs, longest := burst(lim, key+".busy-after", 50); len(errs) > 0 {
			t.Fatalf("first burst after the restart: %d of 50 failed, e.g. %v (longest %v)", len(errs), errs[0], longest)
		}
	})
}

// TestContextCancel: callers leave at their deadline or cancellation while
// Redis is silent; the late replies are dropped, never handed to anyone else.
func TestContextCancel(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	m := newMux(t, srv, pipeline.WithHangTimeout(5*time.Second))
	if _, err := do(ctxT(t), m, "PING"); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume(t)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := do(ctx, m, "ECHO", "late-1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: err %v", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond+40*time.Millisecond {
		t.Errorf("a call with a 50ms deadline took %v", d)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := do(ctx, m, "ECHO", "late-2"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: err %v", err)
	}

	// A batch whose receiver gives up: the handle is broken, as redigo's is.
	c, _ := m.GetContext(context.Background())
	c.Send("ECHO", "late-3")
	c.Send("ECHO", "late-4")
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := redis.ReceiveContext(c, ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("batch receive: err %v", err)
	}
	if c.Err() == nil {
		t.Error("handle not broken after its receive gave up")
	}
	if _, err := c.Do("PING"); err == nil {
		t.Error("Do on a broken handle: no error")
	}
	c.Close()
	if st := m.Stats(); st.Pending != 4 {
		t.Errorf("pending while paused: %+v, want the 4 abandoned requests", st)
	}

	srv.Resume(t)
	resumed = true
	// The late replies arrive and are dropped: everyone gets their own.
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := "mine-" + strconv.Itoa(i)
			if got, err := redis.String(do(ctxT(t), m, "ECHO", want)); err != nil || got != want {
				t.Errorf("after Resume: got %q, %v; want %q", got, err, want)
			}
		}()
	}
	wg.Wait()
	waitFor(t, time.Second, "late replies still pending", func() bool { return m.Stats().Pending == 0 })
}

// TestClose: Close answers in-flight requests with ErrClosed at once; the Mux
// and its handles are unusable afterwards.
func TestClose(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	m := pipeline.New(pipeline.DialURL(srv.URL), pipeline.WithHangTimeout(time.Minute))
	ctx := ctxT(t)
	held, _ := m.GetContext(ctx)
	if _, err := held.Do("PING"); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)
	defer srv.Resume(t)
	errc := make(chan error, 10)
	for i := 0; i < cap(errc); i++ {
		go func() {
			_, err := do(context.Background(), m, "PING")
			errc <- err
		}()
	}
	waitFor(t, 2*time.Second, "requests not pending", func() bool { return m.Stats().Pending == cap(errc) })
	start := time.Now()
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for i := 0; i < cap(errc); i++ {
		if err := <-errc; !errors.Is(err, pipeline.ErrClosed) {
			t.Errorf("in-flight request: err %v, want ErrClosed", err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close and its answers took %v", d)
	}
	if _, err := m.GetContext(ctx); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("GetContext after Close: err %v, want ErrClosed", err)
	}
	if _, err := held.Do("PING"); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("Do on a handle from before Close: err %v, want ErrClosed", err)
	}
	if err := held.Close(); err != nil {
		t.Errorf("closing the handle: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := runtime.NumGoroutine(); n > 1000 {
		t.Errorf("%d goroutines", n)
	}
}

// TestHangTimeout: with Redis silent, a call with no deadline of its own ends
// after the hang timeout with ErrHung, over plain TCP and over TLS (where the
// deadlines pass through tls.Conn).
func TestHangTimeout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const hang = 200 * time.Millisecond
	for _, tt := range []struct {
		name string
		url  string
	}{
		{"tcp", srv.URL},
		{"tls", tlsProxy(t, srv.Addr)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := pipeline.New(pipeline.DialURL(tt.url, redis.DialTLSSkipVerify(true)), pipeline.WithHangTimeout(hang))
			defer m.Close()
			if _, err := do(ctxT(t), m, "PING"); err != nil {
				t.Fatal(err)
			}
			// Several idle hang periods: an idle connection is never given up.
			time.Sleep(3 * hang)
			if st := m.Stats(); st.Lost != 0 || st.Conns == 0 {
				t.Fatalf("idle connection given up: %+v", st)
			}
			srv.Pause(t)
			start := time.Now()
			_, err := do(context.Background(), m, "PING")
			d := time.Since(start)
			srv.Resume(t)
			if !errors.Is(err, pipeline.ErrHung) {
				t.Fatalf("err %v, want ErrHung", err)
			}
			if d < hang || d > hang+500*time.Millisecond {
				t.Errorf("ErrHung after %v, want about %v", d, hang)
			}
			if v, err := redis.String(do(ctxT(t), m, "ECHO", "back")); err != nil || v != "back" {
				t.Errorf("after Resume: %q, %v", v, err)
			}
		})
	}
}

// gate holds up the writes of the connections it guards while it is shut.
type gate struct {
	mu      sync.Mutex
	shut    chan struct{} // nil while open
	waiting atomic.Int32
}

func (g *gate) close() {
	g.mu.Lock()
	g.shut = make(chan struct{})
	g.mu.Unlock()
}

func (g *gate) wait(done <-chan struct{}) error {
	g.mu.Lock()
	shut := g.shut
	g.mu.Unlock()
	if shut == nil {
		return nil
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-shut:
		return nil
	case <-done:
		return net.ErrClosed
	}
}

type gatedConn struct {
	net.Conn
	g    *gate
	done chan struct{}
	once sync.Once
}

func (c *gatedConn) Write(p []byte) (int, error) {
	if err := c.g.wait(c.done); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *gatedConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// TestUnwrittenRequestsRetried: when a connection fails, the requests queued
// on it that were never written go out on a new connection; the one being
// written when it failed gets the error, since Redis may have seen it.
func TestUnwrittenRequestsRetried(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	g := &gate{}
	var dials atomic.Int32
	m := newMux(t, srv, pipeline.WithConns(1), pipeline.WithHangTimeout(10*time.Second),
		pipeline.WithNetDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil || dials.Add(1) > 1 {
				return c, err
			}
			return &gatedConn{Conn: c, g: g, done: make(chan struct{})}, nil
		}))
	ctx := ctxT(t)
	if _, err := do(ctx, m, "PING"); err != nil {
		t.Fatal(err)
	}
	g.close()
	type result struct {
		want, got string
		err       error
	}
	results := make(chan result, 3)
	echo := func(s string) {
		got, err := redis.String(do(ctx, m, "ECHO", s))
		results <- result{s, got, err}
	}
	go echo("being written")
	waitFor(t, 2*time.Second, "the writer is not held at the gate", func() bool { return g.waiting.Load() == 1 })
	go echo("queued 1")
	go echo("queued 2")
	waitFor(t, 2*time.Second, "requests not queued", func() bool { return m.Stats().Pending == 3 })
	srv.Do(t, "CLIENT", "KILL", "TYPE", "normal")
	for i := 0; i < 3; i++ {
		r := <-results
		switch {
		case r.want == "being written" && r.err == nil:
			t.Errorf("the request being written when the connection failed: got %q, want an error", r.got)
		case r.want != "being written" && (r.err != nil || r.got != r.want):
			t.Errorf("queued request %q: got %q, %v", r.want, r.got, r.err)
		}
	}
	if st := m.Stats(); st.Lost != 1 || st.Dials != 2 {
		t.Errorf("stats: %+v, want 1 lost connection and 2 dials", st)
	}
}
