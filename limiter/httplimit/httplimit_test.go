package httplimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/go-chi/chi/v5"
	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/httplimit"
)

func TestParseFailMode(t *testing.T) {
	tests := []struct {
		in   string
		want httplimit.FailMode
		err  bool
	}{
		{"open", httplimit.FailOpen, false},
		{"closed", httplimit.FailClosed, false},
		{" Closed ", httplimit.FailClosed, false},
		{"", 0, true},
		{"shut", 0, true},
	}
	for _, tt := range tests {
		got, err := httplimit.ParseFailMode(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseFailMode(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestWriteHeaders(t *testing.T) {
	l := limiter.Per(10, 10*time.Second)
	tests := []struct {
		res                         limiter.Result
		limit, remaining, reset, ra string
	}{
		{limiter.Result{Allowed: true, Limit: l, Remaining: 9, ResetAfter: 10 * time.Second}, "10", "9", "10", ""},
		{limiter.Result{Allowed: true, Limit: l, Remaining: 0, ResetAfter: 1001 * time.Millisecond}, "10", "0", "2", ""},
		{limiter.Result{Allowed: false, Limit: l, ResetAfter: 2500 * time.Millisecond, RetryAfter: 2500 * time.Millisecond}, "10", "0", "3", "3"},
		{limiter.Result{Allowed: false, Limit: l, ResetAfter: time.Millisecond, RetryAfter: time.Millisecond}, "10", "0", "1", "1"},
		{limiter.Result{Allowed: false, Limit: limiter.Per(5000, time.Hour), ResetAfter: time.Hour, RetryAfter: time.Hour}, "5000", "0", "3600", "3600"},
	}
	for i, tt := range tests {
		h := http.Header{}
		httplimit.WriteHeaders(h, tt.res)
		if h.Get("X-RateLimit-Limit") != tt.limit || h.Get("X-RateLimit-Remaining") != tt.remaining ||
			h.Get("X-RateLimit-Reset") != tt.reset || h.Get("Retry-After") != tt.ra {
			t.Errorf("step %d: got %v, want limit %s remaining %s reset %s retry-after %q", i, h, tt.limit, tt.remaining, tt.reset, tt.ra)
		}
	}
}

func TestBinding(t *testing.T) {
	a := limiter.Result{Allowed: true, Remaining: 5}
	b := limiter.Result{Allowed: true, Remaining: 2}
	d1 := limiter.Result{Allowed: false, RetryAfter: time.Second}
	d2 := limiter.Result{Allowed: false, RetryAfter: 3 * time.Second}
	tests := []struct {
		in   []limiter.Result
		want limiter.Result
	}{
		{[]limiter.Result{a}, a},
		{[]limiter.Result{a, b}, b},
		{[]limiter.Result{b, a}, b},
		{[]limiter.Result{a, d1}, d1},
		{[]limiter.Result{d1, a}, d1},
		{[]limiter.Result{d1, d2}, d2},
		{[]limiter.Result{d2, d1, a}, d2},
	}
	for i, tt := range tests {
		if got := httplimit.Binding(tt.in); got != tt.want {
			t.Errorf("step %d: got %+v, want %+v", i, got, tt.want)
		}
	}
}

// TestMiddlewareWithChiAndNetHTTP: the same middleware on a chi router and on
// a plain ServeMux, keyed by a header.
func TestMiddlewareWithChiAndNetHTTP(t *testing.T) {
	mr := miniredis.RunT(t)
	pool := &redis.Pool{DialContext: func(ctx context.Context) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", mr.Addr())
	}}
	t.Cleanup(func() { pool.Close() })
	mw := httplimit.New(httplimit.Config{
		Limiter: limiter.New(pool),
		Rules: []httplimit.Rule{{Name: "api-key", Limit: limiter.PerMinute(2), Key: func(r *http.Request) (string, error) {
			return "k:" + r.Header.Get("X-Api-Key"), nil
		}}},
	})
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	cr := chi.NewRouter()
	cr.With(mw).Get("/", ok)
	mux := http.NewServeMux()
	mux.Handle("/", mw(ok))
	for name, h := range map[string]http.Handler{"chi": cr, "net/http": mux} {
		steps := []struct {
			key  string
			code int
		}{{name + "a", 200}, {name + "a", 200}, {name + "a", 429}, {name + "b", 200}}
		for i, s := range steps {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("X-Api-Key", s.key)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != s.code {
				t.Errorf("%s step %d: got %d, want %d", name, i, w.Code, s.code)
			}
		}
	}
}

func TestNewPanicsOnMisuse(t *testing.T) {
	lim := limiter.New(&redis.Pool{})
	for name, cfg := range map[string]httplimit.Config{
		"no limiter": {Rules: []httplimit.Rule{{Limit: limiter.PerSecond(1), Key: func(*http.Request) (string, error) { return "", nil }}}},
		"no rules":   {Limiter: lim},
		"no key":     {Limiter: lim, Rules: []httplimit.Rule{{Limit: limiter.PerSecond(1)}}},
		"bad limit":  {Limiter: lim, Rules: []httplimit.Rule{{Key: func(*http.Request) (string, error) { return "", nil }}}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			httplimit.New(cfg)
		}()
	}
}

// TestEnforceCost: a request's cost counts the same with one rule as with
// several, and a zero cost counts as 1.
func TestEnforceCost(t *testing.T) {
	mr := miniredis.RunT(t)
	pool := &redis.Pool{DialContext: func(ctx context.Context) (redis.Conn, error) {
		return redis.DialContext(ctx, "tcp", mr.Addr())
	}}
	t.Cleanup(func() { pool.Close() })
	e := httplimit.NewEnforcer(httplimit.Config{Limiter: limiter.New(pool)})
	l := limiter.PerMinute(5)
	steps := []struct {
		reqs      []limiter.Request
		remaining string
	}{
		{[]limiter.Request{{Key: "one", Limit: l, N: 3}}, "2"},
		{[]limiter.Request{{Key: "one", Limit: l}}, "1"},
		{[]limiter.Request{{Key: "two", Limit: l, N: 3}, {Key: "three", Limit: limiter.PerMinute(50), N: 3}}, "2"},
	}
	for i, s := range steps {
		w := httptest.NewRecorder()
		if !e.Enforce(w, httptest.NewRequest(http.MethodGet, "/", nil), s.reqs...) {
			t.Fatalf("step %d: refused: %d", i, w.Code)
		}
		if got := w.Header().Get("X-RateLimit-Remaining"); got != s.remaining {
			t.Errorf("step %d: Remaining %q, want %q", i, got, s.remaining)
		}
	}
}
