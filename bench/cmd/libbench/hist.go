package main

import (
	"math/bits"
	"time"
)

// histogram counts latencies in log-linear buckets: exact below 64ns, then
// 32 buckets per power of two, so any value is known within about 3%. It is
// a fixed array: recording is an index computation and an increment, and
// merging two is a loop over the array. The zero value is empty and ready.
// A histogram is not safe for concurrent use; each worker keeps its own and
// they are merged after the run.
type histogram struct {
	counts [histBuckets]uint64
	total  uint64
}

const (
	histSubBits = 5                       // 32 sub-buckets per power of two
	histSub     = 1 << histSubBits        // 32
	histLinear  = 2 * histSub             // values below this have a bucket each
	histBuckets = histLinear + 57*histSub // below 2^63 ns, time.Duration's limit
)

// bucketOf returns the bucket of v nanoseconds.
func bucketOf(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	msb := bits.Len64(v) - 1   // >= 6
	shift := msb - histSubBits // >= 1
	mant := v >> uint(shift)   // in [32, 63]
	return histLinear + (shift-1)*histSub + int(mant-histSub)
}

// bucketRange returns the lowest value of bucket i and the lowest value of
// the next one.
func bucketRange(i int) (lo, hi uint64) {
	if i < histLinear {
		return uint64(i), uint64(i) + 1
	}
	j := i - histLinear
	shift := uint(j/histSub + 1)
	mant := uint64(j%histSub + histSub)
	return mant << shift, (mant + 1) << shift
}

// record adds one latency.
func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.total++
}

// merge adds every count of o into h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// quantile returns the latency at quantile q (0 < q <= 1): the middle of the
// bucket holding the ceil(q*total)-th smallest value. Zero when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > h.total {
		rank = h.total
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			return time.Duration(lo + (hi-lo)/2)
		}
	}
	return 0 // unreachable: the counts add up to total
}
