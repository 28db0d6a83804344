// Command libbench measures floodgate's decision throughput and latency
// against other Go rate-limiting libraries on Redis, and against
// redis-benchmark sending the same script with no client library, all on
// one local Redis, one cell at a time.
//
//	cd bench && go run ./cmd/libbench [-duration 10s] [-rounds 2] [-goroutines 1,16,64]
//	        [-keys 10000] [-redis host:port] [-only floodgate,rueidis]
//
// Without -redis it starts its own redis-server from PATH on a free
// loopback port (no persistence), flushes it between cells and stops it at
// the end. With -redis it never flushes: each run writes under its own key
// prefix and deletes its keys at the end. See README.md for how to read the
// table.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/go-floodgate/floodgate/scripts"
)

// config is what every cell needs to know.
type config struct {
	addr           string        // the Redis under test
	keys           int           // distinct keys per library
	timeout        time.Duration // floodgate's per-decision budget
	runTag         string        // in every key this run writes
	redisBenchmark string        // path of redis-benchmark, "" if none
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "libbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		duration   = flag.Duration("duration", 10*time.Second, "measured time of each cell (one library at one goroutine count)")
		warmup     = flag.Duration("warmup", 500*time.Millisecond, "unmeasured time before each cell's measurement")
		keys       = flag.Int("keys", 10000, "distinct keys per library, taken round robin")
		goroutines = flag.String("goroutines", "1,16,64", "comma-separated goroutine counts")
		addr       = flag.String("redis", "", "host:port of a Redis to use (never flushed); default: start redis-server from PATH")
		only       = flag.String("only", "", "comma-separated, case-insensitive substrings of the rows to run (e.g. floodgate,rueidis,redis-benchmark)")
		rounds     = flag.Int("rounds", 2, "times each cell runs, in alternating order; the table shows the median")
		timeout    = flag.Duration("timeout", time.Second, "floodgate's limiter.WithTimeout (0: none)")
		rbPath     = flag.String("redis-benchmark", "redis-benchmark", "redis-benchmark binary (looked up in PATH, then /usr/bin)")
		refName    = flag.String("ref", "rueidislimiter", "row the second ratio column is relative to, at the same goroutine count")
		out        = flag.String("out", "", "also write the table to this file")
	)
	flag.Parse()
	gs, err := parseInts(*goroutines)
	if err != nil {
		return fmt.Errorf("-goroutines: %w", err)
	}
	if *keys < 1 || *rounds < 1 || *duration <= 0 || *warmup < 0 {
		return fmt.Errorf("-keys and -rounds must be at least 1, -duration positive, -warmup not negative")
	}
	refExplicit := false
	flag.Visit(func(f *flag.Flag) { refExplicit = refExplicit || f.Name == "ref" })

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tag := make([]byte, 4)
	rand.Read(tag)
	cfg := &config{keys: *keys, timeout: *timeout, runTag: "fgbench-" + hex.EncodeToString(tag), addr: *addr}
	cfg.redisBenchmark = lookRedisBenchmark(*rbPath)

	// The Redis: ours (flushed between cells, stopped at the end) or the
	// one given (never flushed; our keys deleted at the end).
	var own *ownRedis
	if cfg.addr == "" {
		// redis-server is killed if this thread dies: keep main on it.
		runtime.LockOSThread()
		if own, err = startRedis(ctx); err != nil {
			return err
		}
		defer own.stop()
		cfg.addr = own.addr
	}
	version, err := redisVersion(ctx, cfg.addr)
	if err != nil {
		return fmt.Errorf("redis at %s: %w", cfg.addr, err)
	}
	sha, err := loadScript(ctx, cfg.addr)
	if err != nil {
		return err
	}

	// The cells, in roster order; each round runs them all.
	match := matcher(*only)
	var cells []cell
	var rows []*row
	for _, lib := range libraries() {
		if !match(lib.name) {
			continue
		}
		if lib.unavailable != "" {
			rows = append(rows, &row{name: lib.name, unavailable: lib.unavailable})
			continue
		}
		for _, g := range gs {
			r := &row{name: lib.name, g: g}
			rows = append(rows, r)
			cells = append(cells, cell{row: r, lib: lib, g: g})
		}
	}
	rbN := make([]int, len(rbCells))
	for i, rb := range rbCells {
		if !match(rb.name) {
			continue
		}
		r := &row{name: rb.name, g: rbClients, external: true}
		if cfg.redisBenchmark == "" {
			r.unavailable = "redis-benchmark not found (-redis-benchmark)"
			rows = append(rows, r)
			continue
		}
		rows = append(rows, r)
		cells = append(cells, cell{row: r, rb: &rbCells[i], rbN: &rbN[i]})
	}
	if len(cells) == 0 {
		return fmt.Errorf("-only %q matches nothing that can run", *only)
	}

	total := len(cells) * *rounds
	fmt.Fprintf(os.Stderr, "libbench: %d cells × %d rounds, about %v; Redis %s at %s\n",
		len(cells), *rounds, time.Duration(total)*(*duration+*warmup), version, cfg.addr)
	done := 0
	for round := 0; round < *rounds && ctx.Err() == nil; round++ {
		for _, c := range roundOrder(cells, round, *rounds) {
			if ctx.Err() != nil {
				break
			}
			if own != nil {
				if err := flushAll(ctx, cfg.addr); err != nil {
					return fmt.Errorf("flush own redis: %w", err)
				}
			}
			prefix := fmt.Sprintf("%s-r%d-%s:", cfg.runTag, round, c.slug())
			var res *cellResult
			if c.rb != nil {
				res = runRedisBenchmark(ctx, cfg, *c.rb, sha, prefix, c.rbN, *duration)
			} else {
				res = runLibrary(ctx, cfg, c.lib, c.g, prefix, *warmup, *duration)
			}
			if ctx.Err() != nil {
				break
			}
			c.row.results = append(c.row.results, res)
			done++
			fmt.Fprintf(os.Stderr, "[%d/%d] %s\n", done, total, progressLine(c.row, res))
		}
	}
	if own == nil {
		if n, err := deleteRunKeys(context.Background(), cfg.addr, cfg.runTag); err != nil {
			fmt.Fprintf(os.Stderr, "libbench: deleting this run's keys from %s: %v\n", cfg.addr, err)
		} else {
			fmt.Fprintf(os.Stderr, "libbench: deleted this run's %d keys from %s\n", n, cfg.addr)
		}
	}

	redisDesc := fmt.Sprintf("Redis %s, own redis-server on %s (--save \"\" --appendonly no)", version, cfg.addr)
	if own == nil {
		redisDesc = fmt.Sprintf("Redis %s at %s (given with -redis, not flushed)", version, cfg.addr)
	}
	rep := report{
		rows:        rows,
		refName:     *refName,
		refExplicit: refExplicit,
		header: fmt.Sprintf("machine: nproc %d, CPU %s, %s (GOMAXPROCS %d), %s",
			runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOMAXPROCS(0), redisDesc),
		settings: fmt.Sprintf("cells: -duration %v (after -warmup %v), -keys %d, -rounds %d (median shown), -timeout %v; modules: %s",
			*duration, *warmup, *keys, *rounds, *timeout, moduleVersions()),
		libs: libraries(),
	}
	if ctx.Err() != nil {
		rep.settings += "; INTERRUPTED: partial results"
	}
	table := rep.String()
	fmt.Print(table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cell is one library (or one redis-benchmark setting) at one goroutine
// count; each round measures it once into its row.
type cell struct {
	row *row
	lib library
	g   int
	rb  *rbCell
	rbN *int
}

func (c cell) slug() string {
	if c.rb != nil {
		return "rb" + strconv.Itoa(c.rb.pipeline)
	}
	return c.lib.slug
}

// roundOrder is the order of the cells in a round: the roster's order,
// rotated by a share of the list each round, and reversed on odd rounds, so
// that no library always runs first or right after the same neighbour and
// a slow drift of the machine spreads over every library.
func roundOrder(cells []cell, round, rounds int) []cell {
	n := len(cells)
	shift := round * n / rounds
	order := make([]cell, 0, n)
	for i := range cells {
		order = append(order, cells[(i+shift)%n])
	}
	if round%2 == 1 {
		for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
			order[i], order[j] = order[j], order[i]
		}
	}
	return order
}

// runLibrary sets lib up for g goroutines, runs one cell and closes it.
func runLibrary(ctx context.Context, cfg *config, lib library, g int, prefix string, warmup, dur time.Duration) *cellResult {
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	d, err := lib.setup(setupCtx, cfg, g)
	cancel()
	if err != nil {
		return &cellResult{setupErr: fmt.Errorf("setup: %w", err)}
	}
	defer d.close()
	return runCell(ctx, d, g, keySet(prefix, cfg.keys), warmup, dur)
}

// loadScript puts fixed_window.lua in the script cache for redis-benchmark's
// EVALSHA and returns its SHA1.
func loadScript(ctx context.Context, addr string) (string, error) {
	c, err := adminConn(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	sha, err := redis.String(c.Do("SCRIPT", "LOAD", scripts.FixedWindow))
	if err != nil {
		return "", fmt.Errorf("SCRIPT LOAD fixed_window.lua: %w", err)
	}
	return sha, nil
}

func lookRedisBenchmark(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p, err := exec.LookPath("/usr/bin/redis-benchmark"); err == nil && name == "redis-benchmark" {
		return p
	}
	return ""
}

// matcher returns whether a row name is selected by -only.
func matcher(only string) func(string) bool {
	var subs []string
	for _, s := range strings.Split(only, ",") {
		if s = strings.TrimSpace(strings.ToLower(s)); s != "" {
			subs = append(subs, s)
		}
	}
	return func(name string) bool {
		if len(subs) == 0 {
			return true
		}
		name = strings.ToLower(name)
		for _, s := range subs {
			if strings.Contains(name, s) {
				return true
			}
		}
		return false
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no goroutine count in %q", s)
	}
	return out, nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
