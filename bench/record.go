package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// recorder collects one sample per HTTP request. Requests that started
// (or, in open loop, were due) before the warm-up ended or after the
// measured window closed count only in the run totals that verification
// uses, never in the reported numbers. Safe for concurrent use.
type recorder struct {
	mu        sync.Mutex
	measureAt time.Time // end of the warm-up
	endAt     time.Time // end of the measured window: the deadline, or earlier when the scenario ended the run

	hist     *Histogram
	requests int64
	ops      int64 // ops carried (batch requests carry many)
	opsOK    int64 // ops that took effect
	statuses map[string]int64
	codes    map[string]int64
	seconds  []*secondStat

	// Whole run, warm-up included: what verification judges.
	allStatuses map[string]int64
	allCodes    map[string]int64
	allOpCodes  map[string]int64 // per-op problem codes inside batches

	// Since the last progress line.
	tick      *Histogram
	tickReqs  int64
	tickErrs  int64
	tickStart time.Time
}

// secondStat is one second of the measured window.
type secondStat struct {
	hist     *Histogram
	errors   int64 // no answer or 5xx
	rejected int64 // 4xx
}

func newRecorder(measureAt, endAt time.Time) *recorder {
	return &recorder{
		measureAt: measureAt, endAt: endAt, hist: newHistogram(), tick: newHistogram(), tickStart: time.Now(),
		statuses: map[string]int64{}, codes: map[string]int64{},
		allStatuses: map[string]int64{}, allCodes: map[string]int64{}, allOpCodes: map[string]int64{},
	}
}

// record adds one request that was due at start and answered r after lat.
// ops is the number of ops it carried and ok how many took effect.
func (rec *recorder) record(start time.Time, lat time.Duration, r reply, ops, ok int64) {
	key := r.statusKey()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.allStatuses[key]++
	if r.code != "" {
		rec.allCodes[r.code]++
	}
	rec.tick.Record(lat)
	rec.tickReqs++
	failed := r.unknown()
	if failed {
		rec.tickErrs++
	}
	if start.Before(rec.measureAt) || !start.Before(rec.endAt) {
		return
	}
	rec.hist.Record(lat)
	rec.requests++
	rec.ops += ops
	rec.opsOK += ok
	rec.statuses[key]++
	if r.code != "" {
		rec.codes[r.code]++
	}
	sec := int(start.Sub(rec.measureAt) / time.Second)
	for len(rec.seconds) <= sec {
		rec.seconds = append(rec.seconds, &secondStat{hist: newHistogram()})
	}
	s := rec.seconds[sec]
	s.hist.Record(lat)
	switch {
	case failed:
		s.errors++
	case r.status >= 400:
		s.rejected++
	}
}

// opCode counts a problem code of one op inside a batch.
func (rec *recorder) opCode(code string) {
	rec.mu.Lock()
	rec.allOpCodes[code]++
	rec.mu.Unlock()
}

// close ends the measured window at end, if that is before the deadline,
// for the throughput; requests recorded before close still count (when a
// flash sale sells out, the few sent between the last unit and the
// workers noticing).
func (rec *recorder) close(end time.Time) {
	rec.mu.Lock()
	if end.Before(rec.endAt) {
		rec.endAt = maxTime(end, rec.measureAt)
	}
	rec.mu.Unlock()
}

// progress writes one status line about the requests since the last one.
func (rec *recorder) progress(w io.Writer, now, runStart time.Time, inflight int64) {
	rec.mu.Lock()
	el := now.Sub(rec.tickStart).Seconds()
	phase := "measure"
	if rec.tickStart.Before(rec.measureAt) {
		phase = "warm-up"
	}
	line := fmt.Sprintf("[%5.1fs %s] %8.0f req/s  p50 %7.2fms  p99 %7.2fms  max %7.2fms  errors %d  in flight %d",
		now.Sub(runStart).Seconds(), phase, float64(rec.tickReqs)/max(el, 1e-9),
		ms(rec.tick.Percentile(50)), ms(rec.tick.Percentile(99)), ms(rec.tick.Max()), rec.tickErrs, inflight)
	rec.tick = newHistogram()
	rec.tickReqs, rec.tickErrs, rec.tickStart = 0, 0, now
	rec.mu.Unlock()
	fmt.Fprintln(w, line)
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func latencyOf(h *Histogram) Latency {
	return Latency{P50: ms(h.Percentile(50)), P90: ms(h.Percentile(90)), P99: ms(h.Percentile(99)),
		P999: ms(h.Percentile(99.9)), Max: ms(h.Max()), Mean: ms(h.Mean())}
}

// Second is one line of the per-second timeline.
type Second struct {
	Second   int     `json:"second"`
	Count    int64   `json:"count"`
	Errors   int64   `json:"errors"`
	Rejected int64   `json:"rejected"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

// Percentile is one point of the latency distribution.
type Percentile struct {
	Percentile float64 `json:"percentile"`
	MS         float64 `json:"ms"`
}

// measured is the snapshot of the measured window.
type measured struct {
	window     time.Duration
	requests   int64
	ops, opsOK int64
	latency    Latency
	statuses   map[string]int64
	codes      map[string]int64
	timeline   []Second
	curve      []Percentile

	allStatuses, allCodes, allOpCodes map[string]int64
}

// percentileLadder are the points of the distribution curve: 0, 50, 75,
// 87.5, ... halving the remainder each step, up to 99.999, then 100.
func percentileLadder() []float64 {
	var ps []float64
	rest := 100.0
	for rest > 0.001 {
		ps = append(ps, 100-rest)
		rest /= 2
	}
	return append(ps, 99.9, 99.99, 99.999, 100)
}

func (rec *recorder) snapshot() measured {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	m := measured{
		window: rec.endAt.Sub(rec.measureAt), requests: rec.requests, ops: rec.ops, opsOK: rec.opsOK,
		latency: latencyOf(rec.hist), statuses: maps.Clone(rec.statuses), codes: maps.Clone(rec.codes),
		allStatuses: maps.Clone(rec.allStatuses), allCodes: maps.Clone(rec.allCodes), allOpCodes: maps.Clone(rec.allOpCodes),
	}
	for i, s := range rec.seconds {
		m.timeline = append(m.timeline, Second{Second: i + 1, Count: int64(s.hist.Count()), Errors: s.errors,
			Rejected: s.rejected, P50: ms(s.hist.Percentile(50)), P99: ms(s.hist.Percentile(99)), Max: ms(s.hist.Max())})
	}
	if rec.hist.Count() > 0 {
		ps := percentileLadder()
		slices.Sort(ps)
		for _, p := range slices.Compact(ps) {
			m.curve = append(m.curve, Percentile{Percentile: p, MS: ms(rec.hist.Percentile(p))})
		}
	}
	return m
}

// formatCounts renders a count map as "201=100 409=3", keys sorted.
func formatCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}
