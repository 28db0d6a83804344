package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/cluster"
	"github.com/go-floodgate/floodgate/limiter/pipeline"
)

// backend is the Redis the service decides on, however it was found.
type backend struct {
	pool     *switchPool
	describe string // for the start-up log line; never holds a password
	close    func()
	mux      *pipeline.Mux // the single node's connections
}

// collectors export the Mux's statistics on /metrics.
func (b *backend) collectors() []prometheus.Collector {
	return []prometheus.Collector{muxCollector{b.mux}}
}

// muxCollector exports a Mux's Stats, read once per scrape: its connections,
// the ones lost, and how many commands each write to Redis carries.
type muxCollector struct{ mux *pipeline.Mux }

// muxMetrics lists what muxCollector exports, each with its value in Stats.
var muxMetrics = []struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(pipeline.Stats) float64
}{
	{prometheus.NewDesc("floodgate_redis_connections", "Live pipelined connections to Redis (single-node mode).", nil, nil),
		prometheus.GaugeValue, func(s pipeline.Stats) float64 { return float64(s.Conns) }},
	{prometheus.NewDesc("floodgate_redis_pending_requests", "Requests sent to Redis and waiting for their replies.", nil, nil),
		prometheus.GaugeValue, func(s pipeline.Stats) float64 { return float64(s.Pending) }},
	{prometheus.NewDesc("floodgate_redis_connections_lost_total", "Connections to Redis given up after an error or a hang.", nil, nil),
		prometheus.CounterValue, func(s pipeline.Stats) float64 { return float64(s.Lost) }},
	{prometheus.NewDesc("floodgate_redis_dial_errors_total", "Failed dials to Redis.", nil, nil),
		prometheus.CounterValue, func(s pipeline.Stats) float64 { return float64(s.DialErrors) }},
	{prometheus.NewDesc("floodgate_redis_writes_total", "Writes to Redis; floodgate_redis_commands_total over this is the mean batch.", nil, nil),
		prometheus.CounterValue, func(s pipeline.Stats) float64 { return float64(s.Flushes) }},
	{prometheus.NewDesc("floodgate_redis_commands_total", "Commands sent to Redis through the pipelined connections.", nil, nil),
		prometheus.CounterValue, func(s pipeline.Stats) float64 { return float64(s.Sent) }},
}

func (muxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range muxMetrics {
		ch <- m.desc
	}
}

func (c muxCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.mux.Stats()
	for _, m := range muxMetrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st))
	}
}

// switchPool is a limiter.Pool whose Redis can change once, from a single
// node's pipelining Mux to a Cluster, when cluster mode is detected after
// start-up (Redis was down at boot). It is safe for concurrent use.
type switchPool struct {
	cur atomic.Value // poolBox
}

// directPool is what both the Mux and the Cluster are: a limiter.Pool that
// can also run one command bounded by a timeout, without a derived context
// on the Mux (the Limiter uses it for single decisions).
type directPool interface {
	limiter.Pool
	DoTimeout(ctx context.Context, timeout time.Duration, cmd string, args ...interface{}) (interface{}, error)
}

var (
	_ directPool = (*pipeline.Mux)(nil)
	_ directPool = (*cluster.Cluster)(nil)
)

type poolBox struct{ directPool }

func (p *switchPool) GetContext(ctx context.Context) (redis.Conn, error) {
	return p.cur.Load().(poolBox).GetContext(ctx)
}

// DoTimeout runs one command on the current pool.
func (p *switchPool) DoTimeout(ctx context.Context, timeout time.Duration, cmd string, args ...interface{}) (interface{}, error) {
	return p.cur.Load().(poolBox).DoTimeout(ctx, timeout, cmd, args...)
}

func (p *switchPool) set(pool directPool) { p.cur.Store(poolBox{pool}) }

// openRedis connects to the Redis the configuration names, or starts an
// embedded one when it names none. Decisions share REDIS_CONNS pipelined
// connections (package pipeline); when the Redis is a cluster node the
// service uses the cluster (package cluster) instead. It does not wait for
// Redis: the service starts while Redis is down, and limits (and detects a
// cluster) as soon as it answers.
func openRedis(ctx context.Context, cfg config, log *slog.Logger) (*backend, error) {
	dialOpts := []redis.DialOption{
		// One tls.Config: redigo ignores DialTLSSkipVerify when a config is given.
		redis.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.TLSSkipVerify}),
	}
	var dial pipeline.DialFunc
	var clusterAddr string // for cluster mode; "" when it cannot be
	var clusterOpts []redis.DialOption
	b := &backend{pool: &switchPool{}}
	var stops []func()
	switch {
	case cfg.RedisURL != "":
		dial = pipeline.DialURL(cfg.RedisURL, dialOpts...)
		b.describe = cfg.RedisSource + " " + redactURL(cfg.RedisURL)
		if addr, opts, err := cluster.ParseURL(cfg.RedisURL); err == nil {
			clusterAddr, clusterOpts = addr, append(opts, dialOpts...)
		}
	case cfg.RedisAddr != "":
		opts := append(dialOpts, redis.DialPassword(cfg.RedisPassword))
		dial = pipeline.Dial("tcp", cfg.RedisAddr, opts...)
		b.describe = "REDIS_HOST " + cfg.RedisAddr
		clusterAddr, clusterOpts = cfg.RedisAddr, opts
	default:
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("embedded redis: %w", err)
		}
		log.Warn("NO REDIS CONFIGURED: using an embedded in-process Redis. Limits are per process: " +
			"every instance counts on its own and counts are lost on restart. Set REDIS_URL for production.")
		dial = pipeline.Dial("tcp", mr.Addr())
		b.describe = "embedded " + mr.Addr()
		stops = append(stops, mr.Close)
	}
	mux := pipeline.New(dial,
		pipeline.WithConns(cfg.RedisConns),
		// Dialing (TLS and AUTH included) may take longer than one decision's
		// budget; decisions still give up at their budget.
		pipeline.WithDialTimeout(max(cfg.RedisTimeout, 3*time.Second)),
		pipeline.WithHangTimeout(max(2*cfg.RedisTimeout, 200*time.Millisecond)))
	b.pool.set(mux)
	b.mux = mux
	stops = append(stops, func() { mux.Close() })

	dctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var cl *cluster.Cluster
	b.close = func() {
		cancel()
		<-done
		if cl != nil {
			cl.Close()
		}
		for _, stop := range stops {
			stop()
		}
	}
	if clusterAddr == "" {
		close(done)
		return b, nil
	}
	found := make(chan struct{})
	go func() {
		defer close(done)
		cl = detectCluster(dctx, cfg, dial, clusterAddr, clusterOpts, log, found)
		if cl != nil {
			b.pool.set(cl)
		}
	}()
	// Give a reachable Redis a moment to say what it is, so the first
	// requests already go the right way; an unreachable one is asked again
	// in the background.
	select {
	case <-found:
	case <-time.After(2 * time.Second):
	}
	return b, nil
}

// detectCluster asks the Redis whether it is a cluster node, every second
// until it answers, and returns a Cluster when it is one (nil otherwise, or
// when ctx ends). It closes found once it knows.
func detectCluster(ctx context.Context, cfg config, dial pipeline.DialFunc, addr string, opts []redis.DialOption,
	log *slog.Logger, found chan<- struct{}) *cluster.Cluster {
	defer close(found)
	for {
		is, err := isCluster(ctx, dial, max(cfg.RedisTimeout, time.Second))
		if err == nil && !is {
			return nil
		}
		if err == nil {
			c, err := cluster.New(ctx, cluster.Config{
				Addrs: []string{addr}, DialOptions: opts, MaxIdle: cfg.RedisConns,
				ConnectTimeout: cfg.RedisTimeout, ReadTimeout: max(cfg.RedisTimeout, time.Second), WriteTimeout: max(cfg.RedisTimeout, time.Second),
			})
			if err == nil {
				log.Info("redis is a cluster node: deciding on the cluster, each key on its slot's master")
				return c
			}
			log.Warn("redis is a cluster node but the cluster could not be read; asking again", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func isCluster(ctx context.Context, dial pipeline.DialFunc, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	return cluster.IsCluster(ctx, conn)
}

// redactURL drops the password from a Redis URL for logging.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.LastIndex(u, "@"); j > i {
			return u[:i+3] + "***@" + u[j+1:]
		}
	}
	return u
}

// checkEviction warns when Redis's eviction policy can silently drop limiter
// keys. Every limiter key has an expiry, so under a volatile-* policy they
// are the first keys Redis evicts when it runs out of memory, and an evicted
// counter starts its window again from 0: limits silently loosen. Managed
// Redis often refuses CONFIG; then there is nothing to read and nothing is
// said beyond a debug line.
func checkEviction(ctx context.Context, b *backend, log *slog.Logger) {
	if strings.HasPrefix(b.describe, "embedded") {
		return
	}
	for {
		policy, err := evictionPolicy(ctx, b.pool)
		if err == nil {
			switch {
			case strings.HasPrefix(policy, "volatile-"):
				log.Warn("redis maxmemory-policy evicts keys with an expiry first, and every limiter key has one: "+
					"under memory pressure limits are silently lost; prefer noeviction (or allkeys-lru on a Redis of its own)",
					"maxmemory-policy", policy)
			case strings.HasPrefix(policy, "allkeys-"):
				log.Info("redis maxmemory-policy may evict limiter keys under memory pressure, loosening limits",
					"maxmemory-policy", policy)
			}
			return
		}
		var rerr redis.Error
		if errors.As(err, &rerr) { // refused (ACL, CONFIG renamed away): final
			log.Debug("cannot read redis maxmemory-policy", "err", err)
			return
		}
		select { // Redis not up yet: look again when it is
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

func evictionPolicy(ctx context.Context, pool limiter.Pool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pool.GetContext(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	kv, err := redis.StringMap(redis.DoContext(conn, ctx, "CONFIG", "GET", "maxmemory-policy"))
	if err != nil {
		return "", err
	}
	p, ok := kv["maxmemory-policy"]
	if !ok {
		return "", redis.Error("ERR no maxmemory-policy in CONFIG GET's reply")
	}
	return p, nil
}
