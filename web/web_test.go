package web_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/internal/redistest"
	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/httplimit"
	"github.com/go-floodgate/floodgate/web"
)

func TestMain(m *testing.M) { redistest.Main(m) }

var (
	key1 = bytes.Repeat([]byte("1"), 32)
	key2 = bytes.Repeat([]byte("2"), 32)
)

// countingPool counts the connections asked of it: a request that must not
// reach Redis must leave it at 0.
type countingPool struct {
	limiter.Pool
	gets atomic.Int64
	fail error // when set, every GetContext fails with it
}

func (p *countingPool) GetContext(ctx context.Context) (redis.Conn, error) {
	p.gets.Add(1)
	if p.fail != nil {
		return nil, p.fail
	}
	return p.Pool.GetContext(ctx)
}

type svc struct {
	h    http.Handler
	pool *countingPool
}

type option func(*web.Config, *[]limiter.Option)

func withIPLimit(n int) option {
	return func(c *web.Config, _ *[]limiter.Option) { c.IPLimit = limiter.Per(n, c.Limit.Period) }
}
func withHops(n int) option {
	return func(c *web.Config, _ *[]limiter.Option) { c.TrustedProxyHops = n }
}
func withKeys(k ...[]byte) option {
	return func(c *web.Config, _ *[]limiter.Option) { c.Keys = k }
}
func withFailMode(m httplimit.FailMode) option {
	return func(c *web.Config, _ *[]limiter.Option) { c.FailMode = m }
}
func withLimiterOpts(o ...limiter.Option) option {
	return func(_ *web.Config, lo *[]limiter.Option) { *lo = append(*lo, o...) }
}

// newSvc builds the service over pool with a limit of 10 per 10s and a prefix
// of the test's own.
func newSvc(t *testing.T, pool limiter.Pool, opts ...option) *svc {
	cp := &countingPool{Pool: pool}
	cfg := web.Config{Limit: limiter.Per(10, 10*time.Second), Keys: [][]byte{key1}}
	lopts := []limiter.Option{limiter.WithPrefix(redistest.Key(t) + "."), limiter.WithTimeout(100 * time.Millisecond)}
	for _, o := range opts {
		o(&cfg, &lopts)
	}
	cfg.Limiter = limiter.New(cp, lopts...)
	return &svc{h: web.New(cfg), pool: cp}
}

// newHandler is the service with the IP backstop off, for benchmarks.
func newHandler(pool limiter.Pool, l limiter.Limit, lopts ...limiter.Option) http.Handler {
	return web.New(web.Config{Limiter: limiter.New(pool, lopts...), Limit: l, Keys: [][]byte{key1}})
}

func sharedSvc(t *testing.T, opts ...option) *svc {
	return newSvc(t, redistest.Shared(t).Pool(t), opts...)
}

type req struct {
	path    string
	cookie  string
	remote  string
	headers map[string]string
	tls     bool
}

func (s *svc) do(r req) *http.Response {
	if r.path == "" {
		r.path = "/api/ping"
	}
	hr := httptest.NewRequest(http.MethodGet, r.path, nil)
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	if r.cookie != "" {
		hr.Header.Set("Cookie", web.CookieName+"="+r.cookie)
	}
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	if r.tls {
		hr.TLS = &tls.ConnectionState{}
	}
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, hr)
	return w.Result()
}

// issued returns the identity cookie a response sets, or nil.
func issued(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == web.CookieName {
			return c
		}
	}
	return nil
}

// cookie gets a fresh identity from the service.
func (s *svc) cookie(t *testing.T) string {
	t.Helper()
	c := issued(s.do(req{path: "/healthz"}))
	if c == nil {
		t.Fatal("no cookie issued")
	}
	return c.Value
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestTutorialSequence: 10 × 200 with Remaining 9…0, then 429.
func TestTutorialSequence(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t)
	c := s.cookie(t)
	for i := 1; i <= 12; i++ {
		resp := s.do(req{cookie: c})
		h := resp.Header
		if i <= 10 {
			if resp.StatusCode != 200 || body(resp) != "PONG" {
				t.Fatalf("step %d: got %d, want 200 PONG", i, resp.StatusCode)
			}
			if got, want := h.Get("X-RateLimit-Remaining"), strconv.Itoa(10-i); got != want {
				t.Errorf("step %d: Remaining %q, want %q", i, got, want)
			}
			if h.Get("Retry-After") != "" {
				t.Errorf("step %d: Retry-After on a 200", i)
			}
		} else {
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("step %d: got %d, want 429", i, resp.StatusCode)
			}
			if h.Get("X-RateLimit-Remaining") != "0" {
				t.Errorf("step %d: Remaining %q, want 0", i, h.Get("X-RateLimit-Remaining"))
			}
			if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 10 {
				t.Errorf("step %d: Retry-After %q, want 1..10", i, h.Get("Retry-After"))
			}
		}
		if h.Get("X-RateLimit-Limit") != "10" {
			t.Errorf("step %d: Limit %q, want 10", i, h.Get("X-RateLimit-Limit"))
		}
		if r, err := strconv.Atoi(h.Get("X-RateLimit-Reset")); err != nil || r < 1 || r > 10 {
			t.Errorf("step %d: Reset %q, want 1..10", i, h.Get("X-RateLimit-Reset"))
		}
		if issued(resp) != nil {
			t.Errorf("step %d: a valid cookie was replaced", i)
		}
	}
}

func TestCookieAttributes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		r      req
		hops   int
		secure bool
	}{
		{"plain http", req{path: "/"}, 0, false},
		{"direct https", req{path: "/", tls: true}, 0, true},
		{"https from a trusted proxy", req{path: "/", headers: map[string]string{"X-Forwarded-Proto": "https"}}, 1, true},
		{"X-Forwarded-Proto without a trusted proxy", req{path: "/", headers: map[string]string{"X-Forwarded-Proto": "https"}}, 0, false},
		{"appended X-Forwarded-Proto, last https", req{path: "/", headers: map[string]string{"X-Forwarded-Proto": "http, https"}}, 1, true},
		{"appended X-Forwarded-Proto, last http", req{path: "/", headers: map[string]string{"X-Forwarded-Proto": "https, http"}}, 1, false},
		{"api", req{}, 0, false},
		{"health", req{path: "/healthz"}, 0, false},
	}
	for _, tt := range tests {
		s := sharedSvc(t, withHops(tt.hops))
		c := issued(s.do(tt.r))
		if c == nil {
			t.Errorf("%s: no cookie", tt.name)
			continue
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure != tt.secure || len(c.Value) != 64 {
			t.Errorf("%s: cookie %+v; want HttpOnly, SameSite=Lax, Path=/, Secure=%v, 64 characters", tt.name, c, tt.secure)
		}
	}
}

func TestPage(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t)
	tests := []struct{ path, ctype string }{
		{"/", "text/html"},
		{"/app.js", "text/javascript"},
		{"/style.css", "text/css"},
		{"/favicon.svg", "image/svg+xml"},
	}
	for _, tt := range tests {
		resp := s.do(req{path: tt.path})
		b := body(resp)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.ctype) {
			t.Errorf("%s: %d %q, want 200 %s", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), tt.ctype)
		}
		if strings.Contains(b, "http://") || strings.Contains(b, "https://") {
			if tt.path != "/favicon.svg" || strings.Count(b, "http") != strings.Count(b, "http://www.w3.org/2000/svg") {
				t.Errorf("%s refers to another origin", tt.path)
			}
		}
		h := resp.Header
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" {
			t.Errorf("%s: security headers missing: %v", tt.path, h)
		}
	}
	if got := s.pool.gets.Load(); got != 0 {
		t.Errorf("serving the page asked Redis %d times", got)
	}
}

func TestNoCookie406ThenRetryWorks(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t)
	resp := s.do(req{})
	if resp.StatusCode != http.StatusNotAcceptable {
		t.Fatalf("got %d, want 406", resp.StatusCode)
	}
	c := issued(resp)
	if c == nil {
		t.Fatal("406 without a fresh cookie")
	}
	if resp.Header.Get("X-RateLimit-Limit") != "" {
		t.Error("406 with limit headers")
	}
	if resp := s.do(req{cookie: c.Value}); resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "9" {
		t.Fatalf("retry with the cookie: %d, Remaining %q", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
	}
}

// TestBadCookies: every kind of bad cookie is answered 406 with a fresh
// cookie, and no Redis command is sent for it.
func TestBadCookies(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t)
	good := s.cookie(t)
	other := sharedSvc(t, withKeys(key2)).cookie(t)
	raw := mustB64(t, good)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x40
		return b64(b)
	}
	tests := []struct{ name, value string }{
		{"empty", ""},
		{"garbage", "garbage"},
		{"wrong length", good[:40]},
		{"one character more", good + "A"},
		{"bad base64", strings.Repeat("!", 64)},
		{"hex", strings.Repeat("0f", 32)},
		{"truncated signature", b64(raw[:len(raw)-3])},
		{"tampered id", flip(2)},
		{"tampered signature", flip(40)},
		{"another key's signature", other},
		{"control bytes", "\x01\x02\x03" + good[3:]},
		{"8 KB", strings.Repeat("A", 8<<10)},
	}
	for _, tt := range tests {
		before := s.pool.gets.Load()
		hr := httptest.NewRequest(http.MethodGet, "/api/ping", nil)
		hr.Header.Set("Cookie", web.CookieName+"="+tt.value)
		w := httptest.NewRecorder()
		s.h.ServeHTTP(w, hr)
		resp := w.Result()
		if resp.StatusCode != http.StatusNotAcceptable {
			t.Errorf("%s: got %d, want 406", tt.name, resp.StatusCode)
		}
		if c := issued(resp); c == nil || c.Value == tt.value {
			t.Errorf("%s: no fresh cookie", tt.name)
		}
		if got := s.pool.gets.Load() - before; got != 0 {
			t.Errorf("%s: %d Redis calls, want 0", tt.name, got)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	before := newSvc(t, srv.Pool(t), withKeys(key1))
	c := before.cookie(t)
	after := newSvc(t, srv.Pool(t), withKeys(key2, key1))
	resp := after.do(req{cookie: c})
	if resp.StatusCode != 200 {
		t.Fatalf("a cookie under SECRET_KEY_PREVIOUS: got %d, want 200", resp.StatusCode)
	}
	reissued := issued(resp)
	if reissued == nil || reissued.Value == c {
		t.Fatal("the cookie was not re-issued under the new key")
	}
	// The re-issued cookie is the same identity: it continues the count.
	resp = after.do(req{cookie: reissued.Value})
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "8" || issued(resp) != nil {
		t.Fatalf("re-issued cookie: %d, Remaining %q, re-issued again %v", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"), issued(resp) != nil)
	}
	// Once the previous key is dropped, old cookies are refused.
	if resp := newSvc(t, srv.Pool(t), withKeys(key2)).do(req{cookie: c}); resp.StatusCode != http.StatusNotAcceptable {
		t.Fatalf("old cookie after the previous key was dropped: %d, want 406", resp.StatusCode)
	}
}

func TestBrowsersLimitedSeparately(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t)
	a, b := s.cookie(t), s.cookie(t)
	for i := 0; i < 10; i++ {
		s.do(req{cookie: a})
	}
	if resp := s.do(req{cookie: a}); resp.StatusCode != 429 {
		t.Fatalf("a's 11th: %d, want 429", resp.StatusCode)
	}
	if resp := s.do(req{cookie: b}); resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "9" {
		t.Fatalf("b's first: %d, Remaining %q", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
	}
}

// TestCookieRotationCappedByBackstop: a client minting a fresh cookie per
// request gets no more than the IP limit.
func TestCookieRotationCappedByBackstop(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t, withIPLimit(15))
	ok, denied := 0, 0
	for i := 0; i < 25; i++ {
		c := s.cookie(t)
		resp := s.do(req{cookie: c, remote: "198.51.100.7:4000"})
		switch resp.StatusCode {
		case 200:
			ok++
			// The headers describe the limit closest to running out: the
			// fresh cookie's (9 left) until the IP has fewer left.
			limit, rem := "10", 9
			if 15-ok < 9 {
				limit, rem = "15", 15-ok
			}
			if resp.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(rem) || resp.Header.Get("X-RateLimit-Limit") != limit {
				t.Errorf("request %d: Limit %q Remaining %q, want %s and %d", i, resp.Header.Get("X-RateLimit-Limit"), resp.Header.Get("X-RateLimit-Remaining"), limit, rem)
			}
		case 429:
			denied++
		default:
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if ok != 15 || denied != 10 {
		t.Fatalf("allowed %d, denied %d; want 15 and 10", ok, denied)
	}
	// Another IP is not affected.
	if resp := s.do(req{cookie: s.cookie(t), remote: "198.51.100.8:4000"}); resp.StatusCode != 200 {
		t.Fatalf("another IP: %d", resp.StatusCode)
	}
}

func TestProxyHeaders(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t, withIPLimit(3), withHops(1))
	const proxy = "10.9.9.9:443"
	// One client spoofing a different left-hand entry on every request is still one client.
	for i := 0; i < 5; i++ {
		xff := "6.6.6." + strconv.Itoa(i) + ", 203.0.113.50"
		resp := s.do(req{cookie: s.cookie(t), remote: proxy, headers: map[string]string{"X-Forwarded-For": xff}})
		want := 200
		if i >= 3 {
			want = 429
		}
		if resp.StatusCode != want {
			t.Errorf("spoofing request %d: got %d, want %d", i, resp.StatusCode, want)
		}
	}
	// A second client behind the same proxy has a budget of its own.
	resp := s.do(req{cookie: s.cookie(t), remote: proxy, headers: map[string]string{"X-Forwarded-For": "203.0.113.51"}})
	if resp.StatusCode != 200 {
		t.Errorf("second client behind the proxy: %d, want 200", resp.StatusCode)
	}
	// Garbage where the proxy's entry should be is a 400, not a Redis key.
	before := s.pool.gets.Load()
	resp = s.do(req{cookie: s.cookie(t), remote: proxy, headers: map[string]string{"X-Forwarded-For": "not-an-ip"}})
	if resp.StatusCode != http.StatusBadRequest || s.pool.gets.Load() != before {
		t.Errorf("garbage X-Forwarded-For: %d and %d Redis calls; want 400 and none", resp.StatusCode, s.pool.gets.Load()-before)
	}
}

func TestFailureModes(t *testing.T) {
	t.Parallel()
	down := errors.New("redis is down")
	tests := []struct {
		mode      httplimit.FailMode
		code      int
		retry     string
		pongBody  bool
		outcome   string
		readyCode int
	}{
		{httplimit.FailOpen, 200, "", true, "failed_open", 503},
		{httplimit.FailClosed, 503, "1", false, "failed_closed", 503},
	}
	for _, tt := range tests {
		s := newSvc(t, redistest.Shared(t).Pool(t), withFailMode(tt.mode))
		s.pool.fail = down
		c := s.cookie(t)
		resp := s.do(req{cookie: c})
		if resp.StatusCode != tt.code || resp.Header.Get("Retry-After") != tt.retry {
			t.Errorf("%v: got %d Retry-After %q, want %d %q", tt.mode, resp.StatusCode, resp.Header.Get("Retry-After"), tt.code, tt.retry)
		}
		if resp.Header.Get("X-RateLimit-Limit") != "" || resp.Header.Get("X-RateLimit-Remaining") != "" {
			t.Errorf("%v: limit headers on a limiter failure", tt.mode)
		}
		if (body(resp) == "PONG") != tt.pongBody {
			t.Errorf("%v: body PONG = %v, want %v", tt.mode, !tt.pongBody, tt.pongBody)
		}
		if resp := s.do(req{path: "/readyz"}); resp.StatusCode != tt.readyCode || strings.Contains(body(resp), down.Error()) {
			t.Errorf("%v: /readyz %d, want %d, and no internal error in its body", tt.mode, resp.StatusCode, tt.readyCode)
		}
		if m := body(s.do(req{path: "/metrics"})); !strings.Contains(m, `floodgate_decisions_total{outcome="`+tt.outcome+`"} 1`) ||
			!strings.Contains(m, "floodgate_limiter_errors_total 1") {
			t.Errorf("%v: metrics do not count the failure:\n%s", tt.mode, grep(m, "floodgate_"))
		}
	}
}

// TestSlowRedis: a paused Redis is answered per the failure mode within the
// budget plus slack, never 429.
func TestSlowRedis(t *testing.T) {
	srv := redistest.Start(t)
	for _, tt := range []struct {
		mode httplimit.FailMode
		code int
	}{{httplimit.FailOpen, 200}, {httplimit.FailClosed, 503}} {
		s := newSvc(t, srv.Pool(t), withFailMode(tt.mode))
		c := s.cookie(t)
		if resp := s.do(req{cookie: c}); resp.StatusCode != 200 {
			t.Fatalf("%v: before the pause: %d", tt.mode, resp.StatusCode)
		}
		srv.Pause(t)
		for i := 0; i < 3; i++ {
			start := time.Now()
			resp := s.do(req{cookie: c})
			took := time.Since(start)
			if resp.StatusCode != tt.code {
				t.Errorf("%v: paused: got %d, want %d", tt.mode, resp.StatusCode, tt.code)
			}
			if took > 100*time.Millisecond+50*time.Millisecond {
				t.Errorf("%v: paused: answered after %v, budget 100ms", tt.mode, took)
			}
		}
		srv.Resume(t)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t)
	if resp := s.do(req{path: "/healthz"}); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	if resp := s.do(req{path: "/readyz"}); resp.StatusCode != 200 {
		t.Errorf("/readyz: %d", resp.StatusCode)
	}
	c := s.cookie(t)
	for i := 0; i < 12; i++ {
		s.do(req{cookie: c})
	}
	resp := s.do(req{path: "/metrics"})
	m := body(resp)
	for _, want := range []string{
		`floodgate_decisions_total{outcome="allowed"} 10`,
		`floodgate_decisions_total{outcome="denied"} 2`,
		`floodgate_decision_duration_seconds_count`,
		`floodgate_limiter_errors_total 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics Content-Type %q", resp.Header.Get("Content-Type"))
	}
}

// TestDeniedFloodSkipsRedis: once a browser's window is spent, its requests
// are answered locally until the window resets.
func TestDeniedFloodSkipsRedis(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t, withIPLimit(100), withLimiterOpts(limiter.WithDenyCache(1000)))
	c := s.cookie(t)
	for i := 0; i < 10; i++ {
		if resp := s.do(req{cookie: c}); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	before := s.pool.gets.Load()
	for i := 0; i < 100; i++ {
		resp := s.do(req{cookie: c})
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-RateLimit-Remaining") != "0" {
			t.Fatalf("flood request %d: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	if got := s.pool.gets.Load() - before; got != 0 {
		t.Errorf("the flood cost Redis %d calls, want 0", got)
	}
}

func TestMethodsAndUnknownPaths(t *testing.T) {
	t.Parallel()
	s := sharedSvc(t)
	hr := httptest.NewRequest(http.MethodPost, "/api/ping", strings.NewReader("x"))
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, hr)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/ping: %d, want 405", w.Code)
	}
	if resp := s.do(req{path: "/no/such/thing"}); resp.StatusCode != 404 {
		t.Errorf("unknown path: %d, want 404", resp.StatusCode)
	}
	if s.pool.gets.Load() != 0 {
		t.Error("Redis was asked")
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustB64(t *testing.T, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
