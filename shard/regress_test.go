package shard

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// Regression tests for faults found in review.

func productsOn(shards, want int, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		p := fmt.Sprintf("p%d", i)
		if Route(p, shards) == want {
			out = append(out, p)
		}
	}
	return out
}

// TestFailedShardKeepsAnswering: after a journal failure every request is
// answered unavailable at once, however many come (requests answered
// without a flight used to hold the batch budget until the actor stalled).
func TestFailedShardKeepsAnswering(t *testing.T) {
	te := startEngine(t, 1)
	te.write(add("p", 5))
	te.js[0].Fail(shardtest.Fault{Err: errInjected})
	if _, err := te.Write(context.Background(), add("p", 1)); err == nil {
		t.Fatal("write on a failed journal succeeded")
	}
	for i := 0; i < 1100; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := te.Stock(ctx, "p")
		cancel()
		if err == nil || err.Code != CodeUnavailable || err.Detail != errUnavailable.Detail {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

// parked is an engine of 2 shards in which product p (shard 0) is parked by
// a cross-shard atomic batch that waits for shard 1's writer, held by its
// journal.
type parked struct {
	e       *Engine
	p       string
	unhold  func()      // releases shard 1's journal
	done    chan *Error // the batch's outcome
	results []Result    // the batch's results, once done has received
}

func parkProduct(t *testing.T, cfg Config) *parked {
	t.Helper()
	k := startParking(t, cfg, nil)
	time.Sleep(100 * time.Millisecond) // p is parked on shard 0
	return k
}

// parkProductAfter is parkProduct with setup run once p and q have stock,
// before the batch; the ops setup returns (on shard 0) come first in the
// batch. It returns once p is parked (see waitParked).
func parkProductAfter(t *testing.T, cfg Config, setup func(e *Engine, p string) []Op) *parked {
	t.Helper()
	k := startParking(t, cfg, setup)
	k.waitParked(t)
	return k
}

// startParking starts the batch of parkProduct, after setup if not nil.
func startParking(t *testing.T, cfg Config, setup func(e *Engine, p string) []Op) *parked {
	t.Helper()
	js := shardtest.Journals(2)
	cfg.Shards = 2
	if cfg.TxTimeout == 0 {
		cfg.TxTimeout = time.Minute // the batch waits for the test, not for a deadline
	}
	e := mustOpen(t, cfg, shardtest.Opener[Journal](js))
	ctx := context.Background()
	p, q := productsOn(2, 0, 1)[0], productsOn(2, 1, 1)[0]
	for _, x := range []string{p, q} {
		if _, err := e.Write(ctx, add(x, 100)); err != nil {
			t.Fatal(err)
		}
	}
	var ops []Op
	if setup != nil {
		ops = setup(e, p)
	}
	started, unhold := js[1].Hold()
	t.Cleanup(unhold)
	k := &parked{e: e, p: p, unhold: unhold, done: make(chan *Error, 1)}
	go e.Write(ctx, add(q, 1)) // holds shard 1's writer, so its prepare waits
	<-started
	go func() {
		res, err := e.Batch(ctx, append(ops, reserve(p, "r1", 1), reserve(q, "r1", 1)), true)
		k.results = res
		k.done <- err
	}()
	return k
}

// waitParked waits until p is parked on shard 0: a read of p then waits in
// the shard, which nothing else does on it. A read answered first, before
// p was parked, is sent again; the one that waits is answered once the
// batch resolves.
func (k *parked) waitParked(t *testing.T) {
	t.Helper()
	var answered chan struct{}
	eventually(t, "the atomic batch parks "+k.p, func() bool {
		if k.e.actors[0].waiting.Load() > 0 {
			return true
		}
		select {
		case <-answered:
			answered = nil
		default:
		}
		if answered == nil {
			answered = make(chan struct{})
			go func(done chan struct{}) {
				k.e.Stock(context.Background(), k.p)
				close(done)
			}(answered)
		}
		return false
	})
}

// release releases shard 1's journal and waits for the batch to resolve.
func (k *parked) release(t *testing.T) {
	t.Helper()
	k.unhold()
	select {
	case err := <-k.done:
		if err != nil {
			t.Fatalf("batch: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the atomic batch never resolved")
	}
}

// TestManyRequestsWaitForAParkedProduct: more requests than a flight holds
// wait behind a product parked by a cross-shard atomic batch; the batch
// still resolves and they are all answered.
func TestManyRequestsWaitForAParkedProduct(t *testing.T) {
	k := parkProduct(t, Config{})
	var wg sync.WaitGroup
	for i := 0; i < 1100; i++ {
		wg.Go(func() {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := k.e.Stock(c, k.p); err != nil {
				t.Errorf("read behind the parked product: %v", err)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	k.release(t)
	wg.Wait()
}

// TestParkedRequestsCountAgainstTheQueue: requests waiting for a parked
// product have left the inbox, but still fill the shard's queue, so a flood
// behind a slow atomic batch is answered overloaded rather than queued
// without bound; once the batch resolves the admitted ones are answered.
func TestParkedRequestsCountAgainstTheQueue(t *testing.T) {
	const depth, flood = 16, 200
	k := parkProduct(t, Config{InboxDepth: depth})
	var overloaded, answered atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < flood; i++ {
		wg.Go(func() {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			switch _, err := k.e.Stock(c, k.p); {
			case err == nil:
				answered.Add(1)
			case err.Code == CodeOverloaded:
				overloaded.Add(1)
			default:
				t.Errorf("read behind the parked product: %v", err)
			}
		})
		time.Sleep(time.Millisecond) // let the actor defer what it took
	}
	// Every request is now either refused or waiting.
	time.Sleep(200 * time.Millisecond)
	if n := overloaded.Load(); n < flood-2*depth {
		t.Errorf("%d of %d requests behind a parked product refused, want at least %d", n, flood, flood-2*depth)
	}
	if n := answered.Load(); n != 0 {
		t.Errorf("%d reads of a parked product answered before its batch resolved", n)
	}
	if q, admitted := k.e.actors[0].queued(), flood-int(overloaded.Load()); q != admitted {
		t.Errorf("queue depth %d, want the %d admitted requests", q, admitted)
	}
	k.release(t)
	wg.Wait()
	if answered.Load()+overloaded.Load() != flood || answered.Load() == 0 {
		t.Errorf("answered %d, overloaded %d of %d", answered.Load(), overloaded.Load(), flood)
	}
	// The queue is free again.
	if _, err := k.e.Stock(context.Background(), k.p); err != nil {
		t.Errorf("read after the batch resolved: %v", err)
	}
	if q := k.e.actors[0].queued(); q != 0 {
		t.Errorf("queue depth %d after every request was answered", q)
	}
}

// TestKeyOutlivesRetentionWhileParked: a retried op whose key's retention
// passes while its cross-shard batch is parked still replays at commit.
func TestKeyOutlivesRetentionWhileParked(t *testing.T) {
	js := shardtest.Journals(2)
	clock := newFakeClock()
	e := mustOpen(t, Config{Shards: 2, Clock: clock.now, Retention: time.Second}, shardtest.Opener[Journal](js))
	ctx := context.Background()
	p, q := productsOn(2, 0, 1)[0], productsOn(2, 1, 1)[0]
	e.Write(ctx, add(p, 100))
	e.Write(ctx, add(q, 100))
	orig := reserve(p, "r1", 1)
	first, werr := e.Write(ctx, orig)
	if werr != nil {
		t.Fatal(werr)
	}
	clock.advance(time.Second - time.Millisecond) // just inside retention
	started, unhold := js[1].Hold()
	defer unhold()
	go e.Write(ctx, add(q, 1))
	<-started
	done := make(chan []Result, 1)
	go func() {
		res, err := e.Batch(ctx, []Op{orig, reserve(q, "r2", 1)}, true)
		if err != nil {
			t.Errorf("batch: %v", err)
		}
		done <- res
	}()
	time.Sleep(100 * time.Millisecond)
	clock.advance(time.Second) // retention passes while p is parked
	e.Stock(ctx, p+"-other")   // a step on shard 0 that would forget
	unhold()
	res := <-done
	if len(res) != 2 || !res[0].Replayed || res[0].Entries[0].ID != first.Entries[0].ID {
		t.Errorf("the retried op: %+v, want a replay of %s", res, first.Entries[0].ID)
	}
}

// TestReplayAfterClockStepBack: a key used again after its retention passed
// is in the log twice; with the clock stepped back at restart both uses fall
// inside the window, and the replay keeps the later one.
func TestReplayAfterClockStepBack(t *testing.T) {
	te := startEngine(t, 1)
	te.cfg.Retention = time.Minute
	te.restart()
	op := add("p", 1)
	op.IdempotencyKey = "K"
	te.write(op)
	te.clock.advance(time.Minute + 2*time.Second)
	te.write(add("p", 1)) // this step forgets K
	op2 := add("p", 2)
	op2.IdempotencyKey = "K"
	second := te.write(op2)
	if second.Replayed {
		t.Fatal("K still remembered after its retention")
	}
	te.Close(context.Background())
	te.clock.advance(-3 * time.Second) // an NTP step back, a restored VM
	te.open()
	if res := te.write(op2); !res.Replayed || res.Entries[0].ID != second.Entries[0].ID {
		t.Errorf("K after the restart: %+v, want a replay of the later use", res)
	}
}
