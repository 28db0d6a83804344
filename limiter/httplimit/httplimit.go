// Package httplimit is HTTP middleware over a limiter.Limiter: a plain
// func(http.Handler) http.Handler that works with net/http and chi.
//
// For each request it decides every Rule in one round trip to Redis, writes
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset for the rule
// closest to running out, and answers 429 Too Many Requests with Retry-After
// when any rule denies. A limiter error is never answered with 429: the
// FailMode decides, serving the request without limit headers (FailOpen) or
// answering 503 Service Unavailable with Retry-After: 1 (FailClosed).
//
// The middleware is safe for concurrent use; it keeps no state of its own.
package httplimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-floodgate/floodgate/limiter"
)

// FailMode says what to do with a request when the limiter fails (Redis down,
// slow beyond the budget, or erring).
type FailMode int

const (
	// FailOpen serves the request as if allowed, without limit headers.
	FailOpen FailMode = iota
	// FailClosed answers 503 with Retry-After: 1.
	FailClosed
)

// ParseFailMode parses "open" or "closed".
func ParseFailMode(s string) (FailMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "open":
		return FailOpen, nil
	case "closed":
		return FailClosed, nil
	}
	return 0, fmt.Errorf("httplimit: fail mode %q: want open or closed", s)
}

// String returns "open" or "closed".
func (m FailMode) String() string {
	if m == FailClosed {
		return "closed"
	}
	return "open"
}

// Outcome is what the middleware did with one request.
type Outcome int

const (
	// Allowed: every rule allowed the request.
	Allowed Outcome = iota
	// Denied: a rule denied it; answered 429.
	Denied
	// FailedOpen: the limiter failed; served under FailOpen.
	FailedOpen
	// FailedClosed: the limiter failed; answered 503 under FailClosed.
	FailedClosed
)

// String names the outcome as metrics label it.
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Denied:
		return "denied"
	case FailedOpen:
		return "failed_open"
	default:
		return "failed_closed"
	}
}

// Rule is one limit applied to requests.
type Rule struct {
	// Name says what the rule limits ("user", "ip"), for logs and metrics.
	Name string
	// Limit is the rule's limit.
	Limit limiter.Limit
	// Key returns the limiter key for a request. An error answers the request
	// 400 Bad Request without asking Redis; return keys of fixed length (a
	// hash) rather than client bytes.
	Key func(r *http.Request) (string, error)
}

// Config configures New. Limiter and at least one Rule are required.
type Config struct {
	Limiter *limiter.Limiter
	Rules   []Rule
	// FailMode applies to limiter errors; the zero value is FailOpen.
	FailMode FailMode
	// OnError, if set, is told of every limiter error (for logging), with
	// the limiter key of the request's first rule.
	OnError func(r *http.Request, key string, err error)
	// Observe, if set, is told the outcome of every decision and how long the
	// limiter took (for metrics); took is 0 for a request refused by the
	// limiter's deny cache, without Redis.
	Observe func(r *http.Request, o Outcome, took time.Duration)
	// Denied, if set, writes the 429 response's body after the headers are
	// set; by default the body is "Too Many Requests".
	Denied http.Handler
}

// New returns middleware limiting requests by cfg. It panics when cfg has no
// Limiter or no Rules, or a Rule without Key or with an invalid Limit: those
// are programming errors.
func New(cfg Config) func(http.Handler) http.Handler {
	if len(cfg.Rules) == 0 {
		panic("httplimit: New needs at least one Rule")
	}
	for _, r := range cfg.Rules {
		if r.Key == nil {
			panic("httplimit: Rule " + r.Name + " has no Key")
		}
		if err := r.Limit.Validate(); err != nil {
			panic("httplimit: Rule " + r.Name + ": " + err.Error())
		}
	}
	e := NewEnforcer(cfg)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var buf [4]limiter.Request
			reqs := buf[:0]
			for _, rule := range cfg.Rules {
				key, err := rule.Key(r)
				if err != nil {
					http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
					return
				}
				reqs = append(reqs, limiter.Request{Key: key, Limit: rule.Limit, N: 1})
			}
			if e.Enforce(w, r, reqs...) {
				next.ServeHTTP(w, r)
			}
		})
	}
}

// Enforcer decides requests and answers those it refuses; it is the
// middleware's engine, for handlers that build their limiter requests
// themselves. It is safe for concurrent use.
type Enforcer struct {
	cfg Config
}

// NewEnforcer returns an Enforcer; cfg.Rules is not used. It panics without
// a Limiter.
func NewEnforcer(cfg Config) *Enforcer {
	if cfg.Limiter == nil {
		panic("httplimit: no Limiter")
	}
	return &Enforcer{cfg: cfg}
}

// Enforce decides reqs in one round trip (or locally, when one of them is
// known to be spent) and reports whether the caller should serve the
// request. When it returns false it has answered: 429 with the headers, or
// 503 under FailClosed. When it returns true it has set the rate-limit
// headers, unless the limiter failed under FailOpen.
func (e *Enforcer) Enforce(w http.ResponseWriter, r *http.Request, reqs ...limiter.Request) bool {
	if len(reqs) == 0 {
		panic("httplimit: Enforce with no requests")
	}
	cfg := &e.cfg
	// With several limits, one already known spent refuses the request
	// locally, without Redis and without spending the others. (A lone
	// limit's AllowN consults the deny cache itself.)
	if len(reqs) > 1 {
		for _, req := range reqs {
			if res, ok := cfg.Limiter.Denied(req.Key, req.Limit); ok {
				return e.refuse(w, r, res, 0)
			}
		}
	}
	start := time.Now()
	var res limiter.Result
	var err error
	if len(reqs) == 1 {
		n := reqs[0].N
		if n == 0 {
			n = 1 // as AllowAll counts it
		}
		res, err = cfg.Limiter.AllowN(r.Context(), reqs[0].Key, reqs[0].Limit, n)
	} else {
		var results []limiter.Result
		if results, err = cfg.Limiter.AllowAll(r.Context(), reqs...); err == nil {
			res = Binding(results)
		}
	}
	took := time.Since(start)
	if err != nil {
		// A request whose own client went away is not the limiter's failure
		// to report, but it is answered the same way.
		if cfg.OnError != nil && !errors.Is(r.Context().Err(), context.Canceled) {
			cfg.OnError(r, reqs[0].Key, err)
		}
		o := Fail(w, cfg.FailMode)
		if cfg.Observe != nil {
			cfg.Observe(r, o, took)
		}
		return o == FailedOpen
	}
	if res.Cached {
		took = 0 // answered locally: no Redis time to observe
	}
	if !res.Allowed {
		return e.refuse(w, r, res, took)
	}
	WriteHeaders(w.Header(), res)
	if cfg.Observe != nil {
		cfg.Observe(r, Allowed, took)
	}
	return true
}

// refuse answers a denied request: the headers, then 429.
func (e *Enforcer) refuse(w http.ResponseWriter, r *http.Request, res limiter.Result, took time.Duration) bool {
	WriteHeaders(w.Header(), res)
	if e.cfg.Observe != nil {
		e.cfg.Observe(r, Denied, took)
	}
	WriteDenied(w, r, res, e.cfg.Denied)
	return false
}

// Fail applies mode to a limiter error: under FailClosed it answers 503 with
// Retry-After: 1; under FailOpen it writes nothing and the caller serves the
// request. It returns the outcome. This is the one place the failure policy
// is applied.
func Fail(w http.ResponseWriter, mode FailMode) Outcome {
	if mode == FailOpen {
		return FailedOpen
	}
	w.Header()["Retry-After"] = one
	http.Error(w, "Service Unavailable: rate limiter unavailable", http.StatusServiceUnavailable)
	return FailedClosed
}

var one = []string{"1"}

// Binding returns the result that governs a request decided under several
// rules: a denial if any (the one lasting longest), else the allowance with
// the fewest requests remaining (the first of them on a tie).
func Binding(results []limiter.Result) limiter.Result {
	best := results[0]
	for _, r := range results[1:] {
		switch {
		case best.Allowed && !r.Allowed:
			best = r
		case !best.Allowed && !r.Allowed:
			if r.RetryAfter > best.RetryAfter {
				best = r
			}
		case best.Allowed && r.Allowed:
			if r.Remaining < best.Remaining {
				best = r
			}
		}
	}
	return best
}

// WriteHeaders sets X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset (whole seconds until the window resets, rounded up) from
// res, and Retry-After (whole seconds, rounded up, at least 1) when res is a
// denial. The values of small numbers are shared, preallocated slices:
// replace a header's value (Header.Set) rather than edit it in place.
func WriteHeaders(h http.Header, res limiter.Result) {
	h["X-Ratelimit-Limit"] = itoa(res.Limit.Count)
	h["X-Ratelimit-Remaining"] = itoa(res.Remaining)
	h["X-Ratelimit-Reset"] = itoa(ceilSeconds(res.ResetAfter))
	if !res.Allowed {
		retry := ceilSeconds(res.RetryAfter)
		if retry < 1 {
			retry = 1
		}
		h["Retry-After"] = itoa(retry)
	}
}

// WriteDenied answers 429 Too Many Requests, with body written by body if it
// is not nil. The rate-limit headers must already be set (WriteHeaders).
func WriteDenied(w http.ResponseWriter, r *http.Request, res limiter.Result, body http.Handler) {
	if body != nil {
		w.Header().Del("Content-Length")
		w.WriteHeader(http.StatusTooManyRequests)
		body.ServeHTTP(w, r)
		return
	}
	http.Error(w, "Too Many Requests", http.StatusTooManyRequests)
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// small holds the header values of small integers, so that writing the
// headers of a typical decision allocates nothing.
var small = func() [][]string {
	s := make([][]string, 1024)
	for i := range s {
		s[i] = []string{strconv.Itoa(i)}
	}
	return s
}()

func itoa(n int) []string {
	if n >= 0 && n < len(small) {
		return small[n]
	}
	return []string{strconv.Itoa(n)}
}
