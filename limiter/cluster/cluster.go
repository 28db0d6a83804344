package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/mna/redisc"
)

// The defaults of Config's zero fields.
const (
	DefaultConnectTimeout = 2 * time.Second
	DefaultReadTimeout    = 2 * time.Second
	DefaultWriteTimeout   = 2 * time.Second
	DefaultMaxIdle        = 8
	DefaultIdleTimeout    = 4 * time.Minute
	DefaultMaxRedirects   = 5
)

// tryAgainDelay is the pause before a command that got TRYAGAIN (a slot in
// the middle of a migration) is sent again.
const tryAgainDelay = 20 * time.Millisecond

// ErrClosed is returned by GetContext, and by the connections' methods, once
// the Cluster is closed.
var ErrClosed = errors.New("cluster: closed")

// Config says how to reach a Redis Cluster. Only Addrs is required; each
// zero field gets its default.
type Config struct {
	// Addrs are host:port addresses of start-up nodes: any node, master or
	// replica, will do, since the others are learnt from it (CLUSTER SLOTS).
	// Give several in case one is down.
	Addrs []string

	// DialOptions apply to every connection to every node: password
	// (redis.DialPassword, redis.DialUsername), TLS (redis.DialUseTLS,
	// redis.DialTLSSkipVerify, redis.DialTLSConfig), client name. ParseURL
	// derives them from a URL. Set the timeouts with the fields below rather
	// than with redis.DialReadTimeout and the like, which would override them.
	DialOptions []redis.DialOption

	// ConnectTimeout bounds dialing a node, and the TLS handshake, separately
	// (default DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// ReadTimeout bounds the wait for a reply (default DefaultReadTimeout):
	// for a call whose context has a deadline, the earlier of the two applies.
	ReadTimeout time.Duration
	// WriteTimeout bounds the writing of a command (default
	// DefaultWriteTimeout).
	WriteTimeout time.Duration

	// MaxIdle is the number of idle connections kept per node (default
	// DefaultMaxIdle).
	MaxIdle int
	// MaxActive, if above 0, bounds the connections open at once in each
	// pool: the one of each node, and the one of each node redirections go
	// to. Nothing waits for a busy pool: redisc then tries another node, and
	// a command that finds no free connection fails with
	// redis.ErrPoolExhausted. 0, the default, sets no bound.
	MaxActive int
	// IdleTimeout closes connections idle for longer (default
	// DefaultIdleTimeout).
	IdleTimeout time.Duration

	// MaxRedirects is how many MOVED, ASK and TRYAGAIN replies one command
	// may follow before it fails with the last of them (default
	// DefaultMaxRedirects).
	MaxRedirects int
}

func (c Config) withDefaults() Config {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&c.ConnectTimeout, DefaultConnectTimeout)
	set(&c.ReadTimeout, DefaultReadTimeout)
	set(&c.WriteTimeout, DefaultWriteTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	if c.MaxIdle <= 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	if c.MaxActive < 0 {
		c.MaxActive = 0
	}
	if c.MaxRedirects <= 0 {
		c.MaxRedirects = DefaultMaxRedirects
	}
	return c
}

// Cluster is a connection pool over every master of a Redis Cluster. It
// implements limiter.Pool. Build it with New and Close it when done; it is
// safe for concurrent use.
type Cluster struct {
	cfg      Config
	dialOpts []redis.DialOption
	rc       *redisc.Cluster

	// hint is the master of each slot as of the last refresh of the slot
	// map; pipelines use it to group commands per node.
	hint atomic.Pointer[[redisc.HashSlots]string]

	mu     sync.Mutex
	closed bool
	direct map[string]*redis.Pool // per address, for redirections
}

// New connects to the cluster that cfg.Addrs belong to: it reads the slot
// map from the first start-up node that answers, within ctx, and fails if
// none does (or if the node is not in cluster mode, or no slot is assigned).
func New(ctx context.Context, cfg Config) (*Cluster, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("cluster: new: no start-up node address")
	}
	cfg = cfg.withDefaults()
	c := &Cluster{cfg: cfg, direct: make(map[string]*redis.Pool)}
	c.dialOpts = append([]redis.DialOption{
		redis.DialConnectTimeout(cfg.ConnectTimeout),
		redis.DialTLSHandshakeTimeout(cfg.ConnectTimeout),
		redis.DialReadTimeout(cfg.ReadTimeout),
		redis.DialWriteTimeout(cfg.WriteTimeout),
	}, cfg.DialOptions...)
	c.rc = &redisc.Cluster{
		StartupNodes:  append([]string(nil), cfg.Addrs...),
		DialOptions:   c.dialOpts,
		CreatePool:    c.newPool,
		LayoutRefresh: c.layoutRefreshed,
	}
	done := make(chan error, 1)
	go func() { done <- c.rc.Refresh() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// Refresh goes on, bounded by the dial timeouts, and then finds the
		// Cluster closed.
		err = ctx.Err()
	}
	if err == nil && c.hint.Load() == nil {
		err = errors.New("no slot is assigned to any node")
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: new: read the slot map from %s: %w", strings.Join(cfg.Addrs, ", "), err)
	}
	return c, nil
}

// GetContext returns a connection to the cluster: a handle that sends each
// command to the node of its key (see the package documentation). It does no
// I/O; Do, Flush and Receive, which take no context, are bounded by ctx.
// Close the connection when done.
func (c *Cluster) GetContext(ctx context.Context) (redis.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cluster: get: %w", err)
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return &conn{c: c, ctx: ctx}, nil
}

// DoTimeout runs one command, routed as on a connection from GetContext,
// bounded by ctx and by timeout (zero: by ctx alone). It is the method by
// which a limiter.Limiter runs a single decision.
func (c *Cluster) DoTimeout(ctx context.Context, timeout time.Duration, cmd string, args ...interface{}) (interface{}, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	conn, err := c.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return redis.DoContext(conn, ctx, cmd, args...)
}

// Close closes every connection pool. Calls in flight finish on their own;
// later ones fail with ErrClosed. Close is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	direct := c.direct
	c.direct = nil
	c.mu.Unlock()
	for _, p := range direct {
		p.Close()
	}
	if err := c.rc.Close(); err != nil {
		return fmt.Errorf("cluster: close: %w", err)
	}
	return nil
}

// Stats returns the statistics of the pool of each node, by address (the
// pools redirections use aside).
func (c *Cluster) Stats() map[string]redis.PoolStats { return c.rc.Stats() }

// newPool is the redisc.Cluster's CreatePool.
func (c *Cluster) newPool(addr string, opts ...redis.DialOption) (*redis.Pool, error) {
	return &redis.Pool{
		MaxIdle:     c.cfg.MaxIdle,
		MaxActive:   c.cfg.MaxActive,
		IdleTimeout: c.cfg.IdleTimeout,
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", addr, opts...)
		},
		// A connection idle for a while may be to a node that restarted
		// since: PING it before a decision relies on it, so that the pool
		// drops it and dials afresh instead of failing the decision.
		TestOnBorrowContext: func(ctx context.Context, conn redis.Conn, lastUsed time.Time) error {
			if time.Since(lastUsed) < idleCheck {
				return nil
			}
			_, err := redis.DoContext(conn, ctx, "PING")
			return err
		},
	}, nil
}

// idleCheck is how long a pooled connection may sit idle before it is
// PINGed on its next use.
const idleCheck = time.Second

// directPool returns a pool to addr, which redirections use: redisc only
// offers connections by slot, and the slot's node is what a redirection
// says is wrong.
func (c *Cluster) directPool(addr string) (*redis.Pool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	p := c.direct[addr]
	if p == nil {
		p, _ = c.newPool(addr, c.dialOpts...)
		c.direct[addr] = p
	}
	return p, nil
}

// layoutRefreshed is the redisc.Cluster's LayoutRefresh: it keeps the master
// of each slot as a hint for grouping pipelines.
func (c *Cluster) layoutRefreshed(_, m [redisc.HashSlots][]string) {
	var h [redisc.HashSlots]string
	n := 0
	for slot, nodes := range m {
		if len(nodes) > 0 {
			h[slot] = nodes[0]
			n++
		}
	}
	if n > 0 {
		c.hint.Store(&h)
	}
}

// nodeHint returns the master of slot as of the last refresh, or "".
func (c *Cluster) nodeHint(slot int) string {
	if h := c.hint.Load(); h != nil && slot >= 0 && slot < redisc.HashSlots {
		return h[slot]
	}
	return ""
}

// IsCluster reports whether the Redis at the other end of conn runs in
// cluster mode (INFO cluster says cluster_enabled:1), so that a service can
// choose between New and a plain pool. conn must support
// redis.ConnWithContext, as redigo's connections do.
func IsCluster(ctx context.Context, conn redis.Conn) (bool, error) {
	info, err := redis.String(redis.DoContext(conn, ctx, "INFO", "cluster"))
	if err != nil {
		return false, fmt.Errorf("cluster: detect: INFO cluster: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "cluster_enabled" {
			return v == "1", nil
		}
	}
	return false, nil
}

var pathDB = regexp.MustCompile(`^/?(\d*)$`)

// ParseURL reads a redis:// or rediss:// URL as redigo's DialURL does, for
// Config: it returns the node's host:port (port 6379 when none is given) and
// dial options for the user name, the password and TLS (rediss). A database
// other than 0 is an error, since a cluster has only database 0. To accept a
// self-signed certificate, append redis.DialTLSSkipVerify(true) to opts.
// Errors never repeat the URL, which may hold a password.
func ParseURL(rawurl string) (addr string, opts []redis.DialOption, err error) {
	u, err := url.Parse(rawurl)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return "", nil, fmt.Errorf("cluster: URL: %w", err)
	}
	switch u.Scheme {
	case "redis", "rediss", "valkey", "valkeys":
	default:
		return "", nil, fmt.Errorf("cluster: URL: scheme %q is not redis or rediss", u.Scheme)
	}
	if u.Opaque != "" {
		return "", nil, errors.New("cluster: URL: opaque, want redis://host:port")
	}
	host, port := u.Hostname(), u.Port() // both without IPv6 brackets
	if port == "" {
		port = "6379"
	}
	if host == "" {
		host = "localhost"
	}
	if u.User != nil {
		password, isSet := u.User.Password()
		switch username := u.User.Username(); {
		case isSet && username != "":
			opts = append(opts, redis.DialUsername(username), redis.DialPassword(password))
		case isSet:
			opts = append(opts, redis.DialPassword(password))
		case username != "":
			// redis-cli's redis://password@host
			opts = append(opts, redis.DialPassword(username))
		}
	}
	m := pathDB.FindStringSubmatch(u.Path)
	if m == nil {
		return "", nil, errors.New("cluster: URL: the path is not a database number")
	}
	if m[1] != "" {
		if db, err := strconv.Atoi(m[1]); err != nil || db != 0 {
			return "", nil, fmt.Errorf("cluster: URL: database %s: Redis Cluster has only database 0", m[1])
		}
	}
	opts = append(opts, redis.DialUseTLS(u.Scheme == "rediss" || u.Scheme == "valkeys"))
	return net.JoinHostPort(host, port), opts, nil
}
