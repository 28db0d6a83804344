package cluster_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/cluster"
)

// A service given one Redis URL finds out by itself whether it is a cluster
// node, and builds a Cluster or a plain pool accordingly. (Not run: it needs
// a Redis at REDIS_URL.)
func Example_fromURL() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// For example rediss://:secret@redis.example.com:6380 on a managed Redis.
	addr, opts, err := cluster.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	opts = append(opts, redis.DialTLSSkipVerify(os.Getenv("REDIS_TLS_SKIP_VERIFY") == "true"))

	conn, err := redis.DialContext(ctx, "tcp", addr, opts...)
	if err != nil {
		log.Fatal(err)
	}
	isCluster, err := cluster.IsCluster(ctx, conn)
	conn.Close()
	if err != nil {
		log.Fatal(err)
	}

	var pool limiter.Pool
	if isCluster {
		c, err := cluster.New(ctx, cluster.Config{Addrs: []string{addr}, DialOptions: opts, MaxIdle: 16})
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		pool = c
	} else {
		p := &redis.Pool{MaxIdle: 16, DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", addr, opts...)
		}}
		defer p.Close()
		pool = p
	}

	lim := limiter.New(pool, limiter.WithTimeout(100*time.Millisecond))
	if err := lim.Load(ctx); err != nil { // on every master of a cluster
		log.Fatal(err)
	}
	res, err := lim.Allow(ctx, "user-42", limiter.Per(10, 10*time.Second))
	fmt.Println(res.Allowed, err)
}
