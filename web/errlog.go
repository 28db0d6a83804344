package web

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// errLog logs limiter errors without flooding: the first occurrence of each
// distinct message in an interval is logged, the rest only counted, and a
// summary line gives the count once the interval has passed (on the next
// error; no goroutine). It is safe for concurrent use.
type errLog struct {
	log      *slog.Logger
	interval time.Duration

	mu    sync.Mutex
	since time.Time
	seen  map[string]int
	total int
}

const errLogDistinct = 64 // distinct messages remembered per interval

func newErrLog(log *slog.Logger, interval time.Duration) *errLog {
	return &errLog{log: log, interval: interval, seen: make(map[string]int)}
}

// record notes one error for the identity hashed as keyHash (or the route
// that met it).
func (e *errLog) record(ctx context.Context, err error, keyHash string) {
	msg := err.Error()
	now := time.Now()
	e.mu.Lock()
	if e.since.IsZero() {
		e.since = now
	}
	if d := now.Sub(e.since); d >= e.interval && e.total > 0 {
		total, distinct := e.total, len(e.seen)
		e.since, e.total = now, 0
		clear(e.seen)
		e.mu.Unlock()
		e.log.LogAttrs(ctx, slog.LevelWarn, "limiter errors", slog.Int("count", total),
			slog.Int("distinct", distinct), slog.Duration("over", d.Round(time.Millisecond)))
		e.mu.Lock()
	}
	e.total++
	n, ok := e.seen[msg]
	if ok || len(e.seen) < errLogDistinct {
		e.seen[msg] = n + 1
	}
	e.mu.Unlock()
	if !ok {
		e.log.LogAttrs(ctx, slog.LevelError, "limiter error", slog.String("err", msg), slog.String("key_hash", keyHash))
	}
}
