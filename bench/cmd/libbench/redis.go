package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"
)

// ownRedis is a redis-server this program started and will stop: the only
// Redis it ever flushes.
type ownRedis struct {
	addr string
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// startRedis starts redis-server from PATH on a free loopback port, without
// persistence, and waits until it answers PING.
func startRedis(ctx context.Context) (*ownRedis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("no -redis address given and %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "libbench-redis-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(port),
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", dir+"/redis.log",
		"--daemonize", "no",
		"--protected-mode", "yes",
	)
	// Its own process group, so that a Ctrl-C reaches only this program,
	// which then stops the server itself; and killed with this program if
	// it dies without doing so.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	r := &ownRedis{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { cmd.Wait(); close(r.done) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := redis.DialContext(ctx, "tcp", r.addr, redis.DialConnectTimeout(time.Second))
		if err == nil {
			_, err = c.Do("PING")
			c.Close()
			if err == nil {
				return r, nil
			}
		}
		select {
		case <-r.done:
			log, _ := os.ReadFile(dir + "/redis.log")
			r.stop()
			return nil, fmt.Errorf("redis-server exited at start-up: %s", strings.TrimSpace(string(log)))
		default:
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer PING within 10s: %v", r.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server this program started (SIGTERM, then SIGKILL after
// 5s) and removes its directory. Safe to call more than once.
func (r *ownRedis) stop() {
	select {
	case <-r.done:
	default:
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			r.cmd.Process.Kill()
			<-r.done
		}
	}
	os.RemoveAll(r.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// adminConn dials addr for the harness's own commands (INFO, FLUSHALL,
// SCRIPT LOAD, clean-up), never for a measured decision.
func adminConn(ctx context.Context, addr string) (redis.Conn, error) {
	return redis.DialContext(ctx, "tcp", addr,
		redis.DialConnectTimeout(5*time.Second),
		redis.DialReadTimeout(time.Minute),
		redis.DialWriteTimeout(time.Minute))
}

// redisVersion returns INFO server's redis_version.
func redisVersion(ctx context.Context, addr string) (string, error) {
	c, err := adminConn(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	info, err := redis.String(c.Do("INFO", "server"))
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "redis_version:"); ok {
			return v, nil
		}
	}
	return "", errors.New("INFO server has no redis_version")
}

// flushAll empties the Redis this program started. Never called on a Redis
// given with -redis.
func flushAll(ctx context.Context, addr string) error {
	c, err := adminConn(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Do("FLUSHALL", "SYNC")
	return err
}

// deleteRunKeys removes, from a Redis given with -redis, every key whose
// name holds tag (this run's keys, under every library's own prefix), and
// returns how many it removed.
func deleteRunKeys(ctx context.Context, addr, tag string) (int, error) {
	c, err := adminConn(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	cursor, n := "0", 0
	for {
		vals, err := redis.Values(c.Do("SCAN", cursor, "MATCH", "*"+tag+"*", "COUNT", 1000))
		if err != nil {
			return n, err
		}
		var keys []string
		if _, err := redis.Scan(vals, &cursor, &keys); err != nil {
			return n, err
		}
		if len(keys) > 0 {
			args := redis.Args{}.AddFlat(keys)
			if _, err := c.Do("UNLINK", args...); err != nil {
				return n, err
			}
			n += len(keys)
		}
		if cursor == "0" {
			return n, nil
		}
	}
}
