package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestScheduleIntendedTimesDoNotDrift(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	for _, rate := range []int64{1, 3, 7, 10_000, 33_333, rateMax} {
		s := schedule{start: start, rate: rate, total: 1 << 40}
		// Whole seconds land exactly on the second, however many steps in.
		for _, k := range []int64{1, 10, 3600} {
			if got, want := s.intended(k*rate), start.Add(time.Duration(k)*time.Second); !got.Equal(want) {
				t.Errorf("rate %d: step %d at %v, want %v", rate, k*rate, got.Sub(start), want.Sub(start))
			}
		}
		// Steps are evenly spaced: no gap differs from 1/rate by more than
		// the 1 ns of integer rounding.
		step := time.Second / time.Duration(rate)
		for i := int64(0); i < 5000; i++ {
			gap := s.intended(i + 1).Sub(s.intended(i))
			if gap < step || gap > step+1 {
				t.Fatalf("rate %d: gap after step %d is %v, want %v", rate, i, gap, step)
			}
		}
	}
}

func TestScheduleDueIsTheInverseOfIntended(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	for _, rate := range []int64{1, 7, 10_000, 999_983} {
		s := schedule{start: start, rate: rate, total: 50_000}
		if got := s.due(start.Add(-time.Nanosecond)); got != 0 {
			t.Errorf("rate %d: due before start = %d, want 0", rate, got)
		}
		for i := int64(0); i < 2000; i++ {
			at := s.intended(i)
			if got := s.due(at); got != i+1 {
				t.Fatalf("rate %d: due at intended(%d) = %d, want %d", rate, i, got, i+1)
			}
			if got := s.due(at.Add(-time.Nanosecond)); got != i && !s.intended(i-1).Equal(at) {
				t.Fatalf("rate %d: due just before intended(%d) = %d, want %d", rate, i, got, i)
			}
		}
		if got := s.due(s.intended(s.total - 1).Add(time.Hour)); got != s.total {
			t.Errorf("rate %d: due after the end = %d, want total %d", rate, got, s.total)
		}
	}
}

func TestRunOpenSendsOnTimeWithoutDrift(t *testing.T) {
	const rate, total = 2000, 1000 // half a second
	s := schedule{start: time.Now().Add(10 * time.Millisecond), rate: rate, total: total}
	var mu sync.Mutex
	seen := make([]bool, total)
	var lags []time.Duration
	st := runOpen(context.Background(), s, 10_000, func() bool { return false }, func(i int64, at time.Time) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if !at.Equal(s.intended(i)) {
			t.Errorf("step %d: intended %v, want %v", i, at, s.intended(i))
		}
		if now.Before(at) {
			t.Errorf("step %d sent %v before its intended time", i, at.Sub(now))
		}
		seen[i] = true
		lags = append(lags, now.Sub(at))
	})
	for i, ok := range seen {
		if !ok {
			t.Fatalf("step %d never sent", i)
		}
	}
	if st.Sent != total || st.Dropped != 0 {
		t.Errorf("sent %d dropped %d, want %d and 0", st.Sent, st.Dropped, total)
	}
	// The sender may wake late (timers, the race detector, 2 cores) but
	// must catch up rather than drift: the last step goes out close to its
	// own intended time, not total × the per-step error later.
	last := lags[len(lags)-1]
	if late := time.Since(s.intended(total - 1)); late > 200*time.Millisecond {
		t.Errorf("finished %v after the last intended time (last lag %v): drift", late, last)
	}
}

func TestRunOpenDropsAtTheCapAndCountsIt(t *testing.T) {
	const limit = 5
	s := schedule{start: time.Now(), rate: 1000, total: 100}
	release := make(chan struct{})
	var started atomic.Int64
	go func() {
		// Hold the first requests until the timetable is over.
		time.Sleep(s.intended(s.total-1).Sub(time.Now()) + 20*time.Millisecond)
		close(release)
	}()
	st := runOpen(context.Background(), s, limit, func() bool { return false }, func(int64, time.Time) {
		started.Add(1)
		<-release
	})
	if st.Sent != limit || st.Dropped != s.total-limit || st.MaxInflight != limit {
		t.Errorf("sent %d dropped %d max in flight %d, want %d, %d, %d",
			st.Sent, st.Dropped, st.MaxInflight, limit, s.total-limit, limit)
	}
	if got := started.Load(); got != limit {
		t.Errorf("fired %d steps, want %d", got, limit)
	}
}

func TestRunOpenStopsWhenDone(t *testing.T) {
	s := schedule{start: time.Now(), rate: 1000, total: 1_000_000} // 1000 s if never stopped
	var n atomic.Int64
	t0 := time.Now()
	st := runOpen(context.Background(), s, 1000, func() bool { return n.Load() >= 50 }, func(int64, time.Time) { n.Add(1) })
	if !st.Stopped || time.Since(t0) > 5*time.Second {
		t.Errorf("stopped %v after %v, want an early stop", st.Stopped, time.Since(t0))
	}
}

func TestRunClosedIsBoundedByStepsAndDeadline(t *testing.T) {
	var n atomic.Int64
	runClosed(context.Background(), 8, 1000, time.Now().Add(time.Minute), func() bool { return false },
		func(int64, time.Time) { n.Add(1) })
	if got := n.Load(); got != 1000 {
		t.Errorf("ran %d steps, want the bound 1000", got)
	}
	t0 := time.Now()
	runClosed(context.Background(), 8, 1<<62, time.Now().Add(100*time.Millisecond), func() bool { return false },
		func(int64, time.Time) { time.Sleep(time.Millisecond) })
	if el := time.Since(t0); el > 2*time.Second {
		t.Errorf("closed loop ran %v past a 100ms deadline", el)
	}
}
