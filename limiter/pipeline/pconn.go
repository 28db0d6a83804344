package pipeline

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
)

// probeGrace is how long the reader listens once more when the oldest pending
// request is overdue: a read past its deadline fails without looking at the
// socket, so a reply that arrived while the reader was not scheduled would be
// mistaken for a hang.
const probeGrace = time.Millisecond

// pconn is one pipelined connection: a redigo connection, the FIFO of requests
// waiting for its replies, a writer goroutine and a reader goroutine.
type pconn struct {
	m  *Mux
	s  *slot
	rc redis.Conn // Send and Flush by the writer only, Receive by the reader only
	nc *netConn   // under rc (and under TLS, if any)

	// Guarded by s.mu.
	fifo     fifo       // sent or queued, waiting for replies, in order
	wq       []*request // queued for the writer
	seq      uint64     // the last request's sequence number
	deadline time.Time  // the read deadline set on nc.Conn, zero for none
	probing  bool       // the overdue head gets one last short read
	cause    error      // why the Mux closed the connection (ErrClosed)
	werr     error      // the writer's error
	writing  bool       // the writer goroutine is sending a batch
	inline   bool       // a caller is sending its own requests (see enqueueLocked)

	written atomic.Uint64 // sequence number of the last request the writer sent
	wake    chan struct{} // wq became non-empty
	stop    chan struct{} // closed when the reader gives the connection up
	wdone   chan struct{} // closed when the writer has returned
}

func newPconn(m *Mux, rc redis.Conn, nc *netConn) *pconn {
	pc := &pconn{
		m:     m,
		rc:    rc,
		nc:    nc,
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		wdone: make(chan struct{}),
	}
	nc.pc = pc
	nc.managed.Store(true)
	return pc
}

// enqueueLocked appends rs to the FIFO and, unless the caller is to write
// them itself, to the writer's queue. s.mu is held.
//
// On an idle connection (nothing in flight, nothing queued, nobody writing)
// it returns true: the caller sends and flushes rs itself with writeInline,
// which saves handing them to the writer goroutine and waking it, the one
// cost a lone request would otherwise pay over a plain connection. Anything
// enqueued meanwhile waits for the writer, which writeInline wakes.
func (pc *pconn) enqueueLocked(rs []*request, now int64, mayInline bool) bool {
	inline := mayInline && pc.fifo.n == 0 && len(pc.wq) == 0 && !pc.writing && !pc.inline
	if pc.deadline.IsZero() {
		// The reader was idle, blocked with no deadline: arm the hang
		// deadline for the oldest request, which is the first of rs.
		pc.setDeadlineLocked(pc.m.at(now + int64(pc.m.cfg.hang)))
	}
	wasEmpty := len(pc.wq) == 0
	for _, r := range rs {
		pc.seq++
		r.seq = pc.seq
		r.sent = now
		pc.fifo.push(r)
		if !inline {
			pc.wq = append(pc.wq, r)
		}
	}
	if inline {
		pc.inline = true
		return true
	}
	if wasEmpty && !pc.inline {
		pc.wakeWriter()
	}
	return false
}

func (pc *pconn) wakeWriter() {
	select {
	case pc.wake <- struct{}{}:
	default:
	}
}

// writeInline sends and flushes rs, which enqueueLocked gave the caller to
// write, then hands the connection back to the writer.
func (pc *pconn) writeInline(rs []*request) {
	defer func() {
		pc.s.mu.Lock()
		pc.inline = false
		if len(pc.wq) > 0 {
			pc.wakeWriter()
		}
		pc.s.mu.Unlock()
	}()
	for _, r := range rs {
		if err := pc.rc.Send(r.cmd, r.args...); err != nil {
			pc.writeFailed(err)
			return
		}
		pc.written.Store(r.seq)
	}
	if err := pc.rc.Flush(); err != nil {
		pc.writeFailed(err)
		return
	}
	pc.m.flushes.Add(1)
	pc.m.sent.Add(uint64(len(rs)))
}

func (pc *pconn) setDeadlineLocked(t time.Time) {
	pc.deadline = t
	_ = pc.nc.Conn.SetReadDeadline(t) // an error here shows up on the read
}

// onDeadline runs in the reader when a read hit its deadline. It re-arms the
// deadline for the oldest pending request (or clears it when nothing is
// pending) and returns nil, or returns the error that ends the connection
// when that request is overdue.
func (pc *pconn) onDeadline() error {
	s := pc.s
	s.mu.Lock()
	defer s.mu.Unlock()
	head := pc.fifo.peek()
	if head == nil {
		pc.probing = false
		pc.setDeadlineLocked(time.Time{})
		return nil
	}
	due := head.sent + int64(pc.m.cfg.hang)
	now := pc.m.now()
	if now < due {
		pc.probing = false
		pc.setDeadlineLocked(pc.m.at(due))
		return nil
	}
	if !pc.probing {
		pc.probing = true
		pc.setDeadlineLocked(pc.m.at(now + int64(probeGrace)))
		return nil
	}
	return fmt.Errorf("pipeline: connection given up: %w (%v)", ErrHung, pc.m.cfg.hang)
}

// writeLoop sends whatever is queued, then flushes once, until the connection
// is given up.
func (pc *pconn) writeLoop() {
	defer pc.m.wg.Done()
	defer close(pc.wdone)
	s := pc.s
	var batch []*request
	for {
		select {
		case <-pc.wake:
		case <-pc.stop:
			return
		}
		s.mu.Lock()
		if pc.inline {
			// A caller is writing (the writer was woken by a stale
			// signal); it wakes the writer when it is done.
			s.mu.Unlock()
			continue
		}
		if pc.fifo.n > len(pc.wq) {
			// Requests are in flight, so their callers are about to be
			// answered and send more: let the goroutines ready to run
			// submit first. Woken by the first of them, the writer would
			// otherwise run next and write requests one by one. Gosched
			// only lets what is runnable run; it never waits for anything.
			// On an idle connection (sequential use) the writer does not
			// yield at all.
			s.mu.Unlock()
			runtime.Gosched()
			s.mu.Lock()
			if pc.inline {
				// Cannot happen while wq is non-empty (an inline write
				// needs an empty queue), but two writers on one
				// connection would corrupt its stream: never risk it.
				s.mu.Unlock()
				continue
			}
		}
		batch, pc.wq = pc.wq, batch[:0]
		pc.writing = len(batch) > 0
		s.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		for _, r := range batch {
			if err := pc.rc.Send(r.cmd, r.args...); err != nil {
				pc.writeFailed(err)
				return
			}
			// The reader completes r only after seeing this: the writer is
			// done with r's command and arguments.
			pc.written.Store(r.seq)
		}
		n := len(batch)
		clear(batch)
		if err := pc.rc.Flush(); err != nil {
			pc.writeFailed(err)
			return
		}
		pc.m.flushes.Add(1)
		pc.m.sent.Add(uint64(n))
		s.mu.Lock()
		pc.writing = false
		if len(pc.wq) > 0 {
			pc.wakeWriter()
		}
		s.mu.Unlock()
	}
}

func (pc *pconn) writeFailed(err error) {
	pc.s.mu.Lock()
	if pc.werr == nil {
		pc.werr = err
	}
	pc.s.mu.Unlock()
	pc.close() // the reader's read fails and it gives the connection up
}

// close closes the connection. The network connection goes first: with TLS,
// closing the tls.Conn would otherwise try to send close_notify, which can
// block for seconds on a Redis that stopped reading.
func (pc *pconn) close() {
	pc.nc.Conn.Close()
	pc.rc.Close()
}

// readLoop hands each reply to the request at the head of the FIFO, and reads
// even when nothing is pending so that a closed connection is noticed at once.
func (pc *pconn) readLoop() {
	defer pc.m.wg.Done()
	s := pc.s
	for {
		reply, err := pc.rc.Receive()
		if err != nil {
			if _, ok := err.(redis.Error); !ok {
				pc.fail(err)
				return
			}
		}
		s.mu.Lock()
		r := pc.fifo.pop()
		pc.probing = false
		s.mu.Unlock()
		if r == nil {
			pc.fail(errors.New("a reply came with no request pending"))
			return
		}
		pc.waitWritten(r)
		r.finish(pc.m, reply, err)
	}
}

// waitWritten waits until the writer has recorded sending r. Redis cannot
// answer a command before all of it was written, so this never waits in
// practice; it orders the writer's last use of r before r is recycled.
func (pc *pconn) waitWritten(r *request) {
	for pc.written.Load() < r.seq {
		select {
		case <-pc.wdone:
			return
		default:
			runtime.Gosched()
		}
	}
}

// fail gives the connection up: it leaves its slot, is closed, and every
// request pending on it is answered with an error, except those never
// written, which are submitted again once.
func (pc *pconn) fail(err error) {
	m, s := pc.m, pc.s
	s.mu.Lock()
	if s.pc == pc {
		s.pc = nil
		s.up.Store(false)
	}
	cause, werr := pc.cause, pc.werr
	pending := pc.fifo.drain()
	pc.wq = nil
	s.mu.Unlock()

	pc.close()
	close(pc.stop)
	<-pc.wdone // the writer no longer touches any request
	// Nor may a caller writing inline: its writes fail fast on the closed
	// connection.
	for {
		s.mu.Lock()
		busy := pc.inline
		s.mu.Unlock()
		if !busy {
			break
		}
		runtime.Gosched()
	}

	switch {
	case cause != nil:
		err = cause
	case errors.Is(err, ErrHung):
	case werr != nil:
		err = fmt.Errorf("pipeline: connection lost: %w", werr)
	default:
		err = fmt.Errorf("pipeline: connection lost: %w", err)
	}
	if cause == nil {
		m.lost.Add(1)
	}
	written := pc.written.Load()
	var retry []*request
	for _, r := range pending {
		switch {
		case r.state.Load() == stateAbandoned:
			// Nobody waits: only the Mux holds r now.
			m.release(r)
		case r.seq > written && !r.retried && cause == nil && !errors.Is(err, ErrHung):
			// Redis never saw it: safe to send again.
			r.retried = true
			retry = append(retry, r)
		default:
			r.finish(m, nil, err)
		}
	}
	if len(retry) > 0 {
		if serr := m.submit(retry); serr != nil {
			for _, r := range retry {
				r.finish(m, nil, serr)
			}
		}
	}
}

// netConn is the network connection under a pipelined redigo connection. Once
// managed, it ignores the read deadlines redigo sets (ReceiveWithTimeout(0)
// clears the deadline on every read) and runs its own: the hang deadline of
// the oldest pending request. With TLS, tls.Conn passes its deadlines down to
// netConn and reads through it, so the same holds.
type netConn struct {
	net.Conn
	pc      *pconn
	managed atomic.Bool
}

// SetReadDeadline is ignored once the Mux manages the connection.
func (c *netConn) SetReadDeadline(t time.Time) error {
	if c.managed.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets only the write deadline once the Mux manages the
// connection.
func (c *netConn) SetDeadline(t time.Time) error {
	if c.managed.Load() {
		return c.Conn.SetWriteDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

// Read reads, and when the read hits the Mux's deadline, either reads on with
// the deadline moved or fails with ErrHung.
func (c *netConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if n > 0 || err == nil || !c.managed.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if herr := c.pc.onDeadline(); herr != nil {
			return 0, herr
		}
	}
}

// fifo is a ring of requests.
type fifo struct {
	buf  []*request
	head int
	n    int
}

func (q *fifo) push(r *request) {
	if q.n == len(q.buf) {
		nb := make([]*request, max(16, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			nb[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = r
	q.n++
}

func (q *fifo) peek() *request {
	if q.n == 0 {
		return nil
	}
	return q.buf[q.head]
}

func (q *fifo) pop() *request {
	if q.n == 0 {
		return nil
	}
	r := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	return r
}

// drain empties the ring and returns its requests in order.
func (q *fifo) drain() []*request {
	out := make([]*request, 0, q.n)
	for r := q.pop(); r != nil; r = q.pop() {
		out = append(out, r)
	}
	return out
}
