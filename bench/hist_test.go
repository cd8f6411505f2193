package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// refPercentile is the nearest-rank percentile of sorted values.
func refPercentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestHistogramPercentilesMatchSortedReference(t *testing.T) {
	dists := map[string]func(r *rand.Rand) time.Duration{
		"uniform-0-300us": func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(300)) * time.Microsecond },
		"lognormal-ms": func(r *rand.Rand) time.Duration {
			return time.Duration(math.Exp(r.NormFloat64()*1.5+7) * float64(time.Microsecond))
		},
		"bimodal-tail": func(r *rand.Rand) time.Duration {
			if r.IntN(1000) == 0 {
				return time.Duration(r.IntN(5000)) * time.Millisecond
			}
			return time.Duration(500+r.IntN(1500)) * time.Microsecond
		},
		"wide-1us-60s": func(r *rand.Rand) time.Duration {
			return time.Duration(math.Pow(10, r.Float64()*7.77)) * time.Microsecond
		},
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			h := newHistogram()
			vals := make([]time.Duration, 20000)
			for i := range vals {
				v := gen(r).Truncate(time.Microsecond)
				vals[i] = v
				h.Record(v)
			}
			slices.Sort(vals)
			for _, p := range []float64{0, 1, 50, 90, 99, 99.9, 99.99, 100} {
				want := refPercentile(vals, p)
				got := h.Percentile(p)
				// The bucket's highest value: never below the truth, at
				// most one bucket width (1/128 relative) above it.
				limit := want + time.Duration(float64(want)/histHalf) + time.Microsecond
				if got < want || got > limit {
					t.Errorf("p%v: got %v, want %v (<= %v)", p, got, want, limit)
				}
			}
			if got, want := h.Max(), vals[len(vals)-1]; got != want {
				t.Errorf("max: got %v, want %v", got, want)
			}
			if got, want := h.Min(), vals[0]; got != want {
				t.Errorf("min: got %v, want %v", got, want)
			}
			if got, want := h.Count(), uint64(len(vals)); got != want {
				t.Errorf("count: got %d, want %d", got, want)
			}
		})
	}
}

func TestHistogramBucketsAreContiguous(t *testing.T) {
	// Every value maps to a bucket whose highest value is >= it, and the
	// next value up either shares the bucket or starts the next one.
	for us := uint64(0); us < 1<<22; us++ {
		i := bucketIndex(us)
		if hi := bucketHigh(i); hi < us {
			t.Fatalf("value %d: bucket %d high %d below it", us, i, hi)
		}
		j := bucketIndex(us + 1)
		if j != i && j != i+1 {
			t.Fatalf("value %d -> bucket %d, value %d -> bucket %d: gap", us, i, us+1, j)
		}
		if j == i+1 && bucketHigh(i) != us {
			t.Fatalf("bucket %d ends at %d, want %d", i, bucketHigh(i), us)
		}
	}
	if got := bucketHigh(histBuckets - 1); got < uint64(histMax/time.Microsecond) {
		t.Errorf("top bucket ends at %d µs, below histMax", got)
	}
}

func TestHistogramMergeAndEmpty(t *testing.T) {
	a, b := newHistogram(), newHistogram()
	if a.Percentile(99) != 0 || a.Max() != 0 || a.Mean() != 0 {
		t.Errorf("empty histogram: got non-zero statistics")
	}
	for i := 1; i <= 100; i++ {
		a.Record(time.Duration(i) * time.Microsecond)
		b.Record(time.Duration(i+100) * time.Microsecond)
	}
	a.Merge(b)
	if got, want := a.Percentile(50), 100*time.Microsecond; got != want {
		t.Errorf("p50 after merge: got %v, want %v", got, want)
	}
	if got, want := a.Max(), 200*time.Microsecond; got != want {
		t.Errorf("max after merge: got %v, want %v", got, want)
	}
	over := newHistogram()
	over.Record(2 * histMax)
	if got := over.Max(); got != 2*histMax {
		t.Errorf("max beyond range: got %v, want %v", got, 2*histMax)
	}
}
