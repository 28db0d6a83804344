package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// service runs the whole service in-process with env as its environment
// and returns its base URL; it is shut down when the test ends.
func service(t *testing.T, env map[string]string) (string, *syncBuffer) {
	t.Helper()
	if _, ok := env["PORT"]; !ok {
		env["PORT"] = "0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		done <- run(ctx, func(k string) string { return env[k] }, logs, func(a net.Addr) { addr <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case a := <-addr:
		return "http://127.0.0.1:" + strconv.Itoa(a.(*net.TCPAddr).Port), logs
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the service did not start in 10s")
	}
	return "", nil
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// browser is an HTTP client with a cookie jar, as a browser would have.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 5 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func redisEnv(t *testing.T, srv *redistest.Server, extra map[string]string) map[string]string {
	env := map[string]string{"REDIS_URL": srv.URL, "SECRET_KEY": strings.Repeat("k", 32)}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// TestIntegrationTutorial: the tutorial's sequence over HTTP against real
// Redis: 406 without a cookie, then 10 × 200 with Remaining 9…0, the 11th 429.
func TestIntegrationTutorial(t *testing.T) {
	t.Parallel()
	base, _ := service(t, redisEnv(t, redistest.Shared(t), nil))
	b := browser(t)
	resp, _ := get(t, b, base+"/api/ping")
	if resp.StatusCode != http.StatusNotAcceptable {
		t.Fatalf("first ping without a cookie: %d, want 406", resp.StatusCode)
	}
	for i := 1; i <= 11; i++ {
		resp, body := get(t, b, base+"/api/ping")
		want, wantBody, rem := 200, "PONG", strconv.Itoa(10-i)
		if i == 11 {
			want, rem = 429, "0"
			wantBody = ""
		}
		if resp.StatusCode != want || (wantBody != "" && body != wantBody) {
			t.Fatalf("request %d: %d %q, want %d", i, resp.StatusCode, body, want)
		}
		if resp.Header.Get("X-RateLimit-Limit") != "10" || resp.Header.Get("X-RateLimit-Remaining") != rem {
			t.Errorf("request %d: Limit %q Remaining %q, want 10 %s", i, resp.Header.Get("X-RateLimit-Limit"), resp.Header.Get("X-RateLimit-Remaining"), rem)
		}
		if i == 11 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	other := browser(t)
	get(t, other, base+"/")
	if resp, _ := get(t, other, base+"/api/ping"); resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "9" {
		t.Errorf("a second browser: %d Remaining %q, want 200 and 9", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
	}
}

func TestIntegrationWindowResets(t *testing.T) {
	t.Parallel()
	base, _ := service(t, redisEnv(t, redistest.Shared(t), map[string]string{"RATE_LIMIT": "2", "RATE_WINDOW": "700ms"}))
	b := browser(t)
	get(t, b, base+"/")
	for i, want := range []int{200, 200, 429} {
		if resp, _ := get(t, b, base+"/api/ping"); resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
	time.Sleep(800 * time.Millisecond)
	if resp, _ := get(t, b, base+"/api/ping"); resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "1" {
		t.Fatalf("after the window: %d Remaining %q", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
	}
}

// TestIntegrationOneScriptCallPerDecision counts EVALSHA on a Redis of the
// test's own: one per decision (the page and health checks cost none).
func TestIntegrationOneScriptCallPerDecision(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	base, _ := service(t, redisEnv(t, srv, map[string]string{"IP_RATE_LIMIT": "0", "DENY_CACHE_SIZE": "0"}))
	b := browser(t)
	get(t, b, base+"/")
	get(t, b, base+"/api/ping") // loads the script if the boot-time load has not yet
	srv.Do(t, "CONFIG", "RESETSTAT")
	for i := 0; i < 15; i++ {
		get(t, b, base+"/api/ping")
		get(t, b, base+"/healthz")
	}
	stats := srv.String(t, "INFO", "commandstats")
	calls := func(cmd string) int {
		for _, l := range strings.Split(stats, "\n") {
			if strings.HasPrefix(l, "cmdstat_"+cmd+":calls=") {
				n, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(l, "cmdstat_"+cmd+":calls="), ",", 2)[0])
				return n
			}
		}
		return 0
	}
	if got := calls("evalsha") + calls("eval"); got != 15 {
		t.Errorf("%d script calls for 15 decisions, want 15\n%s", got, stats)
	}
	for _, cmd := range []string{"get", "set", "setex", "incr"} {
		if n := calls(cmd); n != 0 {
			t.Errorf("%d direct %s calls; the script does the work", n, cmd)
		}
	}
}

// TestIntegrationEmbeddedDefault: with no Redis configured the service runs
// on an embedded Redis, saying loudly that limits are per process.
func TestIntegrationEmbeddedDefault(t *testing.T) {
	t.Parallel()
	base, logs := service(t, map[string]string{})
	b := browser(t)
	get(t, b, base+"/")
	for i := 0; i < 10; i++ {
		if resp, _ := get(t, b, base+"/api/ping"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if resp, _ := get(t, b, base+"/api/ping"); resp.StatusCode != 429 {
		t.Fatalf("11th: %d", resp.StatusCode)
	}
	if resp, _ := get(t, b, base+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
	_, metrics := get(t, b, base+"/metrics")
	for _, want := range []string{`floodgate_decisions_total{outcome="allowed"} 10`, "floodgate_redis_connections ", "floodgate_redis_commands_total "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	time.Sleep(10 * time.Millisecond)
	for _, want := range []string{"NO REDIS CONFIGURED", "per process", "SECRET_KEY is not set"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		err  string // the variable the error must name; "" for none
		want func(c config) bool
	}{
		{"defaults", nil, "", func(c config) bool {
			return c.Port == "5000" && c.Limit.Count == 10 && c.Limit.Period == 10*time.Second &&
				c.IPLimit.Count == 100 && c.FailMode.String() == "open" && c.RedisTimeout == 100*time.Millisecond &&
				c.RandomKey && c.ProxyHops == 0 && c.RedisURL == "" && c.RedisAddr == "" && c.DenyCache > 0
		}},
		{"REDIS_URL wins", map[string]string{"REDIS_URL": "rediss://:pw@h:1", "REDISCLOUD_URL": "redis://other:2", "REDIS_HOST": "x"}, "", func(c config) bool {
			return c.RedisURL == "rediss://:pw@h:1" && c.RedisSource == "REDIS_URL"
		}},
		{"REDISCLOUD_URL", map[string]string{"REDISCLOUD_URL": "redis://u:p@cloud:123"}, "", func(c config) bool { return c.RedisSource == "REDISCLOUD_URL" }},
		{"tutorial variables", map[string]string{"REDIS_HOST": "h", "REDIS_PORT": "7000", "REDIS_PASSWORD": "pw"}, "", func(c config) bool {
			return c.RedisAddr == "h:7000" && c.RedisPassword == "pw"
		}},
		{"everything set", map[string]string{"PORT": "8080", "RATE_LIMIT": "5", "RATE_WINDOW": "1m", "FAIL_MODE": "closed",
			"REDIS_TIMEOUT": "250ms", "IP_RATE_LIMIT": "0", "TRUSTED_PROXY_HOPS": "1", "LOG_FORMAT": "json", "LOG_LEVEL": "debug",
			"SECRET_KEY": strings.Repeat("n", 32), "SECRET_KEY_PREVIOUS": strings.Repeat("o", 40), "REDIS_TLS_SKIP_VERIFY": "true"}, "", func(c config) bool {
			return c.Port == "8080" && c.Limit.Count == 5 && c.Limit.Period == time.Minute && c.FailMode.String() == "closed" &&
				c.RedisTimeout == 250*time.Millisecond && c.IPLimit.IsZero() && c.ProxyHops == 1 && c.LogFormat == "json" &&
				len(c.Keys) == 2 && !c.RandomKey && c.TLSSkipVerify
		}},
		{"IP limit follows RATE_LIMIT", map[string]string{"RATE_LIMIT": "7"}, "", func(c config) bool { return c.IPLimit.Count == 70 }},
		{"bad PORT", map[string]string{"PORT": "http"}, "PORT", nil},
		{"bad REDIS_URL", map[string]string{"REDIS_URL": "localhost:6379"}, "REDIS_URL", nil},
		{"bad REDISCLOUD_URL", map[string]string{"REDISCLOUD_URL": "http://x"}, "REDISCLOUD_URL", nil},
		{"bad REDIS_PORT", map[string]string{"REDIS_HOST": "h", "REDIS_PORT": "99999"}, "REDIS_PORT", nil},
		{"bad REDIS_PORT without a host", map[string]string{"REDIS_PORT": "six"}, "REDIS_PORT", nil},
		{"port in REDIS_HOST", map[string]string{"REDIS_HOST": "redis:6380"}, "REDIS_HOST", nil},
		{"path in REDIS_HOST", map[string]string{"REDIS_HOST": "redis/0"}, "REDIS_HOST", nil},
		{"IPv6 REDIS_HOST", map[string]string{"REDIS_HOST": "::1", "REDIS_PORT": "7000"}, "", func(c config) bool { return c.RedisAddr == "[::1]:7000" }},
		{"bracketed IPv6 REDIS_HOST", map[string]string{"REDIS_HOST": "[::1]"}, "", func(c config) bool { return c.RedisAddr == "[::1]:6379" }},
		{"bad database in REDIS_URL", map[string]string{"REDIS_URL": "redis://h:6379/abc"}, "REDIS_URL", nil},
		{"bad port in REDIS_URL", map[string]string{"REDIS_URL": "redis://h:0/1"}, "REDIS_URL", nil},
		{"database in REDIS_URL", map[string]string{"REDIS_URL": "redis://h:6379/3"}, "", func(c config) bool { return c.RedisURL == "redis://h:6379/3" }},
		{"IPv6 REDIS_URL", map[string]string{"REDIS_URL": "redis://[::1]:6379"}, "", func(c config) bool { return c.RedisSource == "REDIS_URL" }},
		{"fractional milliseconds in RATE_WINDOW", map[string]string{"RATE_WINDOW": "1.5ms"}, "RATE_WINDOW", nil},
		{"bad RATE_LIMIT", map[string]string{"RATE_LIMIT": "ten"}, "RATE_LIMIT", nil},
		{"zero RATE_LIMIT", map[string]string{"RATE_LIMIT": "0"}, "RATE_LIMIT", nil},
		{"bad RATE_WINDOW", map[string]string{"RATE_WINDOW": "10"}, "RATE_WINDOW", nil},
		{"tiny RATE_WINDOW", map[string]string{"RATE_WINDOW": "10us"}, "RATE_WINDOW", nil},
		{"bad FAIL_MODE", map[string]string{"FAIL_MODE": "maybe"}, "FAIL_MODE", nil},
		{"bad REDIS_TIMEOUT", map[string]string{"REDIS_TIMEOUT": "-1s"}, "REDIS_TIMEOUT", nil},
		{"short SECRET_KEY", map[string]string{"SECRET_KEY": "short"}, "SECRET_KEY", nil},
		{"short SECRET_KEY_PREVIOUS", map[string]string{"SECRET_KEY": strings.Repeat("n", 32), "SECRET_KEY_PREVIOUS": "x"}, "SECRET_KEY_PREVIOUS", nil},
		{"previous without current", map[string]string{"SECRET_KEY_PREVIOUS": strings.Repeat("o", 32)}, "SECRET_KEY_PREVIOUS", nil},
		{"bad IP_RATE_LIMIT", map[string]string{"IP_RATE_LIMIT": "-1"}, "IP_RATE_LIMIT", nil},
		{"bad TRUSTED_PROXY_HOPS", map[string]string{"TRUSTED_PROXY_HOPS": "one"}, "TRUSTED_PROXY_HOPS", nil},
		{"bad REDIS_TLS_SKIP_VERIFY", map[string]string{"REDIS_TLS_SKIP_VERIFY": "sure"}, "REDIS_TLS_SKIP_VERIFY", nil},
		{"bad LOG_FORMAT", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT", nil},
		{"bad LOG_LEVEL", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL", nil},
		{"bad DENY_CACHE_SIZE", map[string]string{"DENY_CACHE_SIZE": "lots"}, "DENY_CACHE_SIZE", nil},
		{"bad REDIS_CONNS", map[string]string{"REDIS_CONNS": "0"}, "REDIS_CONNS", nil},
	}
	for _, tt := range tests {
		c, err := loadConfig(func(k string) string { return tt.env[k] })
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err+":") {
				t.Errorf("%s: error %v, want one naming %s", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !tt.want(c) {
			t.Errorf("%s: got %+v", tt.name, c)
		}
	}
}

// TestStartupStopsOnBadConfig: the service refuses to start, naming the
// variable, and listens on nothing.
func TestStartupStopsOnBadConfig(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), func(k string) string {
		return map[string]string{"RATE_WINDOW": "soon", "PORT": "0"}[k]
	}, io.Discard, func(net.Addr) { t.Error("it listened") })
	if err == nil || !strings.Contains(err.Error(), "RATE_WINDOW") {
		t.Fatalf("run = %v, want an error naming RATE_WINDOW", err)
	}
}

// TestSIGTERMDuringLoad builds the binary, loads it, sends SIGTERM: every
// in-flight request completes and the process exits 0.
func TestSIGTERMDuringLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	srv := redistest.Shared(t)
	bin := filepath.Join(t.TempDir(), "floodgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	port := freePort(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "REDIS_URL="+srv.URL,
		"SECRET_KEY="+strings.Repeat("s", 32), "RATE_LIMIT=1000000", "IP_RATE_LIMIT=0")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitUp(t, base)

	b := browser(t)
	get(t, b, base+"/")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, refused, broken int
	stop := make(chan struct{})
	for g := 0; g < 8; g++ {
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
				mu.Lock()
				switch {
				case err == nil:
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok++
					} else {
						broken++
					}
				case strings.Contains(err.Error(), "connection refused"):
					refused++ // after the listener closed: not in flight
				default:
					broken++ // accepted but not answered: an in-flight request lost
					t.Logf("request error: %v", err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(25 * time.Second):
		cmd.Process.Kill()
		t.Fatal("not stopped 25s after SIGTERM")
	}
	close(stop)
	wg.Wait()
	if ok == 0 || broken != 0 {
		t.Errorf("%d answered, %d broken (in flight but not completed), %d refused after shutdown", ok, broken, refused)
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Errorf("no clean stop in the log:\n%s", logs.String())
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitUp(t *testing.T, base string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the service did not come up in 10s")
}

// TestMemoryPerIdentity: each identity costs Redis at most 100 bytes, its
// key and the IP backstop's key alike (MEMORY USAGE on a Redis of the test's
// own, so every requests.* key is the service's).
func TestMemoryPerIdentity(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	base, _ := service(t, redisEnv(t, srv, nil))
	b := browser(t)
	get(t, b, base+"/")
	if resp, _ := get(t, b, base+"/api/ping"); resp.StatusCode != 200 {
		t.Fatalf("ping: %d", resp.StatusCode)
	}
	keys, err := redis.Strings(srv.Do(t, "KEYS", "requests.*"), nil)
	if err != nil || len(keys) != 2 {
		t.Fatalf("KEYS requests.* = %v, %v; want the identity's and the IP's", keys, err)
	}
	for _, k := range keys {
		if n := srv.Int(t, "MEMORY", "USAGE", k); n > 100 {
			t.Errorf("MEMORY USAGE %s = %d bytes, want <= 100", k, n)
		}
		if ttl := srv.Int(t, "PTTL", k); ttl <= 0 {
			t.Errorf("%s has no expiry", k)
		}
	}
}

// TestOversizedRequests: headers beyond the server's bound are refused with
// 431 and a large body with 4xx, cheaply, and the service keeps serving.
func TestOversizedRequests(t *testing.T) {
	t.Parallel()
	base, _ := service(t, redisEnv(t, redistest.Shared(t), nil))
	tests := []struct {
		name   string
		method string
		header int // bytes of an extra header
		body   int // bytes of body
		want   int
	}{
		{"32 KB of headers", http.MethodGet, 32 << 10, 0, http.StatusRequestHeaderFieldsTooLarge},
		{"1 MB body on ping", http.MethodPost, 0, 1 << 20, http.StatusMethodNotAllowed},
		{"1 MB body on the page", http.MethodPut, 0, 1 << 20, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, base+"/api/ping", strings.NewReader(strings.Repeat("x", tt.body)))
		if tt.header > 0 {
			req.Header.Set("X-Padding", strings.Repeat("p", tt.header))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	if resp, _ := get(t, browser(t), base+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("after oversized requests /healthz answered %d", resp.StatusCode)
	}
}

// TestDebugLog: LOG_LEVEL=debug logs one JSON line per request, with the
// route's pattern and never the client's bytes (path, cookie).
func TestDebugLog(t *testing.T) {
	t.Parallel()
	base, logs := service(t, redisEnv(t, redistest.Shared(t), map[string]string{"LOG_LEVEL": "debug", "LOG_FORMAT": "json"}))
	b := browser(t)
	get(t, b, base+"/")
	get(t, b, base+"/api/ping")
	get(t, b, base+"/no/such/secret-path")
	var cookie string
	u, _ := url.Parse(base)
	for _, c := range b.Jar.Cookies(u) {
		cookie = c.Value
	}
	waitLog(t, logs, `"route":"/api/ping"`)
	out := logs.String()
	if n := strings.Count(out, `"msg":"request"`); n != 3 {
		t.Errorf("%d request lines for 3 requests:\n%s", n, out)
	}
	for _, secret := range []string{cookie, "secret-path"} {
		if secret != "" && strings.Contains(out, secret) {
			t.Errorf("the log holds client bytes %q:\n%s", secret, out)
		}
	}
}
