package shard

import (
	"context"
	"testing"
	"time"
)

// TestStockAsOfAfterSnapshot: as_of reads of versions whose locators a
// snapshot moved out of RAM (before and after a restart from it) answer
// from the snapshot file, as history pages do, instead of indexing the
// in-memory locators (which panicked the process).
func TestStockAsOfAfterSnapshot(t *testing.T) {
	te := snapEngine(t, 1, 20)
	for range 100 {
		te.clock.advance(time.Second)
		te.write(add("p", 1))
	}
	check := func(when string) {
		t.Helper()
		for _, v := range []int64{1, 17, 50, 99, 100} {
			s, err := te.StockAsOf(context.Background(), "p", t0+v*int64(time.Second))
			if err != nil || s.Version != v || s.OnHand != v {
				t.Errorf("%s: as of version %d: %+v, %v", when, v, s, err)
			}
		}
	}
	check("running")
	te.restart()
	check("after a restart")
}
