package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

var (
	_ redis.Conn            = (*conn)(nil)
	_ redis.ConnWithContext = (*conn)(nil)
	_ redis.ConnWithTimeout = (*conn)(nil)
)

var (
	errConnClosed     = errors.New("pipeline: connection closed")
	errNothingPending = errors.New("pipeline: Receive with no command sent")
	errEmptyCommand   = errors.New("pipeline: empty command")
)

// conn is the handle GetContext returns: redigo's connection interface over
// the Mux. It is not safe for concurrent use.
//
// Like redigo's connection it is broken for good by a failure other than a
// Redis error reply (the context ending, the connection to Redis lost, the
// Mux closed): that call and every later one return the error, and the
// replies still owed to the handle are dropped.
type conn struct {
	m     *Mux
	sendq []*request // sent, not yet flushed
	recvq []*request // flushed; recvq[head:] not yet received
	head  int
	err   error
}

// Close drops the replies the handle has not received and ends the handle.
func (c *conn) Close() error {
	if c.err != errConnClosed {
		c.abandonAll()
		c.err = errConnClosed
	}
	return nil
}

// Err returns the error that broke the handle, if any.
func (c *conn) Err() error {
	if c.err == nil && c.m.closed.Load() {
		return ErrClosed
	}
	return c.err
}

// Do sends one command through the Mux and returns its reply. See DoContext.
func (c *conn) Do(cmd string, args ...interface{}) (interface{}, error) {
	return c.DoContext(context.Background(), cmd, args...)
}

// DoWithTimeout is DoContext with a context that ends after timeout; zero
// means no bound but the Mux's hang timeout.
func (c *conn) DoWithTimeout(timeout time.Duration, cmd string, args ...interface{}) (interface{}, error) {
	if timeout <= 0 {
		return c.DoContext(context.Background(), cmd, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.DoContext(ctx, cmd, args...)
}

// DoContext sends one command through the Mux and waits for its reply or for
// ctx to end. As with redigo's connection, a Redis error reply is returned as
// both the reply and the error; commands sent before and not received yet are
// flushed first and their replies read, the first error among them is
// returned with the last reply; and cmd "" only flushes, returning all those
// replies (error replies among them as redis.Error values).
func (c *conn) DoContext(ctx context.Context, cmd string, args ...interface{}) (interface{}, error) {
	if c.err != nil {
		return nil, c.err
	}
	if cmd == "" || len(c.sendq) > 0 || c.head < len(c.recvq) {
		return c.doPipeline(ctx, cmd, args)
	}
	if err := checkCommand(cmd, args); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	r := c.m.newRequest(cmd, args)
	one := [1]*request{r}
	if err := c.m.submit(one[:]); err != nil {
		c.m.release(r)
		c.err = err
		return nil, err
	}
	reply, err := c.await(ctx, r)
	if e, ok := err.(redis.Error); ok {
		return e, e
	}
	return reply, err
}

func (c *conn) doPipeline(ctx context.Context, cmd string, args []interface{}) (interface{}, error) {
	if cmd != "" {
		if err := c.Send(cmd, args...); err != nil {
			return nil, err
		}
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	n := len(c.recvq) - c.head
	if cmd == "" {
		if n == 0 {
			return nil, nil
		}
		replies := make([]interface{}, n)
		for i := range replies {
			v, err := c.ReceiveContext(ctx)
			if e, ok := err.(redis.Error); ok {
				v = e
			} else if err != nil {
				return nil, err
			}
			replies[i] = v
		}
		return replies, nil
	}
	var reply interface{}
	var first error
	for i := 0; i < n; i++ {
		v, err := c.ReceiveContext(ctx)
		if e, ok := err.(redis.Error); ok {
			if first == nil {
				first = e
			}
			v = e
		} else if err != nil {
			return nil, err
		}
		reply = v
	}
	return reply, first
}

// Send queues a command in the handle; nothing goes to Redis before Flush
// (or Receive, or Do). A command the Mux refuses is an error wrapping
// ErrRefused and is not queued.
func (c *conn) Send(cmd string, args ...interface{}) error {
	if c.err != nil {
		return c.err
	}
	if cmd == "" {
		return errEmptyCommand
	}
	if err := checkCommand(cmd, args); err != nil {
		return err
	}
	c.sendq = append(c.sendq, c.m.newRequest(cmd, args))
	return nil
}

// Flush submits the queued commands together: they are written adjacent, in
// order, on one connection. It does not wait for anything.
func (c *conn) Flush() error {
	if c.err != nil {
		return c.err
	}
	if len(c.sendq) == 0 {
		return nil
	}
	if err := c.m.submit(c.sendq); err != nil {
		c.abandonAll()
		c.err = err
		return err
	}
	c.recvq = append(c.recvq, c.sendq...)
	clear(c.sendq)
	c.sendq = c.sendq[:0]
	return nil
}

// Receive returns the next reply of the commands sent. See ReceiveContext.
func (c *conn) Receive() (interface{}, error) {
	return c.ReceiveContext(context.Background())
}

// ReceiveWithTimeout is ReceiveContext with a context that ends after
// timeout; zero means no bound but the Mux's hang timeout.
func (c *conn) ReceiveWithTimeout(timeout time.Duration) (interface{}, error) {
	if timeout <= 0 {
		return c.ReceiveContext(context.Background())
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.ReceiveContext(ctx)
}

// ReceiveContext returns the next reply, in the order the commands were sent,
// waiting for it or for ctx to end. Commands sent but not flushed are flushed
// first. A Redis error reply is returned as a redis.Error, as redigo's
// connection does.
func (c *conn) ReceiveContext(ctx context.Context) (interface{}, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.head == len(c.recvq) {
		if len(c.sendq) == 0 {
			return nil, errNothingPending
		}
		if err := c.Flush(); err != nil {
			return nil, err
		}
	}
	r := c.recvq[c.head]
	c.recvq[c.head] = nil
	c.head++
	if c.head == len(c.recvq) {
		c.recvq, c.head = c.recvq[:0], 0
	}
	return c.await(ctx, r)
}

// await waits for r's reply or for ctx to end. Anything but a Redis error
// reply breaks the handle.
func (c *conn) await(ctx context.Context, r *request) (interface{}, error) {
	reply, err, gaveUp := c.m.wait(ctx, 0, r)
	if gaveUp {
		c.abandonAll()
		c.err = err
		return nil, err
	}
	if err != nil {
		if _, ok := err.(redis.Error); !ok {
			c.abandonAll()
			c.err = err
		}
	}
	return reply, err
}

// abandonAll drops every reply the handle still waits for, and the commands
// it has not flushed.
func (c *conn) abandonAll() {
	for _, r := range c.recvq[c.head:] {
		if !r.abandon() {
			<-r.done
			c.m.release(r)
		}
	}
	for _, r := range c.sendq {
		c.m.release(r)
	}
	clear(c.recvq)
	clear(c.sendq)
	c.recvq, c.sendq, c.head = c.recvq[:0], c.sendq[:0], 0
}
