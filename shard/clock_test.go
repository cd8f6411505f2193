package shard

import (
	"context"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// steppedClock is the default clock built by steadyClock over a wall clock
// and a monotonic clock that the test moves apart.
type steppedClock struct {
	wall, mono *fakeClock
	now        func() int64
}

func newSteppedClock() *steppedClock {
	c := &steppedClock{wall: newFakeClock(), mono: &fakeClock{}}
	c.mono.advance(5 * time.Second) // a monotonic reading has no meaning of its own
	c.now = steadyClock(c.wall.now, func() time.Duration { return time.Duration(c.mono.now()) })
	return c
}

// TestSteadyClockIgnoresWallSteps: the default clock starts at the wall time
// and then follows only the monotonic clock.
func TestSteadyClockIgnoresWallSteps(t *testing.T) {
	c := newSteppedClock()
	if got := c.now(); got != t0 {
		t.Fatalf("clock at start %d, want the wall time %d", got, t0)
	}
	c.mono.advance(2 * time.Second)
	if got, want := c.now(), t0+2e9; got != want {
		t.Errorf("after 2s: %d, want %d", got, want)
	}
	c.wall.advance(48 * time.Hour)
	if got, want := c.now(), t0+2e9; got != want {
		t.Errorf("after a step of the wall clock forward: %d, want %d", got, want)
	}
	c.wall.advance(-96 * time.Hour)
	c.mono.advance(time.Second)
	if got, want := c.now(), t0+3e9; got != want {
		t.Errorf("after a step of the wall clock back: %d, want %d", got, want)
	}
}

// TestWallClockStepForward: with the default clock, a step of the wall
// clock past the retention window and a hold's TTL neither makes a retry of
// a write from a second earlier apply twice nor expires the hold; the hold
// still expires when its TTL has elapsed.
func TestWallClockStepForward(t *testing.T) {
	c := newSteppedClock()
	js := shardtest.Journals(1)
	e := mustOpen(t, Config{Shards: 1, Clock: c.now}, shardtest.Opener[Journal](js))
	ctx := context.Background()
	op := add("p", 10)
	first, err := e.Write(ctx, op)
	if err != nil {
		t.Fatal(err)
	}
	hold := reserve("p", "r", 2)
	hold.TTLSeconds = 60
	if _, err := e.Write(ctx, hold); err != nil {
		t.Fatal(err)
	}

	c.mono.advance(time.Second)
	c.wall.advance(RetentionDefault + time.Hour) // an NTP step, an operator
	res, err := e.Write(ctx, op)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Replayed || res.Entries[0].ID != first.Entries[0].ID {
		t.Errorf("retry a second later, after the wall clock stepped forward: replayed %v, entry %s; want a replay of %s",
			res.Replayed, res.Entries[0].ID, first.Entries[0].ID)
	}
	if r, err := e.Reservation(ctx, "p", "r"); err != nil || r.State != StateActive {
		t.Errorf("hold of 60s a second later, after the wall clock stepped forward: %+v, %v; want active", r, err)
	}
	if st, err := e.Stock(ctx, "p"); err != nil || st.OnHand != 10 || st.Reserved != 2 {
		t.Errorf("stock: %+v, %v; want on_hand 10, reserved 2", st, err)
	}

	c.mono.advance(time.Minute)
	r, rerr := e.Reservation(ctx, "p", "r")
	if rerr != nil || r.State != StateExpired || r.SettledAt != t0+61e9 {
		t.Errorf("hold once its TTL elapsed: %+v, %v; want expired at %d", r, rerr, t0+61e9)
	}
}
