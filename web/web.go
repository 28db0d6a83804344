// Package web is floodgate's HTTP service: the tutorial's rate-limiting demo,
// done right. New returns a chi router serving
//
//	GET /           the demo page (embedded; no CDN)
//	GET /api/ping   PONG, 10 per 10s per browser by default; 406 without a
//	                valid identity cookie, 429 over the limit
//	GET /healthz    200 while the process runs
//	GET /readyz     200 when Redis answers PING, else 503
//	GET /metrics    Prometheus text format
//
// A browser is identified by the user-limiter cookie: 128 random bits and
// their HMAC-SHA256 under the service's key, issued on any response to a
// request without a valid one. A per-client-IP backstop limit caps what
// minting fresh cookies can buy. The router holds no package-level state and
// is safe for concurrent use.
package web

import (
	"context"
	"embed"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/httplimit"
)

//go:embed static
var static embed.FS

// Config is what New needs. Limiter, Limit and at least one key in Keys are
// required.
type Config struct {
	// Limiter decides; its timeout is the decision budget.
	Limiter *limiter.Limiter
	// Limit applies to each browser identity.
	Limit limiter.Limit
	// IPLimit applies to each client IP (IPv6: each /64) whatever its
	// cookies; the zero Limit turns the backstop off.
	IPLimit limiter.Limit
	// FailMode says how /api/ping answers when the limiter fails.
	FailMode httplimit.FailMode
	// Keys sign identity cookies: Keys[0] signs, all verify (key rotation).
	// Each must be at least MinSecretLen bytes.
	Keys [][]byte
	// TrustedProxyHops is the number of proxies in front that append to
	// X-Forwarded-For; 0 trusts no header.
	TrustedProxyHops int
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// Ready reports whether the service can decide; nil uses Limiter.Ping.
	Ready func(ctx context.Context) error
	// Collectors are registered on /metrics beside the service's own (such
	// as the Redis connections' statistics).
	Collectors []prometheus.Collector
}

type server struct {
	cfg     Config
	codec   *codec
	log     *slog.Logger
	metrics *metrics
	errs    *errLog
	limit   *httplimit.Enforcer
}

// New returns the service's router. It panics on an invalid Config: a
// missing Limiter, an invalid Limit, or a missing or short key.
func New(cfg Config) http.Handler {
	if cfg.Limiter == nil {
		panic("web: Config.Limiter is nil")
	}
	if err := cfg.Limit.Validate(); err != nil {
		panic("web: Config.Limit: " + err.Error())
	}
	if err := cfg.IPLimit.Validate(); err != nil && !cfg.IPLimit.IsZero() {
		panic("web: Config.IPLimit: " + err.Error())
	}
	codec, err := newCodec(cfg.Keys)
	if err != nil {
		panic(err.Error())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Ready == nil {
		cfg.Ready = cfg.Limiter.Ping
	}
	s := &server{cfg: cfg, codec: codec, log: cfg.Logger, metrics: newMetrics()}
	s.metrics.reg.MustRegister(cfg.Collectors...)
	s.errs = newErrLog(cfg.Logger, 10*time.Second)

	s.limit = httplimit.NewEnforcer(httplimit.Config{
		Limiter:  cfg.Limiter,
		FailMode: cfg.FailMode,
		OnError:  s.onError,
		Observe:  s.observe,
	})

	r := chi.NewRouter()
	r.Use(s.logRequests, securityHeaders, limitBody)
	// /api/ping verifies the identity itself; every other route issues one
	// when the request lacks a valid cookie.
	r.Get("/api/ping", s.ping)
	r.Group(func(r chi.Router) {
		r.Use(s.identify)
		r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
		r.Get("/readyz", s.readyz)
		r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
		files, err := fs.Sub(static, "static")
		if err != nil {
			panic(err) // the embedded tree is fixed at build time
		}
		r.Method(http.MethodGet, "/*", cacheStatic(http.FileServerFS(files)))
	})
	return r
}

// ping is GET /api/ping: 406 without a valid identity (a fresh cookie is
// set, so a browser's next try works, as in the tutorial), else the identity
// and the client IP are decided together and an allowed request gets PONG.
func (s *server) ping(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identity(w, r)
	if !ok {
		writeText(w, http.StatusNotAcceptable, "Not Acceptable: no valid user-limiter cookie; one has been set, so try again")
		return
	}
	var buf [2]limiter.Request
	reqs := append(buf[:0], limiter.Request{Key: id.hash(), Limit: s.cfg.Limit, N: 1})
	if !s.cfg.IPLimit.IsZero() {
		a, err := clientIP(r, s.cfg.TrustedProxyHops)
		if err != nil {
			writeText(w, http.StatusBadRequest, "Bad Request: "+err.Error())
			return
		}
		reqs = append(reqs, limiter.Request{Key: ipKey(a), Limit: s.cfg.IPLimit, N: 1})
	}
	if s.limit.Enforce(w, r, reqs...) {
		writeText(w, http.StatusOK, "PONG")
	}
}

func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h["Content-Type"] = textPlain
	h["Cache-Control"] = noStore
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

var (
	textPlain = []string{"text/plain; charset=utf-8"}
	noStore   = []string{"no-store"}
)

// identity verifies the request's identity cookie. Without a valid one it
// issues a fresh cookie and reports false; a cookie signed under a previous
// key is issued again under the current one.
func (s *server) identity(w http.ResponseWriter, r *http.Request) (identity, bool) {
	if v, ok := cookieValue(r); ok {
		if id, current, ok := s.codec.decode(v); ok {
			if !current {
				setCookie(w, s.codec.encode(id), s.isHTTPS(r))
			}
			return id, true
		}
		s.metrics.rejected.Inc()
	}
	setCookie(w, s.codec.encode(newIdentity()), s.isHTTPS(r))
	s.metrics.issued.Inc()
	return identity{}, false
}

// identify gives every response an identity cookie when the request has no
// valid one.
func (s *server) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.identity(w, r)
		next.ServeHTTP(w, r)
	})
}

// isHTTPS reports whether the request came over HTTPS: directly, or as a
// trusted proxy says in X-Forwarded-Proto.
func (s *server) isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if s.cfg.TrustedProxyHops == 0 {
		return false
	}
	// The last value, as the proxy next to us set or appended it.
	v := r.Header.Values("X-Forwarded-Proto")
	if len(v) == 0 {
		return false
	}
	last := v[len(v)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}

// onError counts and logs a limiter error; key is the identity's hash.
func (s *server) onError(r *http.Request, key string, err error) {
	s.metrics.errors.Inc()
	s.errs.record(r.Context(), err, key)
}

func (s *server) observe(_ *http.Request, o httplimit.Outcome, took time.Duration) {
	s.metrics.byOutcome[o].Inc()
	if took > 0 { // 0: answered by the deny cache, without Redis
		s.metrics.latency.Observe(took.Seconds())
	}
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := s.cfg.Ready(ctx); err != nil {
		// The reason goes to the log, not to whoever asked: it names
		// internal addresses.
		s.errs.record(r.Context(), err, "readyz")
		writeText(w, http.StatusServiceUnavailable, "not ready: Redis does not answer")
		return
	}
	writeText(w, http.StatusOK, "ready")
}

// securityHeaders sets the page's Content-Security-Policy (its own origin
// only), nosniff and a Referrer-Policy on every response.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Security-Policy"] = csp
		h["X-Content-Type-Options"] = nosniff
		h["Referrer-Policy"] = referrer
		h["X-Frame-Options"] = deny
		next.ServeHTTP(w, r)
	})
}

var (
	csp = []string{"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
		"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"}
	nosniff  = []string{"nosniff"}
	referrer = []string{"no-referrer"}
	deny     = []string{"DENY"}
)

// MaxBodyBytes bounds a request body: no route reads one, so a client
// cannot make the service buffer more than this.
const MaxBodyBytes = 4 << 10

// limitBody caps request bodies at MaxBodyBytes. Requests without a body,
// all of this service's proper ones, pass untouched and cost nothing.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

func cacheStatic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// logRequests logs one line per request at debug level; it costs nothing
// when debug is off.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.log.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		// The route's pattern, not the path: no client bytes reach the logs.
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
			slog.String("method", methodName(r.Method)), slog.String("route", route),
			slog.Int("status", sw.code), slog.Duration("took", time.Since(start)))
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// methodName returns r.Method for the standard methods and "other" for
// anything a client invented.
func methodName(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
