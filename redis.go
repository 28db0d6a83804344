package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/limiter"
)

// backend is the Redis the service decides on, however it was found.
type backend struct {
	pool     limiter.Pool
	describe string // for the start-up log line; never holds a password
	close    func()
}

// openRedis connects to the Redis the configuration names, or starts an
// embedded one when it names none. It does not wait for Redis: the service
// starts while Redis is down and limits as soon as it answers.
func openRedis(ctx context.Context, cfg config, log *slog.Logger) (*backend, error) {
	dialOpts := []redis.DialOption{
		redis.DialConnectTimeout(cfg.RedisTimeout),
		// One tls.Config: redigo ignores DialTLSSkipVerify when a config is given.
		redis.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.TLSSkipVerify}),
	}
	var dial func(ctx context.Context) (redis.Conn, error)
	var describe string
	var stop func()
	switch {
	case cfg.RedisURL != "":
		u := cfg.RedisURL
		dial = func(ctx context.Context) (redis.Conn, error) { return redis.DialURLContext(ctx, u, dialOpts...) }
		describe = cfg.RedisSource + " " + redactURL(u)
	case cfg.RedisAddr != "":
		opts := append(dialOpts, redis.DialPassword(cfg.RedisPassword))
		addr := cfg.RedisAddr
		dial = func(ctx context.Context) (redis.Conn, error) { return redis.DialContext(ctx, "tcp", addr, opts...) }
		describe = "REDIS_HOST " + addr
	default:
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("embedded redis: %w", err)
		}
		log.Warn("NO REDIS CONFIGURED: using an embedded in-process Redis. Limits are per process: " +
			"every instance counts on its own and counts are lost on restart. Set REDIS_URL for production.")
		addr := mr.Addr()
		dial = func(ctx context.Context) (redis.Conn, error) { return redis.DialContext(ctx, "tcp", addr) }
		describe, stop = "embedded "+addr, mr.Close
	}
	pool := &redis.Pool{
		MaxIdle:     cfg.RedisConns,
		IdleTimeout: 5 * time.Minute,
		DialContext: dial,
	}
	return &backend{pool: pool, describe: describe, close: func() {
		pool.Close()
		if stop != nil {
			stop()
		}
	}}, nil
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
		if strings.Contains(err.Error(), "ERR") { // refused, or CONFIG renamed away
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
		return "", fmt.Errorf("ERR no maxmemory-policy in CONFIG GET's reply")
	}
	return p, nil
}
