package pipeline

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// A request's state: its caller waits, or its reply has been handed over, or
// its caller gave up and the Mux recycles it when the reply comes.
const (
	stateWaiting int32 = iota
	stateDone
	stateAbandoned
)

// request is one command on its way through the Mux. Requests are pooled.
type request struct {
	cmd  string
	args []interface{} // a copy of the caller's slice

	reply interface{}
	err   error

	seq     uint64 // in its connection, under the slot's lock
	sent    int64  // Mux.now() when queued on its connection
	retried bool   // submitted again after its connection failed unwritten

	state atomic.Int32
	done  chan struct{} // receives once when the reply is handed over
	timer *time.Timer   // the waiter's budget (Mux.DoTimeout), made on first use
}

// newRequest takes a request from the pool and fills it in.
func (m *Mux) newRequest(cmd string, args []interface{}) *request {
	r, _ := m.reqs.Get().(*request)
	if r == nil {
		r = &request{done: make(chan struct{}, 1)}
	}
	r.cmd = cmd
	r.args = append(r.args[:0], args...)
	return r
}

// release returns a request to the pool. Only its one owner may call it: the
// caller after it took the reply, the Mux after the caller gave up.
func (m *Mux) release(r *request) {
	clear(r.args)
	if cap(r.args) > 64 {
		r.args = nil
	}
	r.cmd, r.args, r.reply, r.err = "", r.args[:0], nil, nil
	r.retried = false
	r.state.Store(stateWaiting)
	m.reqs.Put(r)
}

// finish hands the reply over to the caller, or recycles the request if the
// caller gave up.
func (r *request) finish(m *Mux, reply interface{}, err error) {
	r.reply, r.err = reply, err
	if r.state.CompareAndSwap(stateWaiting, stateDone) {
		r.done <- struct{}{}
		return
	}
	m.release(r)
}

// wait waits for r's reply, for ctx to end, or for timeout to pass (zero:
// no bound but ctx). The budget is a timer kept in r and pooled with it, so
// it costs no allocation and no derived context. When the caller gives up
// first, gaveUp is true and err says why, and r belongs to the Mux from then
// on; otherwise r is released and its reply and error returned.
func (m *Mux) wait(ctx context.Context, timeout time.Duration, r *request) (reply interface{}, err error, gaveUp bool) {
	var expired <-chan time.Time
	if timeout > 0 {
		if r.timer == nil {
			r.timer = time.NewTimer(timeout)
		} else {
			r.timer.Reset(timeout)
		}
		// Since Go 1.23 a stopped or reset timer delivers no stale tick,
		// so the pooled timer is safe to reuse.
		defer r.timer.Stop()
		expired = r.timer.C
	}
	done := ctx.Done()
	if done == nil && expired == nil {
		<-r.done // a context that never ends
	} else {
		select {
		case <-r.done:
		case <-done:
			if r.abandon() {
				return nil, fmt.Errorf("pipeline: %w", ctx.Err()), true
			}
			<-r.done
		case <-expired:
			if r.abandon() {
				return nil, fmt.Errorf("pipeline: %w", context.DeadlineExceeded), true
			}
			<-r.done
		}
	}
	reply, err = r.reply, r.err
	m.release(r)
	return reply, err, false
}

// abandon is the caller giving up on r. It reports false when the reply was
// handed over first; the caller then takes it from r.done as usual.
func (r *request) abandon() bool {
	return r.state.CompareAndSwap(stateWaiting, stateAbandoned)
}

// refusedCommands change the state of a connection, or block it, which would
// break every other request sharing it.
var refusedCommands = map[string]struct{}{
	// connection state
	"AUTH": {}, "HELLO": {}, "SELECT": {}, "CLIENT": {}, "RESET": {}, "QUIT": {},
	"READONLY": {}, "READWRITE": {}, "ASKING": {},
	// transactions
	"MULTI": {}, "EXEC": {}, "DISCARD": {}, "WATCH": {}, "UNWATCH": {},
	// pub/sub and other streams of replies
	"SUBSCRIBE": {}, "PSUBSCRIBE": {}, "SSUBSCRIBE": {},
	"UNSUBSCRIBE": {}, "PUNSUBSCRIBE": {}, "SUNSUBSCRIBE": {},
	"MONITOR": {}, "SYNC": {}, "PSYNC": {}, "REPLCONF": {},
	// blocking
	"BLPOP": {}, "BRPOP": {}, "BRPOPLPUSH": {}, "BLMOVE": {}, "BLMPOP": {},
	"BZPOPMIN": {}, "BZPOPMAX": {}, "BZMPOP": {}, "WAIT": {}, "WAITAOF": {},
}

// checkCommand returns an error wrapping ErrRefused for a command the Mux must
// not send. XREAD and XREADGROUP are refused only with BLOCK.
func checkCommand(cmd string, args []interface{}) error {
	var b [16]byte
	if len(cmd) > len(b) {
		return nil
	}
	n := copy(b[:], cmd)
	upper(b[:n])
	if _, bad := refusedCommands[string(b[:n])]; bad {
		return fmt.Errorf("pipeline: %s: %w", cmd, ErrRefused)
	}
	if s := string(b[:n]); s == "XREAD" || s == "XREADGROUP" {
		for _, a := range args {
			if isWord(a, "BLOCK") {
				return fmt.Errorf("pipeline: %s BLOCK: %w", cmd, ErrRefused)
			}
		}
	}
	return nil
}

func upper(b []byte) {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
}

// isWord reports whether a, a string or []byte, is word in any case.
func isWord(a interface{}, word string) bool {
	switch v := a.(type) {
	case string:
		return strings.EqualFold(v, word)
	case []byte:
		return strings.EqualFold(string(v), word)
	}
	return false
}
