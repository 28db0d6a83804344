package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Defaults of a Mux's options.
const (
	// DefaultConns is the number of connections a Mux keeps.
	DefaultConns = 2
	// DefaultHangTimeout is how long a connection may leave its oldest
	// pending request unanswered before the Mux gives it up.
	DefaultHangTimeout = time.Second
	// DefaultDialTimeout bounds one dial: connecting, TLS, AUTH and SELECT.
	DefaultDialTimeout = 5 * time.Second
)

var (
	// ErrClosed is returned by GetContext after Close, and answers every
	// request still pending when the Mux is closed.
	ErrClosed = errors.New("pipeline: mux closed")

	// ErrRefused is wrapped by the error for a command that would change or
	// block the shared connection it runs on (SELECT, MULTI, SUBSCRIBE, BLPOP,
	// CLIENT, …). Nothing is sent for such a command.
	ErrRefused = errors.New("command not allowed on a shared pipelined connection")

	// ErrHung is wrapped by the error that answers requests pending on a
	// connection whose oldest request went unanswered for the hang timeout.
	ErrHung = errors.New("no reply within the hang timeout")
)

// kickBackoff is how long a slot waits after a failed dial before it dials
// again on its own initiative, while other connections carry the traffic.
// Requests that have no live connection to go to always dial.
const kickBackoff = 200 * time.Millisecond

// DialFunc dials one Redis connection. It must pass the options the Mux gives
// it on to redigo (redis.DialContext or redis.DialURLContext), after its own:
// the Mux uses them to own the connection's network reads. Dial and DialURL
// build a DialFunc.
type DialFunc func(ctx context.Context, options ...redis.DialOption) (redis.Conn, error)

// Dial returns a DialFunc that dials address over network with redigo's
// DialContext and the given options (password, database, TLS, …).
func Dial(network, address string, options ...redis.DialOption) DialFunc {
	options = options[:len(options):len(options)]
	return func(ctx context.Context, extra ...redis.DialOption) (redis.Conn, error) {
		return redis.DialContext(ctx, network, address, append(options, extra...)...)
	}
}

// DialURL returns a DialFunc that dials a redis:// or rediss:// URL with
// redigo's DialURLContext: the URL's password, user and database are used and
// rediss means TLS. Add options such as redis.DialTLSSkipVerify(true) for a
// self-signed certificate.
func DialURL(rawurl string, options ...redis.DialOption) DialFunc {
	options = options[:len(options):len(options)]
	return func(ctx context.Context, extra ...redis.DialOption) (redis.Conn, error) {
		return redis.DialURLContext(ctx, rawurl, append(options, extra...)...)
	}
}

// Option configures a Mux in New.
type Option func(*config)

type config struct {
	conns       int
	hang        time.Duration
	dialTimeout time.Duration
	netDial     func(ctx context.Context, network, address string) (net.Conn, error)
}

// WithConns sets the number of connections (default DefaultConns). It panics
// if n is below 1.
func WithConns(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("pipeline: WithConns(%d): need at least one connection", n))
	}
	return func(c *config) { c.conns = n }
}

// WithHangTimeout sets how long a connection may leave its oldest pending
// request unanswered before the Mux closes it and fails every request pending
// on it (default DefaultHangTimeout). Set it to the decision budget or a little
// above, and above the slowest command sent through the Mux. It panics if d is
// not positive.
func WithHangTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("pipeline: WithHangTimeout(%v): must be positive", d))
	}
	return func(c *config) { c.hang = d }
}

// WithDialTimeout bounds each dial, TLS handshake, AUTH and SELECT included
// (default DefaultDialTimeout). Requests waiting for a dial leave earlier when
// their own contexts end. It panics if d is not positive.
func WithDialTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("pipeline: WithDialTimeout(%v): must be positive", d))
	}
	return func(c *config) { c.dialTimeout = d }
}

// WithNetDial sets the function that opens the network connection under each
// Redis connection (default: a net.Dialer with Go's default keep-alive). The
// Mux replaces any redis.DialNetDial, redis.DialContextFunc,
// redis.DialConnectTimeout or redis.DialKeepAlive given to Dial or DialURL, so
// use this option for what they would have done.
func WithNetDial(f func(ctx context.Context, network, address string) (net.Conn, error)) Option {
	if f == nil {
		panic("pipeline: WithNetDial(nil)")
	}
	return func(c *config) { c.netDial = f }
}

// Mux pipelines the commands of many goroutines over a few shared Redis
// connections. Its GetContext makes it a limiter.Pool. A Mux is safe for
// concurrent use; build it with New and Close it when done.
type Mux struct {
	dial  DialFunc
	cfg   config
	slots []*slot
	rr    atomic.Uint32
	epoch time.Time
	reqs  sync.Pool

	closed atomic.Bool
	ctx    context.Context // ends at Close; dials use it
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of the Mux

	dials, dialErrs, lost, flushes, sent atomic.Uint64
}

// New returns a Mux whose connections dial with dial. Nothing is dialed until
// the first request. It panics if dial is nil.
func New(dial DialFunc, opts ...Option) *Mux {
	if dial == nil {
		panic("pipeline: New with a nil DialFunc")
	}
	cfg := config{
		conns:       DefaultConns,
		hang:        DefaultHangTimeout,
		dialTimeout: DefaultDialTimeout,
		netDial:     (&net.Dialer{}).DialContext,
	}
	for _, o := range opts {
		o(&cfg)
	}
	m := &Mux{dial: dial, cfg: cfg, epoch: time.Now()}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.slots = make([]*slot, cfg.conns)
	for i := range m.slots {
		m.slots[i] = &slot{m: m}
	}
	return m
}

// GetContext returns a handle for sending commands through the Mux; it never
// waits and never dials. Close the handle when done with it. After Close,
// GetContext returns ErrClosed.
func (m *Mux) GetContext(ctx context.Context) (redis.Conn, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	return &conn{m: m}, nil
}

// DoTimeout sends one command through the Mux and waits for its reply, for
// ctx to end, or for timeout to pass, whichever comes first; zero means no
// bound but ctx (and the hang timeout). It is GetContext, DoContext under
// context.WithTimeout(ctx, timeout) and Close in one call, without the
// handle or the derived context: limiter.Limiter uses it for single
// decisions when its Pool has it. A call cut short returns an error wrapping
// ctx's error, or context.DeadlineExceeded when timeout passed, and its reply
// is dropped when it comes. A Redis error reply is returned as both the
// reply and the error, as DoContext does. After Close it returns ErrClosed.
func (m *Mux) DoTimeout(ctx context.Context, timeout time.Duration, cmd string, args ...interface{}) (interface{}, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if cmd == "" {
		return nil, errEmptyCommand
	}
	if err := checkCommand(cmd, args); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	r := m.newRequest(cmd, args)
	one := [1]*request{r}
	if err := m.submit(one[:]); err != nil {
		m.release(r)
		return nil, err
	}
	reply, err, _ := m.wait(ctx, timeout, r)
	if e, ok := err.(redis.Error); ok {
		return e, e
	}
	return reply, err
}

// Close closes every connection and answers every pending request with
// ErrClosed, then waits for the Mux's goroutines to end. Later calls to
// GetContext, and commands on handles got before, fail with ErrClosed. Close
// is idempotent and always returns nil.
func (m *Mux) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	m.cancel()
	for _, s := range m.slots {
		s.mu.Lock()
		pc, waiting := s.pc, s.waiting
		s.waiting = nil
		if pc != nil {
			pc.cause = ErrClosed
		}
		s.mu.Unlock()
		if pc != nil {
			pc.close() // its reader answers what is pending and exits
		}
		for _, r := range waiting {
			r.finish(m, nil, ErrClosed)
		}
	}
	m.wg.Wait()
	return nil
}

// Stats is a snapshot of a Mux's state.
type Stats struct {
	// Conns is the number of live connections.
	Conns int
	// Pending is the number of requests on live connections waiting for their
	// replies, queued ones and ones whose callers gave up included.
	Pending int
	// Waiting is the number of requests waiting for a connection to be dialed.
	Waiting int
	// Dials is the number of dials so far; DialErrors of them failed.
	Dials, DialErrors uint64
	// Lost is the number of connections given up after an error or a hang.
	Lost uint64
	// Flushes is the number of writes to Redis so far, and Sent the number of
	// commands they carried: Sent/Flushes is the mean batch.
	Flushes, Sent uint64
}

// Stats returns a snapshot of the Mux's connections and requests.
func (m *Mux) Stats() Stats {
	st := Stats{
		Dials: m.dials.Load(), DialErrors: m.dialErrs.Load(), Lost: m.lost.Load(),
		Flushes: m.flushes.Load(), Sent: m.sent.Load(),
	}
	for _, s := range m.slots {
		s.mu.Lock()
		if s.pc != nil {
			st.Conns++
			st.Pending += s.pc.fifo.n
		}
		st.Waiting += len(s.waiting)
		s.mu.Unlock()
	}
	return st
}

// now is the Mux's monotonic clock, in nanoseconds since New.
func (m *Mux) now() int64 { return int64(time.Since(m.epoch)) }

// at is the time.Time of a reading of now.
func (m *Mux) at(ns int64) time.Time { return m.epoch.Add(time.Duration(ns)) }

// submit hands requests, in order and together, to a connection: the next
// live one in turn, else any live one, else the next one in turn, which is
// dialed. The requests are answered through finish in every case but an
// error return, after which the caller still owns them.
func (m *Mux) submit(rs []*request) error {
	if m.closed.Load() {
		return ErrClosed
	}
	n := uint32(len(m.slots))
	i := m.rr.Add(1)
	first := m.slots[i%n]
	if first.up.Load() && first.enqueue(rs) {
		return nil
	}
	for k := uint32(1); k < n; k++ {
		if s := m.slots[(i+k)%n]; s.up.Load() && s.enqueue(rs) {
			first.kick()
			return nil
		}
	}
	return first.enqueueOrDial(rs)
}

// slot is the place of one of the Mux's connections.
type slot struct {
	m  *Mux
	up atomic.Bool // pc != nil, readable without mu

	mu      sync.Mutex
	pc      *pconn     // the live connection, or nil
	dialing bool       // a dial is under way
	retryAt int64      // m.now() before which kick does not dial
	waiting []*request // requests waiting for the dial
}

// enqueue puts rs on the slot's live connection, if it has one.
func (s *slot) enqueue(rs []*request) bool {
	s.mu.Lock()
	pc := s.pc
	if pc == nil || s.m.closed.Load() {
		s.mu.Unlock()
		return false
	}
	inline := pc.enqueueLocked(rs, s.m.now(), true)
	s.mu.Unlock()
	if inline {
		pc.writeInline(rs)
	}
	return true
}

// enqueueOrDial puts rs on the slot's connection, or makes them wait for one
// and dials it if no dial is under way.
func (s *slot) enqueueOrDial(rs []*request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.closed.Load() {
		return ErrClosed
	}
	if s.pc != nil {
		s.pc.enqueueLocked(rs, s.m.now(), false)
		return nil
	}
	s.waiting = append(s.waiting, rs...)
	if !s.dialing {
		s.startDialLocked()
	}
	return nil
}

// kick dials the slot's connection in the background while other connections
// carry the traffic, unless a dial is under way or failed a moment ago.
func (s *slot) kick() {
	if s.up.Load() {
		return
	}
	s.mu.Lock()
	if s.pc == nil && !s.dialing && !s.m.closed.Load() && s.m.now() >= s.retryAt {
		s.startDialLocked()
	}
	s.mu.Unlock()
}

func (s *slot) startDialLocked() {
	s.dialing = true
	s.m.wg.Add(1)
	go s.dial()
}

// dial dials the slot's connection and hands it the waiting requests, or fails
// them with the dial's error.
func (s *slot) dial() {
	m := s.m
	defer m.wg.Done()
	m.dials.Add(1)
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.dialTimeout)
	pc, err := m.dialConn(ctx)
	cancel()

	s.mu.Lock()
	s.dialing = false
	waiting := s.waiting
	s.waiting = nil
	if m.closed.Load() {
		if pc != nil {
			pc.close()
		}
		err = ErrClosed
	} else if err != nil {
		m.dialErrs.Add(1)
		s.retryAt = m.now() + int64(kickBackoff)
	}
	if err != nil {
		s.mu.Unlock()
		for _, r := range waiting {
			r.finish(m, nil, err)
		}
		return
	}
	pc.s = s
	s.pc = pc
	s.up.Store(true)
	m.wg.Add(2)
	go pc.readLoop()
	go pc.writeLoop()
	// Requests whose callers gave up while waiting are dropped, not sent.
	live := waiting[:0]
	for _, r := range waiting {
		if r.state.Load() == stateAbandoned {
			m.release(r)
			continue
		}
		live = append(live, r)
	}
	if len(live) > 0 {
		pc.enqueueLocked(live, m.now(), false)
	}
	s.mu.Unlock()
}

// dialConn dials a connection whose network reads the Mux owns.
func (m *Mux) dialConn(ctx context.Context) (*pconn, error) {
	var nc *netConn
	var stopClose func() bool
	netDial := redis.DialContextFunc(func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := m.cfg.netDial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if nc != nil { // the DialFunc dials twice: keep only the last
			stopClose()
			nc.Conn.Close()
		}
		nc = &netConn{Conn: c}
		// Closing the network connection is what stops a TLS handshake
		// (redigo bounds it by its own timeout, not by ctx), AUTH or SELECT
		// hanging on a silent Redis.
		stopClose = context.AfterFunc(ctx, func() { c.Close() })
		return nc, nil
	})
	rc, err := m.dial(ctx, netDial)
	if nc != nil && !stopClose() && err == nil {
		err = ctx.Err()
		if err == nil {
			err = errors.New("connection closed while dialing")
		}
		rc.Close()
	}
	if err != nil {
		if m.closed.Load() {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("pipeline: dial: %w", err)
	}
	if nc == nil {
		rc.Close()
		return nil, errors.New("pipeline: dial: the DialFunc did not pass the Mux's options on to redigo")
	}
	return newPconn(m, rc, nc), nil
}
