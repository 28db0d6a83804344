package web

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestErrLogDoesNotFlood: a thousand errors of two kinds make two lines, and
// once the interval has passed, one summary with the count.
func TestErrLogDoesNotFlood(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	e := newErrLog(slog.New(slog.NewTextHandler(&buf, nil)), 50*time.Millisecond)
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		e.record(ctx, errors.New("limiter: eval: i/o timeout"), "hash1")
		if i%2 == 0 {
			e.record(ctx, errors.New("limiter: get connection: refused"), "hash2")
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines for 1500 errors of 2 kinds, want 2:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "key_hash=hash1") {
		t.Errorf("the line lacks the key's hash:\n%s", buf.String())
	}
	time.Sleep(60 * time.Millisecond)
	e.record(ctx, errors.New("limiter: eval: i/o timeout"), "hash1")
	out := buf.String()
	if !strings.Contains(out, "limiter errors") || !strings.Contains(out, "count=1500") || !strings.Contains(out, "distinct=2") {
		t.Fatalf("no summary of 1500 errors, 2 distinct:\n%s", out)
	}
	if n := strings.Count(out, "\n"); n != 4 {
		t.Errorf("%d lines, want 4 (2 first occurrences, a summary, a first occurrence in the new interval):\n%s", n, out)
	}
}
