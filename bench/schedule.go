package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// schedule is the open-loop timetable: step i is due at start + i/rate
// seconds, computed from i each time (integer nanoseconds), so the
// timetable cannot drift however long the run and however late the sender.
type schedule struct {
	start time.Time
	rate  int64 // steps per second, 1 .. rateMax
	total int64 // steps in the run; the timetable ends there
}

// rateMax bounds -rate so that offsets in nanoseconds times the rate stay
// inside int64 for runs of up to durationMax.
const rateMax = 1_000_000

// intended is the time step i should be sent.
func (s schedule) intended(i int64) time.Time {
	return s.start.Add(time.Duration(i * int64(time.Second) / s.rate))
}

// due is how many steps (0 .. total) are due at now: those with
// intended(i) <= now. With d = now - start in ns, floor(i*1e9/rate) <= d
// holds exactly for i*1e9 < (d+1)*rate, so the count is
// ceil((d+1)*rate / 1e9).
func (s schedule) due(now time.Time) int64 {
	d := now.Sub(s.start)
	if d < 0 {
		return 0
	}
	if d > 2*durationMax { // keeps (d+1)*rate inside int64
		return s.total
	}
	n := ((int64(d)+1)*s.rate + int64(time.Second) - 1) / int64(time.Second)
	return min(n, s.total)
}

// openStats is what the open-loop sender saw of itself.
type openStats struct {
	Sent        int64         `json:"sent"`
	Dropped     int64         `json:"dropped"`      // due while max-inflight requests were outstanding: never sent
	Late        int64         `json:"late"`         // sent more than lateAfter past their intended time
	MaxLag      time.Duration `json:"-"`            // largest send delay past the intended time
	MaxLagMS    float64       `json:"max_lag_ms"`   // the same, for JSON
	MaxInflight int64         `json:"max_inflight"` // most steps outstanding at once
	Cap         int64         `json:"cap"`
	Stopped     bool          `json:"stopped_early"` // the scenario ended the run before the timetable did
}

// lateAfter is the send delay past which a step counts as late. Its
// latency still runs from the intended time; the count only says the
// sender, not the service, fell behind.
const lateAfter = time.Millisecond

// runOpen sends the steps of s at their intended times, each on its own
// goroutine, and waits for the last to finish. At most limit steps are
// outstanding: a step due while limit are in flight is dropped and
// counted, never queued, so the sender never waits on the service. It stops
// early when ctx ends or done reports true. fire is called with the step
// number and its intended send time.
func runOpen(ctx context.Context, s schedule, limit int64, done func() bool,
	fire func(i int64, intended time.Time)) openStats {
	st := openStats{Cap: limit}
	var inflight atomic.Int64
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	next := int64(0)
	for next < s.total {
		if ctx.Err() != nil || done() {
			st.Stopped = true
			break
		}
		now := time.Now()
		due := s.due(now)
		for ; next < due; next++ {
			if inflight.Load() >= limit {
				st.Dropped++
				continue
			}
			at := s.intended(next)
			if lag := now.Sub(at); lag > lateAfter {
				st.Late++
				st.MaxLag = max(st.MaxLag, lag)
			}
			st.MaxInflight = max(st.MaxInflight, inflight.Add(1))
			st.Sent++
			wg.Add(1)
			go func(i int64, at time.Time) {
				defer wg.Done()
				defer inflight.Add(-1)
				fire(i, at)
			}(next, at)
		}
		if next >= s.total {
			break
		}
		if wait := time.Until(s.intended(next)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
	}
	wg.Wait()
	st.MaxLagMS = ms(st.MaxLag)
	return st
}

// runClosed runs workers goroutines, each sending its next step as soon as
// the last one finished, until maxSteps steps were started, the deadline
// passed, ctx ended or done reports true. fire gets the step number and
// the time it was started.
func runClosed(ctx context.Context, workers int, maxSteps int64, deadline time.Time, done func() bool,
	fire func(i int64, start time.Time)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				now := time.Now()
				if ctx.Err() != nil || done() || !now.Before(deadline) {
					return
				}
				i := next.Add(1) - 1
				if i >= maxSteps {
					return
				}
				fire(i, now)
			}
		}()
	}
	wg.Wait()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
