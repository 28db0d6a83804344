package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The ceiling: redis-benchmark sending EVALSHA of fixed_window.lua from 50
// connections, over -keys random keys, with no client library in the way.
const rbClients = 50

// rbCell is one redis-benchmark row of the table.
type rbCell struct {
	name     string
	pipeline int
}

var rbCells = []rbCell{
	{name: "redis-benchmark EVALSHA -c 50", pipeline: 1},
	{name: "redis-benchmark EVALSHA -c 50 -P 16", pipeline: 16},
}

// rbRefName is the row every library's ratio column is relative to.
var rbRefName = rbCells[1].name

// runRedisBenchmark runs redis-benchmark for about dur: it first sends a
// short calibration run to learn the request rate, then sizes -n for dur.
// The calibration's rate is reused across rounds through *n.
func runRedisBenchmark(ctx context.Context, cfg *config, c rbCell, sha, prefix string, n *int, dur time.Duration) *cellResult {
	if *n == 0 {
		cal := redisBenchmarkOnce(ctx, cfg, c, sha, prefix, 20000)
		if cal.setupErr != nil || cal.errors > 0 {
			return cal
		}
		*n = max(int(cal.rate()*dur.Seconds()), 20000)
	}
	return redisBenchmarkOnce(ctx, cfg, c, sha, prefix, *n)
}

func redisBenchmarkOnce(ctx context.Context, cfg *config, c rbCell, sha, prefix string, n int) *cellResult {
	host, port, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return &cellResult{setupErr: err}
	}
	args := []string{
		"-h", host, "-p", port,
		"-c", strconv.Itoa(rbClients),
		"-n", strconv.Itoa(n),
		"-r", strconv.Itoa(cfg.keys),
		"-P", strconv.Itoa(c.pipeline),
		"--csv",
		"EVALSHA", sha, "1", prefix + "__rand_int__",
		strconv.Itoa(benchLimit), strconv.FormatInt(benchWindow.Milliseconds(), 10), "1",
	}
	cmd := exec.CommandContext(ctx, cfg.redisBenchmark, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)
	text := out.String()
	if err != nil {
		return &cellResult{setupErr: fmt.Errorf("%s: %v: %s", cfg.redisBenchmark, err, firstLine(text))}
	}
	res := &cellResult{elapsed: elapsed, external: true}
	// redis-benchmark prints "Error from server: …" (at most about once a
	// second) instead of counting errors; any such line fails the cell.
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "Error") {
			res.errors++
			if res.firstErr == "" {
				res.firstErr = strings.TrimSpace(line)
			}
		}
	}
	rps, p50, p99, err := parseRedisBenchmarkCSV(text)
	if err != nil {
		if res.errors > 0 {
			return res
		}
		return &cellResult{setupErr: err}
	}
	res.decisions = uint64(n)
	res.rbRate, res.rbP50, res.rbP99 = rps, p50, p99
	return res
}

// parseRedisBenchmarkCSV reads redis-benchmark --csv output: a header line
// naming "rps", "p50_latency_ms" and "p99_latency_ms", and one row.
func parseRedisBenchmarkCSV(text string) (rps float64, p50, p99 time.Duration, err error) {
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "\"") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 2 {
		return 0, 0, 0, fmt.Errorf("redis-benchmark printed no result row: %q", firstLine(text))
	}
	recs, err := csv.NewReader(strings.NewReader(strings.Join(lines[:2], "\n"))).ReadAll()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("redis-benchmark output: %w", err)
	}
	head, row := recs[0], recs[1]
	col := func(name string) (float64, error) {
		for i, h := range head {
			if h == name && i < len(row) {
				return strconv.ParseFloat(row[i], 64)
			}
		}
		return 0, fmt.Errorf("redis-benchmark output has no %q column", name)
	}
	if rps, err = col("rps"); err != nil {
		return 0, 0, 0, err
	}
	ms := func(name string) (time.Duration, error) {
		v, err := col(name)
		return time.Duration(v * float64(time.Millisecond)), err
	}
	if p50, err = ms("p50_latency_ms"); err != nil {
		return 0, 0, 0, err
	}
	if p99, err = ms("p99_latency_ms"); err != nil {
		return 0, 0, 0, err
	}
	return rps, p50, p99, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
