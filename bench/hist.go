package main

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, in the manner of HdrHistogram: values are
// whole microseconds; below histSubCount they are counted exactly, above it
// each power of two is split into histHalf equal buckets, so a bucket is at
// most 1/histHalf (0.78%, a little over two significant digits) wide
// relative to its values. It covers 1 µs .. histMax (60 s); larger values
// land in the top bucket and are still reported exactly by Max.
const (
	histSubBits  = 8
	histSubCount = 1 << histSubBits // 256 exact buckets for 0..255 µs
	histHalf     = histSubCount / 2 // buckets per power of two above that
	histMax      = 60 * time.Second
)

// histBuckets is the number of counters: enough for histMax in µs.
var histBuckets = bucketIndex(uint64(histMax/time.Microsecond)) + 1

// Histogram counts latencies. It is not safe for concurrent use; the
// recorder guards it. Its zero value is not ready: use newHistogram.
type Histogram struct {
	counts []uint64
	n      uint64
	sumUS  float64
	minUS  uint64
	maxUS  uint64
}

func newHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, histBuckets), minUS: math.MaxUint64}
}

// bucketIndex maps a value in µs to its counter.
func bucketIndex(us uint64) int {
	if us < histSubCount {
		return int(us)
	}
	shift := bits.Len64(us) - histSubBits // >= 1
	sub := us >> shift                    // histHalf .. histSubCount-1
	return histSubCount + (shift-1)*histHalf + int(sub-histHalf)
}

// bucketHigh is the largest value (µs) that maps to bucket i.
func bucketHigh(i int) uint64 {
	if i < histSubCount {
		return uint64(i)
	}
	k := i - histSubCount
	shift := k/histHalf + 1
	sub := uint64(k%histHalf + histHalf)
	return (sub+1)<<shift - 1
}

// Record adds one latency. Negative durations count as 0.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	i := bucketIndex(us)
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i]++
	h.n++
	h.sumUS += float64(us)
	h.minUS = min(h.minUS, us)
	h.maxUS = max(h.maxUS, us)
}

// Merge adds every count of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sumUS += o.sumUS
	h.minUS = min(h.minUS, o.minUS)
	h.maxUS = max(h.maxUS, o.maxUS)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value, exact.
func (h *Histogram) Max() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.maxUS) * time.Microsecond
}

// Min is the smallest recorded value, exact.
func (h *Histogram) Min() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.minUS) * time.Microsecond
}

// Mean is the average of the recorded values (µs resolution).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sumUS/float64(h.n)) * time.Microsecond
}

// Percentile returns the value at percentile p (0..100) by nearest rank:
// the smallest recorded value v such that at least p% of the values are
// <= v. It answers the highest value of that value's bucket (never below
// the true one, at most 0.78% above it) and never more than Max.
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.n)))
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			us := min(bucketHigh(i), h.maxUS)
			us = max(us, h.minUS)
			return time.Duration(us) * time.Microsecond
		}
	}
	return h.Max()
}
