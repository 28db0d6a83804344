package main

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// cellResult is one measurement of one library at one goroutine count.
type cellResult struct {
	decisions uint64        // decisions completed, allowed or denied, in the measured span
	errors    uint64        // decisions that returned an error
	denied    uint64        // decisions answered "not allowed" (none expected)
	elapsed   time.Duration // the measured span
	hist      histogram     // latency of every measured call, errors included
	firstErr  string        // one error, as an example
	setupErr  error         // the library could not be set up: nothing measured

	// Set for redis-benchmark, which measures for itself: its requests per
	// second and latency percentiles, used instead of the fields above.
	external     bool
	rbRate       float64
	rbP50, rbP99 time.Duration
}

// rate is decisions per second.
func (r *cellResult) rate() float64 {
	if r.external {
		return r.rbRate
	}
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.decisions) / r.elapsed.Seconds()
}

// p50 and p99 are the latency percentiles of one call.
func (r *cellResult) p50() time.Duration {
	if r.external {
		return r.rbP50
	}
	return r.hist.quantile(0.50)
}

func (r *cellResult) p99() time.Duration {
	if r.external {
		return r.rbP99
	}
	return r.hist.quantile(0.99)
}

// Phases of a cell, read by every worker before each call.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// keySet returns the n distinct keys a library uses in one cell:
// prefix + "0" … prefix + "n-1".
func keySet(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	return keys
}

// runCell runs g goroutines that call d.decide back to back, each on the
// next key of keys (worker w takes keys w, w+g, w+2g, … modulo len(keys), so
// together they go round the key set in order), for warmup and then for
// dur. Only calls started during dur are counted and timed; decisions per
// second are those calls over dur.
func runCell(ctx context.Context, d *decider, g int, keys []string, warmup, dur time.Duration) *cellResult {
	var phase atomic.Int32
	type worker struct {
		decisions, errors, denied uint64
		hist                      histogram
		firstErr                  string
	}
	workers := make([]worker, g)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func(me *worker, idx int) {
			defer wg.Done()
			n := len(keys)
			for {
				p := phase.Load()
				if p == phaseStop {
					return
				}
				key := keys[idx]
				if idx += g; idx >= n {
					idx %= n
				}
				start := time.Now()
				allowed, err := d.decide(ctx, key)
				lat := time.Since(start)
				if p != phaseMeasure {
					continue
				}
				me.hist.record(lat)
				me.decisions++
				switch {
				case err != nil:
					me.errors++
					if me.firstErr == "" {
						me.firstErr = err.Error()
					}
				case !allowed:
					me.denied++
				}
			}
		}(&workers[w], w%len(keys))
	}

	sleepCtx(ctx, warmup)
	start := time.Now()
	phase.Store(phaseMeasure)
	sleepCtx(ctx, dur)
	phase.Store(phaseStop)
	elapsed := time.Since(start)
	wg.Wait()

	res := &cellResult{elapsed: elapsed}
	for i := range workers {
		w := &workers[i]
		res.decisions += w.decisions
		res.errors += w.errors
		res.denied += w.denied
		res.hist.merge(&w.hist)
		if res.firstErr == "" {
			res.firstErr = w.firstErr
		}
	}
	// Errors are counted apart and not as decisions made.
	res.decisions -= res.errors
	return res
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
