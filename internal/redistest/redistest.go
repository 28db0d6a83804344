// Package redistest gives floodgate's tests a real Redis.
//
// Shared returns the Redis a whole test binary uses: the one at REDIS_URL when
// that is set (the harness then never flushes or changes it; tests use random
// keys), else one the harness starts. Start always starts a Redis of the
// test's own, which the test may pause, resume, kill and restart. The harness
// starts a Redis as a Docker container from REDIS_IMAGE (default
// redis:7-alpine; the image must already exist locally, nothing is pulled),
// else as a redis-server process found on PATH; when neither is possible the
// test is skipped with a message naming the three ways to provide one.
//
// Call Main from TestMain so that a shared Redis is stopped when the tests end.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/ory/dockertest/v3"
)

// DefaultImage is the image used when REDIS_IMAGE is unset.
const DefaultImage = "redis:7-alpine"

const skipHelp = "no Redis for this test: set REDIS_URL, or make the Docker image REDIS_IMAGE (default " +
	DefaultImage + ") available locally, or put redis-server on PATH"

// Server is a Redis a test can reach at Addr. A Server the harness started
// (Owned) can be paused, resumed, killed and restarted on the same address.
type Server struct {
	// Addr is host:port.
	Addr string
	// URL is a redis:// URL for Addr (or REDIS_URL itself).
	URL string
	// Owned reports whether the harness started this Redis.
	Owned bool
	// How reports how the Redis was found or started: "REDIS_URL", "docker"
	// or "redis-server".
	How string

	mu      sync.Mutex
	args    []string // redis-server arguments, for restarts
	dir     string
	cmd     *exec.Cmd
	waitErr chan error
	pool    *dockertest.Pool
	res     *dockertest.Resource
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Main runs the tests and then stops the shared Redis, if the harness started
// one. Use it as TestMain's body: func TestMain(m *testing.M) { redistest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.stop()
	}
	os.Exit(code)
}

// Shared returns the Redis shared by the test binary: REDIS_URL, or one the
// harness started once. Tests using it must use random keys (see Key) and
// must not pause or kill it.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() {
		if u := os.Getenv("REDIS_URL"); u != "" {
			shared.srv, shared.err = fromURL(u)
			return
		}
		shared.srv, shared.err = start(nil)
	})
	if shared.err != nil {
		if errors.Is(shared.err, errUnavailable) {
			t.Skip(skipHelp + ": " + shared.err.Error())
		}
		t.Fatalf("redistest: %v", shared.err)
	}
	return shared.srv
}

// Start starts a Redis of the test's own, with extra redis-server arguments
// (such as "--maxmemory-policy", "volatile-lru"), and stops it when the test
// ends. It ignores REDIS_URL: a test that pauses or kills Redis must own it.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	s, err := start(args)
	if errors.Is(err, errUnavailable) {
		t.Skip(skipHelp + ": " + err.Error())
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

// Key returns a random key for a test, unique across runs and tests.
func Key(t testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return "floodgate-test." + name + "." + hex.EncodeToString(b)
}

// Pool returns a redigo pool to the server, closed when the test ends.
func (s *Server) Pool(t testing.TB) *redis.Pool {
	p := &redis.Pool{
		MaxIdle:     16,
		IdleTimeout: time.Minute,
		DialContext: func(ctx context.Context) (redis.Conn, error) { return s.DialContext(ctx) },
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// DialContext opens a connection to the server.
func (s *Server) DialContext(ctx context.Context) (redis.Conn, error) {
	if s.How == "REDIS_URL" {
		return redis.DialURLContext(ctx, s.URL)
	}
	return redis.DialContext(ctx, "tcp", s.Addr, redis.DialConnectTimeout(2*time.Second))
}

// Do runs one command on a fresh connection, failing the test on error.
func (s *Server) Do(t testing.TB, cmd string, args ...interface{}) interface{} {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.DialContext(ctx)
	if err != nil {
		t.Fatalf("redistest: dial %s: %v", s.Addr, err)
	}
	defer c.Close()
	v, err := redis.DoContext(c, ctx, cmd, args...)
	if err != nil {
		t.Fatalf("redistest: %s: %v", cmd, err)
	}
	return v
}

// Pause stops the Redis process (SIGSTOP, or docker pause): connections stay
// open but nothing is answered until Resume.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.mustOwn(t)
	if err := s.signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("redistest: pause: %v", err)
	}
}

// Resume continues a paused Redis.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.mustOwn(t)
	if err := s.signal(syscall.SIGCONT); err != nil {
		t.Fatalf("redistest: resume: %v", err)
	}
}

// Kill ends the Redis at once (SIGKILL); its data is lost.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mustOwn(t)
	if err := s.kill(); err != nil {
		t.Fatalf("redistest: kill: %v", err)
	}
}

// Restart starts a killed Redis again on the same address and waits until it
// answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mustOwn(t)
	if err := s.restart(); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

func (s *Server) mustOwn(t testing.TB) {
	t.Helper()
	if !s.Owned {
		t.Fatalf("redistest: %s Redis at %s is not the test's own; use Start", s.How, s.Addr)
	}
}

var errUnavailable = errors.New("unavailable")

func fromURL(u string) (*Server, error) {
	c, err := redis.DialURL(u, redis.DialConnectTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	defer c.Close()
	if _, err := c.Do("PING"); err != nil {
		return nil, fmt.Errorf("REDIS_URL: ping: %w", err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	return &Server{Addr: pu.Host, URL: u, How: "REDIS_URL"}, nil
}

// Int runs one command and returns its integer reply, failing the test on error.
func (s *Server) Int(t testing.TB, cmd string, args ...interface{}) int {
	t.Helper()
	n, err := redis.Int(s.Do(t, cmd, args...), nil)
	if err != nil {
		t.Fatalf("redistest: %s: %v", cmd, err)
	}
	return n
}

// String runs one command and returns its string reply, failing the test on error.
func (s *Server) String(t testing.TB, cmd string, args ...interface{}) string {
	t.Helper()
	v, err := redis.String(s.Do(t, cmd, args...), nil)
	if err != nil {
		t.Fatalf("redistest: %s: %v", cmd, err)
	}
	return v
}
