package main

import (
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-floodgate/floodgate/internal/redistest"
)

// TestTwoInstancesOneIdentity: two service instances (separate pools and
// processes' worth of state) share one Redis; one identity hammers both at
// once; exactly the limit is admitted.
func TestTwoInstancesOneIdentity(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	env := map[string]string{"RATE_LIMIT": "25", "RATE_WINDOW": "1m", "IP_RATE_LIMIT": "0"}
	a, _ := service(t, redisEnv(t, srv, env))
	b, _ := service(t, redisEnv(t, srv, copyEnv(env)))
	// One browser's cookie, used against both instances (same SECRET_KEY).
	client := browser(t)
	get(t, client, a+"/")
	var allowed, denied, other atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		base := a
		if g%2 == 1 {
			base = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				resp, err := client.Get(base + "/api/ping")
				if err != nil {
					other.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					allowed.Add(1)
				case 429:
					denied.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != 25 || denied.Load() != 160-25 || other.Load() != 0 {
		t.Errorf("allowed %d denied %d other %d; want 25, 135, 0", allowed.Load(), denied.Load(), other.Load())
	}
}

func copyEnv(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestBootWithoutRedis: the service starts while its Redis is down or hung,
// serves by the failure mode within the budget, says so in /readyz, and
// limits once Redis is back, without a restart.
func TestBootWithoutRedis(t *testing.T) {
	for _, tt := range []struct {
		name        string
		down, up    func(s *redistest.Server, t testing.TB)
		wantLoadLog bool
	}{
		{"killed", (*redistest.Server).Kill, (*redistest.Server).Restart, true},
		{"hung", (*redistest.Server).Pause, (*redistest.Server).Resume, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			tt.down(srv, t)
			base, logs := service(t, redisEnv(t, srv, map[string]string{"RATE_LIMIT": "3"}))
			b := browser(t)
			get(t, b, base+"/")
			for i := 0; i < 5; i++ {
				start := time.Now()
				resp, body := get(t, b, base+"/api/ping")
				if took := time.Since(start); took > 300*time.Millisecond {
					t.Errorf("request %d took %v with Redis %s; the budget is 100ms", i, took, tt.name)
				}
				if resp.StatusCode != 200 || body != "PONG" || resp.Header.Get("X-RateLimit-Limit") != "" {
					t.Fatalf("Redis %s, FAIL_MODE=open: %d %q limit header %q; want 200 PONG without limit headers",
						tt.name, resp.StatusCode, body, resp.Header.Get("X-RateLimit-Limit"))
				}
			}
			if resp, _ := get(t, b, base+"/readyz"); resp.StatusCode != 503 {
				t.Fatalf("/readyz with Redis %s: %d", tt.name, resp.StatusCode)
			}
			tt.up(srv, t)
			deadline := time.Now().Add(5 * time.Second)
			for {
				resp, _ := get(t, b, base+"/readyz")
				if resp.StatusCode == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("/readyz not 200 5s after Redis came back")
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Requests sent while Redis hung may still reach it when it
			// resumes, so count from a fresh window.
			b2 := browser(t)
			get(t, b2, base+"/")
			for i, want := range []int{200, 200, 200, 429} {
				resp, _ := get(t, b2, base+"/api/ping")
				if resp.StatusCode != want || resp.Header.Get("X-RateLimit-Limit") != "3" {
					t.Fatalf("after Redis came back, request %d: %d limit %q; want %d with limit headers", i, resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"), want)
				}
			}
			if tt.wantLoadLog {
				waitLog(t, logs, "decision script loaded")
			}
		})
	}
}

// TestRedisPaused: with Redis hung mid-run, every answer comes within the
// budget plus slack, per the failure mode, never 429; after it resumes,
// decisions are right again, and neither goroutines nor Redis connections
// have grown.
func TestRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	for _, tt := range []struct {
		mode string
		code int
	}{{"open", 200}, {"closed", 503}} {
		t.Run(tt.mode, func(t *testing.T) {
			base, _ := service(t, redisEnv(t, srv, map[string]string{"FAIL_MODE": tt.mode, "RATE_LIMIT": "1000", "IP_RATE_LIMIT": "0"}))
			b := browser(t)
			b.Transport = &http.Transport{MaxIdleConnsPerHost: 8}
			get(t, b, base+"/")
			for i := 0; i < 20; i++ {
				get(t, b, base+"/api/ping")
			}
			b.CloseIdleConnections()
			time.Sleep(100 * time.Millisecond)
			goroutines := runtime.NumGoroutine()
			clients := connectedClients(t, srv)

			srv.Pause(t)
			var wg sync.WaitGroup
			var slow, wrong atomic.Int64
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 10; i++ {
						start := time.Now()
						resp, err := b.Get(base + "/api/ping")
						took := time.Since(start)
						if err != nil {
							wrong.Add(1)
							continue
						}
						resp.Body.Close()
						if resp.StatusCode != tt.code {
							wrong.Add(1)
						}
						if took > 100*time.Millisecond+100*time.Millisecond {
							slow.Add(1)
							t.Logf("answered after %v", took)
						}
					}
				}()
			}
			wg.Wait()
			srv.Resume(t)
			if wrong.Load() != 0 || slow.Load() != 0 {
				t.Errorf("while paused: %d wrong answers, %d slower than the budget plus 100ms", wrong.Load(), slow.Load())
			}
			// Decided by Redis again.
			deadline := time.Now().Add(3 * time.Second)
			for {
				resp, _ := get(t, b, base+"/api/ping")
				if resp.Header.Get("X-RateLimit-Limit") == "1000" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("not deciding 3s after Redis resumed")
				}
				time.Sleep(20 * time.Millisecond)
			}
			b.CloseIdleConnections()
			time.Sleep(300 * time.Millisecond)
			if g := runtime.NumGoroutine(); g > goroutines+5 {
				t.Errorf("goroutines grew from %d to %d", goroutines, g)
			}
			if c := connectedClients(t, srv); c > clients+2 {
				t.Errorf("Redis connections grew from %d to %d", clients, c)
			}
		})
	}
}

func connectedClients(t *testing.T, srv *redistest.Server) int {
	for _, l := range strings.Split(srv.String(t, "INFO", "clients"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "connected_clients:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatal("no connected_clients in INFO clients")
	return 0
}

// TestHealing: after SCRIPT FLUSH, and after Redis is killed and restarted on
// the same address, the very next burst of concurrent requests is decided by
// Redis, every one of them (limit headers on each), and exactly.
func TestHealing(t *testing.T) {
	srv := redistest.Start(t)
	base, _ := service(t, redisEnv(t, srv, map[string]string{"RATE_LIMIT": "20", "RATE_WINDOW": "1m", "IP_RATE_LIMIT": "0"}))
	burst := func(step string) {
		b := browser(t)
		get(t, b, base+"/")
		var wg sync.WaitGroup
		var allowed, denied, undecided atomic.Int64
		for g := 0; g < 30; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := b.Get(base + "/api/ping")
				if err != nil {
					undecided.Add(1)
					return
				}
				resp.Body.Close()
				switch {
				case resp.Header.Get("X-RateLimit-Limit") == "":
					undecided.Add(1)
				case resp.StatusCode == 200:
					allowed.Add(1)
				case resp.StatusCode == 429:
					denied.Add(1)
				}
			}()
		}
		wg.Wait()
		if allowed.Load() != 20 || denied.Load() != 10 || undecided.Load() != 0 {
			t.Errorf("%s: allowed %d denied %d undecided %d; want 20, 10, 0", step, allowed.Load(), denied.Load(), undecided.Load())
		}
	}
	burst("warm-up")
	srv.Do(t, "SCRIPT", "FLUSH")
	burst("after SCRIPT FLUSH")
	srv.Kill(t)
	srv.Restart(t)
	burst("first burst after a restart")
}

// TestEvictionPolicyWarning: a volatile-* policy is warned about at start.
func TestEvictionPolicyWarning(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru")
	_, logs := service(t, redisEnv(t, srv, nil))
	waitLog(t, logs, "maxmemory-policy=volatile-lru")
}

func waitLog(t *testing.T, logs interface{ String() string }, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q:\n%s", want, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterService: pointed at one node of a real 3-master Redis Cluster,
// the service finds the cluster by itself and limits identities across all
// slots exactly, with no MOVED or CROSSSLOT errors; a master restarted
// mid-run costs only fail-open answers for its keys while it is away, and
// decisions are exact again after.
func TestClusterService(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	base, logs := service(t, map[string]string{
		"REDIS_URL": "redis://" + cl.Addrs()[0], "SECRET_KEY": strings.Repeat("c", 32),
		"RATE_LIMIT": "5", "RATE_WINDOW": "1m", "IP_RATE_LIMIT": "0",
	})
	waitLog(t, logs, "redis is a cluster node")

	// round sends 8 requests from each of n fresh browsers, concurrently,
	// and checks each got exactly 5 allowed and 3 denied, all decided.
	round := func(step string, n int) {
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			b := browser(t)
			get(t, b, base+"/")
			wg.Add(1)
			go func() {
				defer wg.Done()
				var allowed, denied, undecided int
				for j := 0; j < 8; j++ {
					resp, err := b.Get(base + "/api/ping")
					if err != nil {
						t.Errorf("%s: %v", step, err)
						return
					}
					resp.Body.Close()
					switch {
					case resp.Header.Get("X-RateLimit-Limit") == "":
						undecided++
					case resp.StatusCode == 200:
						allowed++
					case resp.StatusCode == 429:
						denied++
					}
				}
				if allowed != 5 || denied != 3 || undecided != 0 {
					t.Errorf("%s: allowed %d denied %d undecided %d; want 5, 3, 0", step, allowed, denied, undecided)
				}
			}()
		}
		wg.Wait()
	}
	round("across slots", 40)

	// Load while master 1 restarts: only fail-open answers (200 without
	// headers) for its keys, never an error status.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := 0; g < 4; g++ {
		b := browser(t)
		get(t, b, base+"/")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := b.Get(base + "/api/ping")
				if err != nil || (resp.StatusCode != 200 && resp.StatusCode != 429) {
					bad.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	cl.RestartNode(t, 1)
	cl.WaitOK(t)
	close(stop)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d answers other than 200/429 while a master restarted", bad.Load())
	}
	// The restarted master refuses its slots for a moment after it is back.
	time.Sleep(3 * time.Second)
	round("after a master restart", 40)
	if strings.Contains(logs.String(), "MOVED") || strings.Contains(logs.String(), "CROSSSLOT") {
		t.Errorf("MOVED or CROSSSLOT in the log:\n%s", logs.String())
	}
}

// TestFailover: the configured address is a replica (as the old master's
// address is after a failover, before the switch) and then becomes a master
// with an empty script cache: while it refuses writes, requests are served
// by the failure mode, never 429 nor an error status; within a second of the
// promotion, decisions are exact again.
func TestFailover(t *testing.T) {
	primary := redistest.Start(t)
	host, port, _ := strings.Cut(primary.Addr, ":")
	replica := redistest.Start(t, "--replicaof", host, port)
	base, _ := service(t, redisEnv(t, replica, map[string]string{"RATE_LIMIT": "5", "RATE_WINDOW": "1m", "IP_RATE_LIMIT": "0"}))
	b := browser(t)
	get(t, b, base+"/")
	for i := 0; i < 3; i++ {
		resp, body := get(t, b, base+"/api/ping")
		if resp.StatusCode != 200 || body != "PONG" || resp.Header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("on a read-only replica: %d %q limit %q; want fail-open 200 without headers", resp.StatusCode, body, resp.Header.Get("X-RateLimit-Limit"))
		}
	}
	replica.Do(t, "REPLICAOF", "NO", "ONE")
	replica.Do(t, "SCRIPT", "FLUSH")
	promoted := time.Now()
	for {
		resp, _ := get(t, b, base+"/api/ping")
		if resp.Header.Get("X-RateLimit-Limit") == "5" {
			if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "4" {
				t.Fatalf("first decision after the promotion: %d Remaining %q", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
			}
			break
		}
		if time.Since(promoted) > time.Second {
			t.Fatal("not deciding a second after the promotion")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, want := range []int{200, 200, 200, 200, 429} {
		if resp, _ := get(t, b, base+"/api/ping"); resp.StatusCode != want {
			t.Fatalf("after the promotion, request %d: %d, want %d", i+2, resp.StatusCode, want)
		}
	}
}
