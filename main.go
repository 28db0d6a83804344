// Command floodgate is the rate-limiting demo service: GET /api/ping answers
// PONG to each browser, identified by a signed cookie, 10 times per 10 seconds
// by default, and 429 beyond that; a page at / lets you try it. It is
// configured by environment variables only (see README.md), deploys to Heroku
// as a web dyno and runs with docker-compose.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one ends the process at once
		// rather than waiting for the graceful shutdown.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "floodgate:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down gracefully: in-flight
// requests finish, new connections are refused. listening, if not nil, is
// told the address once the server accepts connections.
func run(ctx context.Context, getenv func(string) string, stderr io.Writer, listening func(net.Addr)) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	if cfg.RandomKey {
		log.Warn("SECRET_KEY is not set: identity cookies are signed with a random per-process key, " +
			"so they will not survive a restart nor work across instances")
	}

	backend, err := openRedis(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer backend.close()

	lim := limiter.New(backend.pool,
		limiter.WithTimeout(cfg.RedisTimeout),
		limiter.WithDenyCache(cfg.DenyCache))
	go loadScript(ctx, lim, log)
	go checkEviction(ctx, backend, log)

	handler := web.New(web.Config{
		Limiter:          lim,
		Limit:            cfg.Limit,
		IPLimit:          cfg.IPLimit,
		FailMode:         cfg.FailMode,
		Keys:             cfg.Keys,
		TrustedProxyHops: cfg.ProxyHops,
		Logger:           log,
		Collectors:       backend.collectors(),
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", ":"+cfg.Port)
	if err != nil {
		return fmt.Errorf("PORT: listen: %w", err)
	}
	log.Info("floodgate listening", "addr", ln.Addr().String(), "limit", cfg.Limit.String(),
		"ip_limit", ipLimitString(cfg), "fail_mode", cfg.FailMode.String(), "redis", backend.describe,
		"redis_timeout", cfg.RedisTimeout)
	if listening != nil {
		listening(ln.Addr())
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "within", cfg.ShutdownIn)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownIn)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

func ipLimitString(cfg config) string {
	if cfg.IPLimit.IsZero() {
		return "off"
	}
	return cfg.IPLimit.String()
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loadScript loads the decision script at boot, so that a script Redis
// rejects shows in the log at once. While Redis is down it retries each
// second until Redis appears; decisions meanwhile follow the failure mode,
// and they load the script by themselves (EVAL on NOSCRIPT) once Redis is
// back, so nothing waits for this.
func loadScript(ctx context.Context, lim *limiter.Limiter, log *slog.Logger) {
	for attempt := 0; ; attempt++ {
		err := lim.Load(ctx)
		if err == nil {
			if attempt > 0 {
				log.Info("redis is up: decision script loaded")
			}
			return
		}
		if attempt == 0 {
			log.Warn("redis unavailable at boot; serving by the failure mode until it answers", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
