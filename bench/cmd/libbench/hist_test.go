package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueInOrder(t *testing.T) {
	prevHi := uint64(0)
	for i := 0; i < histBuckets; i++ {
		lo, hi := bucketRange(i)
		if lo != prevHi {
			t.Fatalf("bucket %d starts at %d, want %d (the previous bucket's end)", i, lo, prevHi)
		}
		if hi <= lo {
			t.Fatalf("bucket %d is [%d, %d)", i, lo, hi)
		}
		for _, v := range []uint64{lo, hi - 1, lo + (hi-lo)/2} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		if i >= histLinear && float64(hi-lo)/float64(lo) > 1.0/histSub+1e-9 {
			t.Fatalf("bucket %d [%d, %d) is wider than 1/%d of its start", i, lo, hi, histSub)
		}
		prevHi = hi
	}
	if got := bucketOf(math.MaxInt64); got >= histBuckets {
		t.Fatalf("bucketOf(MaxInt64) = %d, past the %d buckets", got, histBuckets)
	}
}

func TestQuantileMatchesSortedSample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h, a, b histogram
	var all []time.Duration
	for i := 0; i < 200000; i++ {
		// Log-normal-ish latencies from ~1µs to ~100ms.
		d := time.Duration(math.Exp(r.NormFloat64()*1.5+11) + 1)
		all = append(all, d)
		h.record(d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(&b)
	if a != h {
		t.Fatal("merging two halves differs from recording the whole")
	}
	slices.Sort(all)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		want := all[int(math.Ceil(q*float64(len(all))))-1]
		got := h.quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.02 {
			t.Errorf("quantile(%v) = %v, want %v within 2%% (off by %.1f%%)", q, got, want, rel*100)
		}
	}
	var empty histogram
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %v, want 0", got)
	}
}

func TestParseRedisBenchmarkCSV(t *testing.T) {
	out := `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"EVALSHA 4d66e8 1 k:__rand_int__ 1073741824 3600000 1","59701.49","0.695","0.128","0.671","1.047","1.327","2.879"
`
	rps, p50, p99, err := parseRedisBenchmarkCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	if rps != 59701.49 || p50 != 671*time.Microsecond || p99 != 1327*time.Microsecond {
		t.Errorf("got rps %v p50 %v p99 %v", rps, p50, p99)
	}
	if _, _, _, err := parseRedisBenchmarkCSV("Error from server: NOSCRIPT\n" + out[:strings.Index(out, "\n")+1]); err == nil {
		t.Error("a header without a row parsed")
	}
}

func TestMedianAndFormatting(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median of 3 = %v", got)
	}
	if got := median([]float64{4, 1}); got != 2.5 {
		t.Errorf("median of 2 = %v", got)
	}
	for _, tt := range []struct {
		v    float64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {1234567.4, "1,234,567"}} {
		if got := thousands(tt.v); got != tt.want {
			t.Errorf("thousands(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestRoundOrderIsAPermutation(t *testing.T) {
	cells := make([]cell, 7)
	for i := range cells {
		cells[i].g = i
	}
	for round := 0; round < 4; round++ {
		seen := map[int]bool{}
		for _, c := range roundOrder(cells, round, 4) {
			seen[c.g] = true
		}
		if len(seen) != len(cells) {
			t.Errorf("round %d runs %d distinct cells, want %d", round, len(seen), len(cells))
		}
	}
}
