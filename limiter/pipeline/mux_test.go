package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/pipeline"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newMux returns a Mux to srv, closed when the test ends.
func newMux(t testing.TB, srv *redistest.Server, opts ...pipeline.Option) *pipeline.Mux {
	t.Helper()
	m := pipeline.New(pipeline.DialURL(srv.URL), opts...)
	t.Cleanup(func() { m.Close() })
	return m
}

// do runs one command through a fresh handle of m.
func do(ctx context.Context, m *pipeline.Mux, cmd string, args ...interface{}) (interface{}, error) {
	c, err := m.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return redis.DoContext(c, ctx, cmd, args...)
}

// TestOrdering: many goroutines, each checking that every reply is its own:
// ECHO of a unique value, INCR of a key of its own, and small batches.
func TestOrdering(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	for _, conns := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("conns-%d", conns), func(t *testing.T) {
			t.Parallel()
			m := newMux(t, srv, pipeline.WithConns(conns))
			ctx := ctxT(t)
			base := redistest.Key(t)
			const goroutines, perG = 64, 60
			var wg sync.WaitGroup
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := base + "." + strconv.Itoa(g)
					defer do(context.Background(), m, "DEL", key)
					for i := 1; i <= perG; i++ {
						want := fmt.Sprintf("g%d-i%d", g, i)
						if got, err := redis.String(do(ctx, m, "ECHO", want)); err != nil || got != want {
							t.Errorf("ECHO %s: got %q, %v", want, got, err)
							return
						}
						if got, err := redis.Int(do(ctx, m, "INCR", key)); err != nil || got != i {
							t.Errorf("goroutine %d: INCR %d: got %d, %v", g, i, got, err)
							return
						}
						if i%10 == 0 {
							c, _ := m.GetContext(ctx)
							c.Send("ECHO", want+"a")
							c.Send("GET", key)
							c.Send("ECHO", want+"b")
							got, err := redis.Values(c.Do(""))
							c.Close()
							if err != nil || len(got) != 3 || string(got[0].([]byte)) != want+"a" ||
								string(got[1].([]byte)) != strconv.Itoa(i) || string(got[2].([]byte)) != want+"b" {
								t.Errorf("batch %s: got %q, %v", want, got, err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			if st := m.Stats(); st.Conns > conns || st.Pending != 0 || st.Lost != 0 {
				t.Errorf("stats after the run: %+v", st)
			}
		})
	}
}

// TestLimiterExact: several Muxes (as several app instances would have),
// many goroutines each, one key: exactly the limit is admitted.
func TestLimiterExact(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	const muxes, goroutines, perG, limit = 4, 16, 10, 97
	key := redistest.Key(t)
	ctx := ctxT(t)
	var allowed, denied, errs atomic.Int64
	var wg sync.WaitGroup
	for p := 0; p < muxes; p++ {
		lim := limiter.New(newMux(t, srv))
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perG; i++ {
					res, err := lim.Allow(ctx, key, limiter.Per(limit, time.Minute))
					switch {
					case err != nil:
						t.Error(err)
						errs.Add(1)
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
	if errs.Load() != 0 || allowed.Load() != limit || denied.Load() != muxes*goroutines*perG-limit {
		t.Errorf("allowed %d, denied %d, errors %d; want allowed %d, denied %d, errors 0",
			allowed.Load(), denied.Load(), errs.Load(), limit, muxes*goroutines*perG-limit)
	}
}

// TestBatch: Send, Flush and Receive, with an error reply in the middle, and
// redigo's Do semantics over pending commands.
func TestBatch(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	m := newMux(t, srv)
	ctx := ctxT(t)
	key := redistest.Key(t)
	t.Cleanup(func() { srv.Do(t, "DEL", key) })

	c, err := m.GetContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Receive(); err == nil {
		t.Error("Receive with nothing sent: no error")
	}
	for _, cmd := range [][]interface{}{{"SET", key, "a string"}, {"INCR", key}, {"GET", key}, {"PING"}} {
		if err := c.Send(cmd[0].(string), cmd[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		want    interface{}
		wantErr bool
	}{{"OK", false}, {nil, true}, {"a string", false}, {"PONG", false}}
	for i, s := range steps {
		got, err := redis.ReceiveContext(c, ctx)
		if b, ok := got.([]byte); ok {
			got = string(b)
		}
		var rerr redis.Error
		if s.wantErr != errors.As(err, &rerr) || got != s.want {
			t.Errorf("step %d: got %v, %v; want %v, error reply %v", i, got, err, s.want, s.wantErr)
		}
	}

	// Do after Sends: all flushed, the last reply with the first error.
	c.Send("INCR", key)
	reply, err := c.Do("ECHO", "last")
	if b, _ := reply.([]byte); string(b) != "last" {
		t.Errorf("Do after a failing Send: reply %v, want last", reply)
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		t.Errorf("Do after a failing Send: err %v, want the redis.Error", err)
	}
	// Do("") returns every pending reply, error replies as values.
	c.Send("ECHO", "x")
	c.Send("INCR", key)
	all, err := redis.Values(c.Do(""))
	if err != nil || len(all) != 2 || string(all[0].([]byte)) != "x" {
		t.Fatalf("Do(\"\"): got %v, %v", all, err)
	}
	if _, ok := all[1].(redis.Error); !ok {
		t.Errorf("Do(\"\"): second reply %T, want redis.Error", all[1])
	}
	if v, err := c.Do(""); v != nil || err != nil {
		t.Errorf("Do(\"\") with nothing pending: %v, %v", v, err)
	}
	// The handle is still good after error replies.
	if v, err := redis.String(c.Do("ECHO", "still")); err != nil || v != "still" {
		t.Errorf("after error replies: %q, %v", v, err)
	}

	// AllowAll, which pipelines on one handle, through the Mux.
	lim := limiter.New(m)
	a, b := redistest.Key(t), redistest.Key(t)
	for i, want := range [][2]bool{{true, true}, {true, false}, {false, false}} {
		res, err := lim.AllowAll(ctx,
			limiter.Request{Key: a, Limit: limiter.PerMinute(2)},
			limiter.Request{Key: b, Limit: limiter.PerMinute(1)})
		if err != nil {
			t.Fatalf("AllowAll step %d: %v", i, err)
		}
		if res[0].Allowed != want[0] || res[1].Allowed != want[1] {
			t.Errorf("AllowAll step %d: got %v/%v, want %v/%v", i, res[0].Allowed, res[1].Allowed, want[0], want[1])
		}
	}
}

// TestErrorReplyAsRedigo: a Redis error reply comes back exactly as redigo's
// own connection returns it.
func TestErrorReplyAsRedigo(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	m := newMux(t, srv)
	ctx := ctxT(t)
	key := redistest.Key(t)
	srv.Do(t, "SET", key, "x", "PX", 60000)

	plain, err := srv.DialContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	mc, _ := m.GetContext(ctx)
	defer mc.Close()
	for _, cmd := range [][]interface{}{{"INCR", key}, {"EVALSHA", "0000000000000000000000000000000000000000", 0}, {"NOSUCHCOMMAND"}} {
		wantReply, wantErr := redis.DoContext(plain, ctx, cmd[0].(string), cmd[1:]...)
		gotReply, gotErr := redis.DoContext(mc, ctx, cmd[0].(string), cmd[1:]...)
		if _, ok := gotErr.(redis.Error); !ok || gotErr != wantErr || gotReply != wantReply {
			t.Errorf("%v: got %#v, %#v; redigo gives %#v, %#v", cmd[0], gotReply, gotErr, wantReply, wantErr)
		}
	}
}

// TestScriptFlush: Redis loses its script cache between decisions; redigo's
// EVALSHA-then-EVAL fallback heals it through the Mux, for single decisions,
// a concurrent burst and AllowAll.
func TestScriptFlush(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	lim := limiter.New(newMux(t, srv))
	ctx := ctxT(t)
	key := redistest.Key(t)
	if err := lim.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		srv.Do(t, "SCRIPT", "FLUSH")
		res, err := lim.Allow(ctx, key, limiter.PerMinute(100))
		if err != nil || !res.Allowed || res.Remaining != 99-i {
			t.Fatalf("step %d after SCRIPT FLUSH: got %+v, %v", i, res, err)
		}
		srv.Do(t, "SCRIPT", "FLUSH")
		res2, err := lim.AllowAll(ctx, limiter.Request{Key: key + ".b", Limit: limiter.PerMinute(10)})
		if err != nil || !res2[0].Allowed || res2[0].Remaining != 9-i {
			t.Fatalf("step %d: AllowAll after SCRIPT FLUSH: got %+v, %v", i, res2, err)
		}
	}
	srv.Do(t, "SCRIPT", "FLUSH")
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := lim.Allow(ctx, key+".burst."+strconv.Itoa(g), limiter.PerMinute(10)); err != nil {
				t.Errorf("burst after SCRIPT FLUSH: %v", err)
			}
		}()
	}
	wg.Wait()
}

// TestRefused: commands that would change or block the shared connection
// are refused before anything is sent.
func TestRefused(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	// Nothing listens here: a command that got as far as a dial would fail
	// with a dial error, not ErrRefused.
	m := pipeline.New(pipeline.Dial("tcp", "127.0.0.1:1"))
	defer m.Close()
	tests := []struct {
		cmd  string
		args []interface{}
	}{
		{"SELECT", []interface{}{1}},
		{"select", []interface{}{1}},
		{"AUTH", []interface{}{"pw"}},
		{"HELLO", []interface{}{3}},
		{"MULTI", nil},
		{"EXEC", nil},
		{"WATCH", []interface{}{"k"}},
		{"SUBSCRIBE", []interface{}{"ch"}},
		{"PSubscribe", []interface{}{"ch*"}},
		{"BLPOP", []interface{}{"k", 0}},
		{"BRPOPLPUSH", []interface{}{"a", "b", 0}},
		{"BZPOPMIN", []interface{}{"k", 0}},
		{"CLIENT", []interface{}{"REPLY", "OFF"}},
		{"MONITOR", nil},
		{"QUIT", nil},
		{"WAIT", []interface{}{1, 0}},
		{"XREAD", []interface{}{"block", 0, "STREAMS", "s", "$"}},
		{"XREADGROUP", []interface{}{"GROUP", "g", "c", []byte("BLOCK"), 0, "STREAMS", "s", ">"}},
	}
	for _, tt := range tests {
		c, err := m.GetContext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Do(tt.cmd, tt.args...); !errors.Is(err, pipeline.ErrRefused) {
			t.Errorf("Do %s: err %v, want ErrRefused", tt.cmd, err)
		}
		if err := c.Send(tt.cmd, tt.args...); !errors.Is(err, pipeline.ErrRefused) {
			t.Errorf("Send %s: err %v, want ErrRefused", tt.cmd, err)
		}
		c.Close()
	}
	if st := m.Stats(); st.Dials != 0 {
		t.Errorf("%d dials for refused commands, want 0", st.Dials)
	}
	// The same commands' harmless cousins go through (and fail to dial here).
	for _, cmd := range [][]interface{}{{"XREAD", "COUNT", 1, "STREAMS", "s", "0"}, {"LPOP", "k"}, {"EVAL", "return 1", 0}} {
		c, _ := m.GetContext(ctx)
		if _, err := c.Do(cmd[0].(string), cmd[1:]...); err == nil || errors.Is(err, pipeline.ErrRefused) {
			t.Errorf("%v: err %v, want a dial error", cmd, err)
		}
		c.Close()
	}
}

// TestContextDone: a context already done sends nothing; GetContext with it
// fails.
func TestContextDone(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	m := newMux(t, srv)
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.GetContext(done); !errors.Is(err, context.Canceled) {
		t.Errorf("GetContext: err %v, want context.Canceled", err)
	}
	c, _ := m.GetContext(context.Background())
	defer c.Close()
	if _, err := redis.DoContext(c, done, "PING"); !errors.Is(err, context.Canceled) {
		t.Errorf("DoContext: err %v, want context.Canceled", err)
	}
	if st := m.Stats(); st.Dials != 0 {
		t.Errorf("%d dials, want 0", st.Dials)
	}
}

// TestNoticesClosedConnection: a connection Redis closes while nothing is
// pending is noticed at once and replaced on the next request.
func TestNoticesClosedConnection(t *testing.T) {
	srv := redistest.Start(t)
	m := newMux(t, srv, pipeline.WithConns(2))
	ctx := ctxT(t)
	for i := 0; i < 10; i++ {
		if _, err := do(ctx, m, "PING"); err != nil {
			t.Fatal(err)
		}
	}
	if st := m.Stats(); st.Conns == 0 {
		t.Fatalf("no connection after PINGs: %+v", st)
	}
	srv.Do(t, "CLIENT", "KILL", "TYPE", "normal") // skips its own connection
	deadline := time.Now().Add(2 * time.Second)
	for m.Stats().Conns != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("killed connections still counted live: %+v", m.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		if v, err := redis.String(do(ctx, m, "ECHO", "again")); err != nil || v != "again" {
			t.Fatalf("after CLIENT KILL: %q, %v", v, err)
		}
	}
	if st := m.Stats(); st.Lost < 1 {
		t.Errorf("Lost = %d, want the killed connections counted", st.Lost)
	}
}

// recordingConn keeps a copy of everything written to it.
type recordingConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestBatchAdjacent: the commands of one Flush are written one after the
// other in one connection's stream, however many goroutines write at once.
func TestBatchAdjacent(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	var mu sync.Mutex
	var streams []*bytes.Buffer
	m := newMux(t, srv, pipeline.WithConns(2), pipeline.WithNetDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		b := new(bytes.Buffer)
		mu.Lock()
		streams = append(streams, b)
		mu.Unlock()
		return &recordingConn{Conn: c, mu: &mu, buf: b}, nil
	}))
	ctx := ctxT(t)
	encode := func(v string) string { return fmt.Sprintf("*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n", len(v), v) }
	var batches []string
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		var mine []string
		for i := 0; i < 30; i++ {
			var enc strings.Builder
			for j := 0; j < 5; j++ {
				enc.WriteString(encode(fmt.Sprintf("batch-%d-%d-%d", g, i, j)))
			}
			mine = append(mine, enc.String())
		}
		batches = append(batches, mine...)
		wg.Add(2)
		go func() { // batches
			defer wg.Done()
			for i := 0; i < 30; i++ {
				c, _ := m.GetContext(ctx)
				for j := 0; j < 5; j++ {
					c.Send("ECHO", fmt.Sprintf("batch-%d-%d-%d", g, i, j))
				}
				if _, err := c.Do(""); err != nil {
					t.Error(err)
				}
				c.Close()
			}
		}()
		go func() { // noise in between
			defer wg.Done()
			for i := 0; i < 150; i++ {
				if _, err := do(ctx, m, "ECHO", "noise"); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, want := range batches {
		found := false
		for _, s := range streams {
			found = found || strings.Contains(s.String(), want)
		}
		if !found {
			t.Fatalf("a batch's commands are not adjacent in any connection's stream: %q", want)
		}
	}
}

// TestDoTimeout: the handle-less DoTimeout answers as DoContext does, is
// bounded by its timeout and by its context while Redis is busy, reuses its
// pooled timers without stale ticks, and fails with ErrClosed after Close.
func TestDoTimeout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	m := newMux(t, srv)
	ctx := ctxT(t)

	for _, timeout := range []time.Duration{0, time.Second} {
		got, err := redis.String(m.DoTimeout(ctx, timeout, "ECHO", "hello"))
		if err != nil || got != "hello" {
			t.Fatalf("ECHO with timeout %v: got %q, %v", timeout, got, err)
		}
	}
	reply, err := m.DoTimeout(ctx, time.Second, "NOSUCHCOMMAND")
	if e, ok := err.(redis.Error); !ok || reply != e {
		t.Errorf("error reply: got %#v, %#v; want the redis.Error as both", reply, err)
	}
	if _, err := m.DoTimeout(ctx, time.Second, "SELECT", 1); !errors.Is(err, pipeline.ErrRefused) {
		t.Errorf("SELECT: err %v, want ErrRefused", err)
	}

	// Redis busy for 300 ms in a script: the timeout, or the context when
	// it ends first, cuts the wait short.
	busy := make(chan error, 1)
	go func() {
		c, err := srv.DialContext(ctx)
		if err != nil {
			busy <- err
			return
		}
		defer c.Close()
		_, err = c.Do("EVAL", `local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + 300000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop
return 1`, 0)
		busy <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the script start
	const slack = 40 * time.Millisecond
	start := time.Now()
	if _, err := m.DoTimeout(ctx, 50*time.Millisecond, "PING"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PING with Redis busy: err %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond+slack {
		t.Errorf("PING with a 50ms timeout took %v", d)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := m.DoTimeout(short, time.Second, "PING"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PING with Redis busy and a 30ms context: err %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 30*time.Millisecond+slack {
		t.Errorf("PING with a 30ms context took %v", d)
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
	}

	// The requests given up above come back to the pool with fired timers:
	// no stale tick may cut a later call short.
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := m.DoTimeout(ctx, time.Second, "PING"); err != nil {
					t.Errorf("PING after the busy spell: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()

	m.Close()
	if _, err := m.DoTimeout(ctx, time.Second, "PING"); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("after Close: err %v, want ErrClosed", err)
	}
}
