// Command soak checks floodgate's exactness under sustained load: N limiter
// instances (each with its own pipelining Mux, as N app instances would have)
// × M goroutines hammer K identities on one Redis for a while, then every
// identity's admitted decisions are grouped by window and checked against the
// limit. It prints the totals and exits 1 if any window admitted more than
// the limit, or if any decision failed.
//
//	cd bench && go run ./cmd/soak                       # 4 × 32 for 60s, its own redis-server
//	go run ./cmd/soak -instances 2 -conns 16 -duration 10s -redis 127.0.0.1:6379
//
// A window is known by when it ends: the time a decision returned plus the
// ResetAfter Redis reported (Redis's clock, millisecond precision). Windows of
// one key never overlap, so their ends are at least a window apart, and ends
// within half a window of each other are the same window.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-floodgate/floodgate/limiter"
	"github.com/go-floodgate/floodgate/limiter/pipeline"
)

func main() {
	instances := flag.Int("instances", 4, "limiter instances, each with its own Mux")
	conns := flag.Int("conns", 32, "goroutines per instance")
	identities := flag.Int("identities", 1000, "distinct identities")
	limit := flag.Int("limit", 50, "requests per window per identity")
	window := flag.Duration("window", time.Second, "window length")
	duration := flag.Duration("duration", time.Minute, "how long to run")
	addr := flag.String("redis", "", "Redis host:port (default: start redis-server on a free loopback port)")
	flag.Parse()
	if err := run(*instances, *conns, *identities, *limit, *window, *duration, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

type admit struct {
	id  int32
	end time.Time // when the decision's window ends
}

func run(instances, conns, identities, limit int, window, duration time.Duration, addr string) error {
	if addr == "" {
		a, stop, err := startRedis()
		if err != nil {
			return err
		}
		defer stop()
		addr = a
	}
	prefix := "soak." + strconv.FormatInt(time.Now().UnixNano(), 36) + "."
	l := limiter.Per(limit, window)

	var decisions, errs atomic.Int64
	var mu sync.Mutex
	var admits []admit
	var wg sync.WaitGroup
	deadline := time.Now().Add(duration)
	start := time.Now()
	for i := 0; i < instances; i++ {
		mux := pipeline.New(pipeline.Dial("tcp", addr))
		defer mux.Close()
		lim := limiter.New(mux, limiter.WithPrefix(prefix), limiter.WithTimeout(time.Second))
		for g := 0; g < conns; g++ {
			wg.Add(1)
			go func(seed int) {
				defer wg.Done()
				local := make([]admit, 0, 1<<16)
				ctx := context.Background()
				for n := seed; time.Now().Before(deadline); n += 7919 {
					id := n % identities
					res, err := lim.Allow(ctx, strconv.Itoa(id), l)
					decisions.Add(1)
					if err != nil {
						errs.Add(1)
						continue
					}
					if res.Allowed {
						local = append(local, admit{int32(id), time.Now().Add(res.ResetAfter)})
					}
				}
				mu.Lock()
				admits = append(admits, local...)
				mu.Unlock()
			}(i*conns + g)
		}
	}
	wg.Wait()
	took := time.Since(start)

	byID := make([][]time.Time, identities)
	for _, a := range admits {
		byID[a.id] = append(byID[a.id], a.end)
	}
	var windows, full, over, maxAdmitted int
	for _, ends := range byID {
		sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
		var first time.Time
		n := 0
		flush := func() {
			if n == 0 {
				return
			}
			windows++
			if n == limit {
				full++
			}
			if n > limit {
				over++
			}
			maxAdmitted = max(maxAdmitted, n)
		}
		for _, e := range ends {
			if n == 0 || e.Sub(first) > window/2 {
				flush()
				first, n = e, 0
			}
			n++
		}
		flush()
	}
	fmt.Printf("machine: %d cores, %s; Redis at %s\n", runtime.NumCPU(), runtime.Version(), addr)
	fmt.Printf("%d instances × %d goroutines, %d identities, limit %v, for %v\n", instances, conns, identities, l, took.Round(time.Millisecond))
	fmt.Printf("decisions: %d (%.0f/s), errors: %d\n", decisions.Load(), float64(decisions.Load())/took.Seconds(), errs.Load())
	fmt.Printf("admitted: %d in %d identity-windows; windows filled to the limit: %d; max admitted in one window: %d (limit %d); windows over the limit: %d\n",
		len(admits), windows, full, maxAdmitted, limit, over)
	if over > 0 || errs.Load() > 0 {
		return fmt.Errorf("%d windows over the limit, %d errors", over, errs.Load())
	}
	fmt.Println("OK: no identity was admitted more than the limit in any window")
	return nil
}

func startRedis() (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("redis-server: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, func() { cmd.Process.Kill(); cmd.Wait() }, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	return "", nil, fmt.Errorf("redis-server on %s did not start", addr)
}
