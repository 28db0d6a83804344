package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
)

var errConnClosed = errors.New("cluster: connection closed")

// conn is the connection GetContext returns: a handle that runs each command
// on a connection of its key's node, taken from that node's pool for the
// command alone.
type conn struct {
	c   *Cluster
	ctx context.Context // GetContext's: bounds the methods that take none

	mu      sync.Mutex
	err     error   // set once closed or broken
	queued  []*call // sent, not flushed
	pending []*call // flushed, not received
}

var (
	_ redis.ConnWithContext = (*conn)(nil)
	_ redis.ConnWithTimeout = (*conn)(nil)
)

// call is one command of a pipeline, and then its reply.
type call struct {
	cmd  string
	args []interface{}
	rt   route

	once sync.Once
	done chan struct{} // closed once v and err are set
	v    interface{}
	err  error
}

func (cl *call) finish(v interface{}, err error) {
	cl.once.Do(func() {
		cl.v, cl.err = v, err
		close(cl.done)
	})
}

// Close drops what was sent and not received; commands already flushed still
// run. It always returns nil.
func (cn *conn) Close() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err == nil {
		cn.err = errConnClosed
	}
	cn.queued, cn.pending = nil, nil
	return nil
}

// Err reports whether the connection is closed or broken (a reply abandoned
// by ReceiveContext), or its Cluster closed.
func (cn *conn) Err() error {
	cn.mu.Lock()
	err := cn.err
	cn.mu.Unlock()
	if err == nil && cn.c.isClosed() {
		return ErrClosed
	}
	return err
}

// Do is DoContext with the context given to GetContext.
func (cn *conn) Do(cmd string, args ...interface{}) (interface{}, error) {
	return cn.DoContext(cn.ctx, cmd, args...)
}

// DoWithTimeout is DoContext with the context given to GetContext, bounded by
// timeout too when it is above 0.
func (cn *conn) DoWithTimeout(timeout time.Duration, cmd string, args ...interface{}) (interface{}, error) {
	ctx, cancel := cn.withTimeout(timeout)
	defer cancel()
	return cn.DoContext(ctx, cmd, args...)
}

// DoContext runs one command on its node and returns the reply. Replies that
// are errors from Redis are returned as redis.Error, unwrapped, as redigo's
// Script.DoContext needs to see NOSCRIPT. It returns when ctx is done at the
// latest. As with redigo, commands sent before are flushed and their replies
// read first; the blank command "" does only that.
func (cn *conn) DoContext(ctx context.Context, cmd string, args ...interface{}) (interface{}, error) {
	cn.mu.Lock()
	err, busy := cn.err, len(cn.queued)+len(cn.pending) > 0
	cn.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var earlier error // the first error reply among the commands sent before
	if busy || cmd == "" {
		v, err := cn.drain(ctx)
		if cmd == "" && len(args) == 0 {
			return v, err
		}
		if _, isReply := err.(redis.Error); err != nil && !isReply {
			return nil, err
		}
		earlier = err
	}
	rt := routeOf(cmd, args)
	v, err := run(ctx, cmd, func(ctx context.Context) (interface{}, error) {
		return cn.c.exec(ctx, rt, cmd, args)
	})
	if _, isReply := err.(redis.Error); earlier != nil && (err == nil || isReply) {
		err = earlier // redigo's Do reports the first error reply
	}
	return v, err
}

// Send queues a command for the next Flush. It does no I/O.
func (cn *conn) Send(cmd string, args ...interface{}) error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err != nil {
		return cn.err
	}
	cn.queued = append(cn.queued, &call{
		cmd:  cmd,
		args: append([]interface{}(nil), args...),
		rt:   routeOf(cmd, args),
		done: make(chan struct{}),
	})
	return nil
}

// Flush starts the commands sent since the last Flush: one pipeline per
// node, the nodes concurrently, bounded by the context given to GetContext.
// It returns at once; Receive waits for the replies.
func (cn *conn) Flush() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err != nil {
		return cn.err
	}
	cn.flushLocked()
	return nil
}

func (cn *conn) flushLocked() {
	if len(cn.queued) == 0 {
		return
	}
	calls := cn.queued
	cn.queued = nil
	cn.pending = append(cn.pending, calls...)
	cn.c.start(cn.ctx, calls)
}

// Receive is ReceiveContext with the context given to GetContext.
func (cn *conn) Receive() (interface{}, error) { return cn.ReceiveContext(cn.ctx) }

// ReceiveWithTimeout is ReceiveContext with the context given to GetContext,
// bounded by timeout too when it is above 0.
func (cn *conn) ReceiveWithTimeout(timeout time.Duration) (interface{}, error) {
	ctx, cancel := cn.withTimeout(timeout)
	defer cancel()
	return cn.ReceiveContext(ctx)
}

// ReceiveContext returns the reply of the oldest command sent and not yet
// received, flushing first if nothing was flushed. An error reply is a
// redis.Error. If ctx is done before the reply comes, the connection is
// broken: the replies still due would be out of step.
func (cn *conn) ReceiveContext(ctx context.Context) (interface{}, error) {
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return nil, err
	}
	if len(cn.pending) == 0 {
		cn.flushLocked()
	}
	if len(cn.pending) == 0 {
		cn.mu.Unlock()
		return nil, errors.New("cluster: receive: no command was sent")
	}
	cl := cn.pending[0]
	cn.pending = cn.pending[1:]
	cn.mu.Unlock()

	select {
	case <-cl.done:
		return cl.v, cl.err
	case <-ctx.Done():
	}
	select {
	case <-cl.done: // both were ready: the reply wins
		return cl.v, cl.err
	default:
	}
	cn.mu.Lock()
	if cn.err == nil {
		cn.err = fmt.Errorf("cluster: connection broken: a reply was abandoned: %w", ctx.Err())
	}
	cn.pending = nil
	cn.mu.Unlock()
	return nil, fmt.Errorf("cluster: receive %s: %w", cl.cmd, ctx.Err())
}

// drain flushes and receives every reply due, and returns the last reply and
// the first error.
func (cn *conn) drain(ctx context.Context) (interface{}, error) {
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return nil, err
	}
	cn.flushLocked()
	n := len(cn.pending)
	cn.mu.Unlock()
	var last interface{}
	var first error
	for i := 0; i < n; i++ {
		v, err := cn.ReceiveContext(ctx)
		if _, isReply := err.(redis.Error); err != nil && !isReply {
			return nil, err
		}
		if first == nil {
			first = err
		}
		last = v
	}
	return last, first
}

func (cn *conn) withTimeout(timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		return cn.ctx, func() {}
	}
	return context.WithTimeout(cn.ctx, timeout)
}

// run calls f and returns its result, or ctx's error as soon as ctx is done:
// then f goes on in the background until it ends by itself, which the read
// timeouts derived from ctx make soon.
func run(ctx context.Context, name string, f func(context.Context) (interface{}, error)) (interface{}, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", name, err)
	}
	if ctx.Done() == nil { // never done: nothing to watch
		return f(ctx)
	}
	type result struct {
		v   interface{}
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f(ctx)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
	}
	select {
	case r := <-ch: // both were ready: the result wins
		return r.v, r.err
	default:
		return nil, fmt.Errorf("cluster: %s: %w", name, ctx.Err())
	}
}

// exec runs one routed command, following redirections.
func (c *Cluster) exec(ctx context.Context, rt route, cmd string, args []interface{}) (interface{}, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", cmd, err)
	}
	switch rt.kind {
	case toNowhere:
		return nil, nil
	case refused:
		return nil, rt.err
	case toMasters:
		return c.broadcast(ctx, cmd, args)
	}
	return c.follow(ctx, rt, cmd, args, nil)
}

// follow runs the command on the node of its slot, or at redir when not nil,
// and follows MOVED and ASK replies and retries TRYAGAIN, up to MaxRedirects
// times.
func (c *Cluster) follow(ctx context.Context, rt route, cmd string, args []interface{}, redir *redisc.RedirError) (interface{}, error) {
	for hops := 0; ; hops++ {
		var v interface{}
		var err error
		if redir == nil {
			v, err = c.doSlot(ctx, rt, cmd, args)
		} else {
			// A redirection names the node: go there directly. (Through
			// redisc, a node that cannot be reached would be swapped for a
			// random one, which would only redirect back.)
			v, err = c.doAt(ctx, redir.Addr, redir.Type == "ASK", cmd, args)
		}
		re := redisc.ParseRedir(err)
		tryAgain := re == nil && redisc.IsTryAgain(err)
		if re == nil && !tryAgain {
			return v, err
		}
		if hops >= c.cfg.MaxRedirects {
			return nil, fmt.Errorf("cluster: %s: still redirected after %d tries: %w", cmd, hops+1, err)
		}
		if tryAgain {
			if err := sleep(ctx, tryAgainDelay); err != nil {
				return nil, fmt.Errorf("cluster: %s: %w", cmd, err)
			}
		}
		redir = re // nil after TRYAGAIN: the slot's node again
	}
}

// doSlot runs the command once on a connection redisc binds to the slot of
// the route's keys (any master if there are none). A MOVED reply makes redisc
// update its slot map.
func (c *Cluster) doSlot(ctx context.Context, rt route, cmd string, args []interface{}) (interface{}, error) {
	rc := c.rc.Get()
	defer rc.Close()
	if err := redisc.BindConn(rc, rt.keys...); err != nil {
		return nil, c.wrap(ctx, cmd, "", err)
	}
	timeout, err := c.readTimeout(ctx) // after binding, which may have dialed
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", cmd, err)
	}
	v, err := redis.DoWithTimeout(rc, timeout, cmd, args...)
	return v, c.wrap(ctx, cmd, "", err)
}

// doAt runs the command once on the node at addr, after ASKING if asking.
func (c *Cluster) doAt(ctx context.Context, addr string, asking bool, cmd string, args []interface{}) (interface{}, error) {
	p, err := c.directPool(addr)
	if err != nil {
		return nil, c.wrap(ctx, cmd, addr, err)
	}
	conn, err := p.GetContext(ctx)
	if err != nil {
		return nil, c.wrap(ctx, cmd, addr, err)
	}
	defer conn.Close()
	if asking {
		if err := conn.Send("ASKING"); err != nil {
			return nil, c.wrap(ctx, cmd, addr, err)
		}
	}
	v, err := redis.DoContext(conn, ctx, cmd, args...)
	return v, c.wrap(ctx, cmd, addr, err)
}

// broadcast runs the command on every master, one after the other, and
// combines their replies.
func (c *Cluster) broadcast(ctx context.Context, cmd string, args []interface{}) (interface{}, error) {
	sub := strings.ToUpper(keyString(args[0])) // routeOf saw a subcommand
	name := cmd + " " + sub
	var replies []interface{}
	err := c.rc.EachNode(false, func(addr string, conn redis.Conn) error {
		timeout, err := c.readTimeout(ctx)
		if err != nil {
			return fmt.Errorf("cluster: %s: %w", name, err)
		}
		v, err := redis.DoWithTimeout(conn, timeout, cmd, args...)
		if err != nil {
			return fmt.Errorf("cluster: %s on %s: %w", name, addr, err)
		}
		replies = append(replies, v)
		return nil
	})
	if err != nil {
		if !strings.HasPrefix(err.Error(), "cluster: ") {
			err = fmt.Errorf("cluster: %s: %w", name, err)
		}
		return nil, err
	}
	if sub == "EXISTS" {
		return allExist(name, replies)
	}
	for _, r := range replies[1:] {
		if !reflect.DeepEqual(r, replies[0]) {
			return nil, fmt.Errorf("cluster: %s: the masters' replies differ: %s and %s", name, show(replies[0]), show(r))
		}
	}
	return replies[0], nil
}

// allExist combines the masters' replies to SCRIPT EXISTS: 1 for a script
// every master has, else 0.
func allExist(name string, replies []interface{}) (interface{}, error) {
	var all []int
	for _, r := range replies {
		got, err := redis.Ints(r, nil)
		if err != nil {
			return nil, fmt.Errorf("cluster: %s: %w", name, err)
		}
		if all == nil {
			all = got
		}
		if len(got) != len(all) {
			return nil, fmt.Errorf("cluster: %s: the masters' replies differ in length", name)
		}
		for i := range got {
			all[i] &= got[i]
		}
	}
	out := make([]interface{}, len(all))
	for i, v := range all {
		out[i] = int64(v)
	}
	return out, nil
}

func show(v interface{}) string {
	if b, ok := v.([]byte); ok {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprint(v)
}

// start runs calls in the background: those with a key grouped by node (as
// the last slot map says), one pipeline per node, the nodes concurrently; the
// others one by one. Each call is finished exactly once.
func (c *Cluster) start(ctx context.Context, calls []*call) {
	groups := make(map[string][]*call)
	var singles []*call
	for _, cl := range calls {
		if cl.rt.kind == toSlot && cl.rt.slot >= 0 {
			node := c.nodeHint(cl.rt.slot)
			groups[node] = append(groups[node], cl)
		} else {
			singles = append(singles, cl)
		}
	}
	for _, g := range groups {
		go c.pipeline(ctx, g)
	}
	if len(singles) > 0 {
		go func() {
			for _, cl := range singles {
				cl.finish(c.exec(ctx, cl.rt, cl.cmd, cl.args))
			}
		}()
	}
}

// pipeline sends calls (each with a key, most likely all on one node) on one
// connection bound to the first one's slot, and reads their replies. Calls
// redirected elsewhere are then run one by one.
func (c *Cluster) pipeline(ctx context.Context, calls []*call) {
	var retry []*call
	var retryAt []*redisc.RedirError
	func() {
		fail := func(from int, err error) {
			for _, cl := range calls[from:] {
				cl.finish(nil, err)
			}
		}
		if err := ctx.Err(); err != nil {
			fail(0, fmt.Errorf("cluster: pipeline: %w", err))
			return
		}
		rc := c.rc.Get()
		defer rc.Close()
		if err := redisc.BindConn(rc, calls[0].rt.keys...); err != nil {
			fail(0, c.wrap(ctx, calls[0].cmd, "", err))
			return
		}
		for _, cl := range calls {
			if err := rc.Send(cl.cmd, cl.args...); err != nil {
				fail(0, c.wrap(ctx, cl.cmd, "", err))
				return
			}
		}
		if err := rc.Flush(); err != nil {
			fail(0, c.wrap(ctx, calls[0].cmd, "", err))
			return
		}
		for i, cl := range calls {
			timeout, err := c.readTimeout(ctx)
			if err != nil {
				fail(i, fmt.Errorf("cluster: %s: %w", cl.cmd, err))
				return
			}
			v, err := redis.ReceiveWithTimeout(rc, timeout)
			if re := redisc.ParseRedir(err); re != nil || redisc.IsTryAgain(err) {
				retry, retryAt = append(retry, cl), append(retryAt, re)
				continue
			}
			if _, isReply := err.(redis.Error); err != nil && !isReply {
				// The connection failed: no later reply can be read.
				fail(i, c.wrap(ctx, cl.cmd, "", err))
				return
			}
			cl.finish(v, err)
		}
	}()
	for i, cl := range retry {
		cl.finish(c.follow(ctx, cl.rt, cl.cmd, cl.args, retryAt[i]))
	}
}

// readTimeout is how long the next read may wait: until ctx's deadline, but
// at most ReadTimeout; -1 (the connection's own read timeout, which is
// ReadTimeout) when ctx has no deadline.
func (c *Cluster) readTimeout(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return -1, nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return 0, context.DeadlineExceeded
	}
	return min(d, c.cfg.ReadTimeout), nil
}

// wrap returns err as it is when it is a reply from Redis (a redis.Error,
// which callers such as redigo's Script.DoContext assert), else with the
// package's prefix, the command and, if known, the node; a read that timed
// out at ctx's deadline also wraps context.DeadlineExceeded.
func (c *Cluster) wrap(ctx context.Context, cmd, addr string, err error) error {
	if err == nil {
		return nil
	}
	if _, isReply := err.(redis.Error); isReply {
		return err
	}
	if c.isClosed() {
		err = ErrClosed
	} else if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		// The read timed out at ctx's deadline: say so, as redigo does.
		err = fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	if addr != "" {
		return fmt.Errorf("cluster: %s on %s: %w", cmd, addr, err)
	}
	return fmt.Errorf("cluster: %s: %w", cmd, err)
}

func (c *Cluster) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
