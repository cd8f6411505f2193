package shard

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// acked is an acknowledged write: what must survive any crash.
type acked struct {
	product string
	entries []Entry
}

// load drives writes of every kind from several goroutines until stop is
// closed, and returns what was acknowledged, in acknowledgement order.
func load(t *testing.T, e *Engine, workers int, stop <-chan struct{}) func() []acked {
	var mu sync.Mutex
	var got []acked
	record := func(r Result) {
		if r.Err != nil || r.Replayed || len(r.Entries) == 0 { // refused, or failed as a whole
			return
		}
		mu.Lock()
		got = append(got, acked{r.Entries[0].ProductID, r.Entries})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("p%d", r.IntN(5))
				rid := fmt.Sprintf("w%d-%d", w, i)
				switch r.IntN(5) {
				case 0:
					res, _ := e.Write(ctx, add(p, int64(1+r.IntN(3))))
					record(res)
				case 1, 2:
					res, err := e.Write(ctx, reserve(p, rid, 1))
					record(res)
					if err == nil && r.IntN(2) == 0 {
						res, _ = e.Write(ctx, commit(p, rid, 0))
						record(res)
					}
				case 3:
					ops := []Op{reserve(p, rid, 1), reserve(fmt.Sprintf("p%d", r.IntN(5)), rid+"b", 1)}
					rs, _ := e.Batch(ctx, ops, true)
					for _, res := range rs {
						record(res)
					}
				case 4:
					rs, _ := e.Batch(ctx, []Op{add(p, 1), remove(p, 1)}, false)
					for _, res := range rs {
						record(res)
					}
				}
			}
		})
	}
	return func() []acked {
		wg.Wait()
		return got
	}
}

// checkSurvived checks that every acknowledged entry is in e's ledger with
// the same id, and that each ledger adds up (versions 1..n, balances = sums).
func checkSurvived(t *testing.T, e *Engine, want []acked) {
	t.Helper()
	ctx := context.Background()
	ledgers := map[string][]Entry{}
	for _, a := range want {
		if _, ok := ledgers[a.product]; ok {
			continue
		}
		var all []Entry
		for after := int64(0); ; {
			page, err := e.History(ctx, a.product, after, HistoryLimitMax)
			if err != nil {
				t.Fatalf("history %s: %v", a.product, err)
			}
			all = append(all, page.Entries...)
			if page.Next == 0 {
				break
			}
			after = page.Next
		}
		ledgers[a.product] = all
		var onHand, reserved int64
		for i, en := range all {
			if en.Version != int64(i+1) {
				t.Fatalf("%s: entry %d has version %d", a.product, i, en.Version)
			}
			_, onHand, reserved = effect(en.Type, en.Quantity, onHand, reserved)
			if en.OnHand != onHand || en.Reserved != reserved || onHand-reserved < 0 {
				t.Fatalf("%s v%d: balances do not add up", a.product, en.Version)
			}
		}
		if st, err := e.Stock(ctx, a.product); err != nil || st.OnHand != onHand || st.Reserved != reserved {
			t.Fatalf("%s: stock %+v %v, sums %d/%d", a.product, st, err, onHand, reserved)
		}
	}
	for _, a := range want {
		for _, en := range a.entries {
			l := ledgers[en.ProductID]
			if en.Version > int64(len(l)) || l[en.Version-1].ID != en.ID {
				t.Errorf("acknowledged entry %s (%s v%d) lost", en.ID, en.ProductID, en.Version)
			}
		}
	}
}

var errDisk = errors.New("injected disk fault")

// TestDiskFaultLosesNothingAcknowledged fails a shard's journal during
// load, for a failed write and for a failed fsync (the block is written,
// the Write fails): the shard answers unavailable from then on, other
// shards keep working, and a restart recovers every acknowledged write.
func TestDiskFaultLosesNothingAcknowledged(t *testing.T) {
	for _, afterData := range []bool{false, true} {
		t.Run(fmt.Sprintf("data_written=%v", afterData), func(t *testing.T) {
			js := shardtest.Journals(2)
			// The 40th Write fails, and every one after it.
			js[0].Fail(shardtest.Fault{After: 39, Err: errDisk, Written: afterData})
			e := mustOpen(t, Config{Shards: 2}, shardtest.Opener[Journal](js))
			stop := make(chan struct{})
			wait := load(t, e, 8, stop)
			ctx := context.Background()
			onFailed, onHealthy := productsOn(2, 0, 1)[0], productsOn(2, 1, 1)[0]
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, err := e.Stock(ctx, onFailed)
				if err != nil && err.Code == CodeUnavailable {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the shard never failed")
				}
				time.Sleep(time.Millisecond)
			}
			close(stop)
			all := wait()
			if _, err := e.Write(ctx, add(onFailed, 1)); err == nil || err.Code != CodeUnavailable {
				t.Errorf("write to the failed shard: %v", err)
			}
			if _, err := e.Write(ctx, add(onHealthy, 1)); err != nil {
				t.Errorf("write to the healthy shard: %v", err)
			}
			e.Close(ctx)
			r := mustOpen(t, Config{Shards: 2}, shardtest.Opener[Journal](js))
			checkSurvived(t, r, all)
			r.Close(ctx)
		})
	}
}
