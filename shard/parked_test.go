package shard

import (
	"context"
	"slices"
	"testing"
	"time"
)

// Tests of expiry and forgetting while an atomic batch that spans shards
// has products parked.

// TestExpirySkipsParkedProducts: expire releases the due holds of products
// that are not parked, in deadline order, past due holds of parked ones;
// those wait, do not count as due for the actor's timer, may be settled by
// the batch that parked their product, and expire once it is unparked.
func TestExpirySkipsParkedProducts(t *testing.T) {
	m := newMachine(t)
	m.must(add("a", 5))
	m.must(add("b", 5))
	for _, h := range []struct {
		p, r string
		ttl  int64
	}{{"a", "a1", 10}, {"b", "b1", 20}, {"a", "a2", 15}, {"a", "a3", 25}, {"b", "b2", 28}, {"b", "b3", 40}} {
		o := reserve(h.p, h.r, 1)
		o.TTLSeconds = h.ttl
		m.must(o)
	}
	m.now += 30e9
	parked := map[string]bool{"a": true}
	skip := func(p string) bool { return parked[p] }
	expired := func() []string {
		var got []string
		for {
			es, ok := m.s.expire(m.now, skip, nil)
			if !ok {
				return got
			}
			if err := m.s.apply(&es[0], uint64(len(m.log)+1)); err != nil {
				t.Fatalf("apply expiry: %v", err)
			}
			m.log = append(m.log, es[0])
			got = append(got, es[0].ReservationID)
		}
	}
	if got, want := expired(), []string{"b1", "b2"}; !slices.Equal(got, want) {
		t.Errorf("expired while a is parked: %v, want %v", got, want)
	}
	if at, ok := m.s.nextExpiry(m.now, skip); !ok || at != t0+40e9 {
		t.Errorf("next expiry while a is parked: %d, %v; want b3's deadline %d", at, ok, t0+40e9)
	}
	if n := m.s.ActiveHolds(); n != 4 {
		t.Errorf("%d active holds, want a1, a2, a3, b3", n)
	}
	m.must(commit("a", "a2", 0)) // the batch that parked a commits a2
	if n := m.s.ActiveHolds(); n != 3 {
		t.Errorf("%d active holds after a2's commit, want a1, a3, b3", n)
	}
	delete(parked, "a")
	if at, ok := m.s.nextExpiry(m.now, skip); !ok || at > m.now {
		t.Errorf("next expiry once a is unparked: %d, %v; want a due one", at, ok)
	}
	if got, want := expired(), []string{"a1", "a3"}; !slices.Equal(got, want) {
		t.Errorf("expired once a is unparked: %v, want %v", got, want)
	}
	if n := m.s.ActiveHolds(); n != 1 {
		t.Errorf("%d active holds, want b3", n)
	}
	checkInvariants(t, m.s, m.log)
	if diff := sameState(m.s, replayLog(t, m.s, m.log)); diff != "" {
		t.Errorf("live and replayed state differ: %s", diff)
	}
}

// TestExpiryGoesOnPastAParkedProduct: while a cross-shard atomic batch has
// product p parked, a due hold of another product of p's shard expires
// although p has a hold due earlier; p's hold stays active until the batch
// resolves, then expires. Expiry used to stop at p's hold.
func TestExpiryGoesOnPastAParkedProduct(t *testing.T) {
	clock := newFakeClock()
	other := productsOn(2, 0, 2)[1]
	ctx := context.Background()
	k := parkProductAfter(t, Config{Clock: clock.now}, func(e *Engine, p string) []Op {
		early := reserve(p, "early", 1)
		early.TTLSeconds = 10
		late := reserve(other, "late", 1)
		late.TTLSeconds = 20
		for _, op := range []Op{add(other, 10), early, late} {
			if _, err := e.Write(ctx, op); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	})
	clock.advance(30 * time.Second)
	if r, err := k.e.Reservation(ctx, other, "late"); err != nil || r.State != StateExpired || r.SettledAt != t0+30e9 {
		t.Errorf("due hold of %s while %s is parked: %+v, %v; want expired", other, k.p, r, err)
	}
	if st, err := k.e.Stock(ctx, other); err != nil || st.Reserved != 0 {
		t.Errorf("stock of %s: %+v, %v; want nothing reserved", other, st, err)
	}
	k.release(t)
	r, err := k.e.Reservation(ctx, k.p, "early")
	if err != nil || r.State != StateExpired {
		t.Fatalf("due hold of %s once the batch resolved: %+v, %v; want expired", k.p, r, err)
	}
	// It stayed active while p was parked: it expired after the batch's
	// RESERVE (version 3, after ADD and the hold).
	page, err := k.e.History(ctx, k.p, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if es := page.Entries; len(es) != 4 || es[2].ReservationID != "r1" || es[3].ReservationID != "early" || es[3].Origin != OriginExpiry {
		t.Errorf("history of %s: %+v; want ADD, RESERVE early, the batch's RESERVE r1, the expiry of early", k.p, es)
	}
}

// TestKeysForgottenWhileParked: while a cross-shard atomic batch keeps
// product p parked past the retention window, idempotency keys are
// forgotten on schedule: a retry of a key of another product of p's shard
// is a new request. A key the batch replays is not decided again at commit
// (a prepared part applies as it was decided), so forgetting p's keys too is
// safe: the batch's retry of an op on p still answers as a replay.
func TestKeysForgottenWhileParked(t *testing.T) {
	clock := newFakeClock()
	other := productsOn(2, 0, 2)[1]
	ctx := context.Background()
	otherOp := add(other, 1)
	var otherFirst, pFirst Result
	var pOp Op
	k := parkProductAfter(t, Config{Clock: clock.now, Retention: time.Second}, func(e *Engine, p string) []Op {
		var err *Error
		if otherFirst, err = e.Write(ctx, otherOp); err != nil {
			t.Fatal(err)
		}
		pOp = add(p, 1)
		if pFirst, err = e.Write(ctx, pOp); err != nil {
			t.Fatal(err)
		}
		return []Op{pOp} // a retry of pOp in the batch
	})
	clock.advance(3 * time.Second) // the retention window and its 64th
	res, err := k.e.Write(ctx, otherOp)
	if err != nil {
		t.Fatal(err)
	}
	if res.Replayed || res.Entries[0].ID == otherFirst.Entries[0].ID || res.Stock.OnHand != 2 {
		t.Errorf("retry on %s past the retention window while %s is parked: %+v; want a new ADD", other, k.p, res)
	}
	k.release(t)
	if r := k.results[0]; !r.Replayed || r.Entries[0].ID != pFirst.Entries[0].ID {
		t.Errorf("the batch's retry on %s: %+v; want a replay of %s", k.p, r, pFirst.Entries[0].ID)
	}
	if res, err := k.e.Write(ctx, pOp); err != nil || res.Replayed {
		t.Errorf("retry on %s after the window: %+v, %v; want a new ADD", k.p, res, err)
	}
}
