package shard

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// heapBytes returns the live heap after a full collection.
func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPer measures the live heap a shard's state takes per
// product (one entry each), per active hold, per idempotency key inside
// retention and per settled reservation after a snapshot, each from
// 200,000 of them (ids of 10-14 bytes), and reports it as B/<thing>. The
// locators of the entries count with them (8 bytes each).
func BenchmarkMemoryPer(b *testing.B) {
	const n = 200_000
	cases := []struct {
		name string
		fill func(b *testing.B, m *machine)
	}{
		{"product", func(b *testing.B, m *machine) {
			for i := range n {
				mustDo(b, m, add(fmt.Sprintf("product-%d", i), 5))
			}
		}},
		{"active_hold", func(b *testing.B, m *machine) {
			for i := range n {
				mustDo(b, m, reserve("p", fmt.Sprintf("order-%d", i), 1))
			}
		}},
		{"key", func(b *testing.B, m *machine) {
			for i := range n {
				op := add("p", 1)
				op.IdempotencyKey = fmt.Sprintf("idem-%d", i)
				mustDo(b, m, op)
			}
		}},
		{"settled_reservation", func(b *testing.B, m *machine) {
			for i := range n {
				id := fmt.Sprintf("order-%d", i)
				mustDo(b, m, reserve("p", id, 1))
				mustDo(b, m, commit("p", id, 0))
			}
			c := m.s.capture(uint64(len(m.log)), m.now, 1)
			store, _, err := writeSnapshot(b.TempDir(), c, func() bool { return true })
			if err != nil {
				b.Fatal(err)
			}
			m.s.adopt(store, c)
		}},
	}
	// After a restart from the snapshot: the reservations as start-up
	// loads them (Bloom filter, sparse index) and their entries' locators.
	b.Run("settled_reservation_restarted", func(b *testing.B) {
		var per float64
		for range b.N {
			m := &machine{s: NewState(0, int64(RetentionDefault)), now: t0}
			m.s.keepFresh = true
			mustDo(b, m, add("p", 10*n))
			for i := range n {
				id := fmt.Sprintf("order-%d", i)
				mustDo(b, m, reserve("p", id, 1))
				mustDo(b, m, commit("p", id, 0))
			}
			dir := b.TempDir()
			c := m.s.capture(uint64(2*n+1), m.now, 1)
			store, _, err := writeSnapshot(dir, c, func() bool { return true })
			if err != nil {
				b.Fatal(err)
			}
			store.close()
			m = nil
			before := heapBytes()
			st := NewState(0, int64(RetentionDefault))
			if _, ok, _, err := LoadSnapshot(dir, 0, 1, st); !ok || err != nil {
				b.Fatal("load", err)
			}
			after := heapBytes()
			per = float64(after-before) / n
			runtime.KeepAlive(st)
			st.store.close()
		}
		b.ReportMetric(per, "B/settled_reservation")
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var per float64
			for range b.N {
				m := &machine{s: NewState(0, int64(RetentionDefault)), now: t0}
				m.s.keepFresh = true
				base := []Op{add("p", 10*n)}
				mustDo(b, m, base[0])
				m.log = nil
				before := heapBytes()
				c.fill(b, m)
				m.log = nil // the test's copy of the ledger is not the state's
				after := heapBytes()
				per = float64(after-before) / n
				runtime.KeepAlive(m.s)
				m.s.store.close()
			}
			b.ReportMetric(per, "B/"+c.name)
		})
	}
}

// mustDo applies op, which has no idempotency key unless it is the
// thing measured: keys are measured on their own.
func mustDo(b *testing.B, m *machine, op Op) {
	if err := op.Validate(); err != nil {
		b.Fatal(err)
	}
	if op.IdempotencyKey[0] != 'i' {
		op.IdempotencyKey = ""
	}
	es, _, err := m.s.decide(&op, m.now, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range es {
		if err := m.s.apply(&es[i], uint64(i+1)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHistoryLocators measures what a page of 100 history entries
// costs to locate after a restart from a snapshot, when the product's
// locators are in the snapshot file: one product of 10M entries, pages at
// random places (the file in the page cache, as after the load).
func BenchmarkHistoryLocators(b *testing.B) {
	const n = 10_000_000
	s := NewState(0, int64(RetentionDefault))
	s.keepFresh = true
	e := Entry{ProductID: "p", Type: TypeAdd, Quantity: 1, Delta: 1, CreatedAt: t0, Origin: OriginRequest}
	for v := int64(1); v <= n; v++ {
		e.Version, e.OnHand = v, v
		if err := s.apply(&e, uint64(v)<<8); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	c := s.capture(n<<8, t0, 1)
	store, _, err := writeSnapshot(dir, c, func() bool { return true })
	if err != nil {
		b.Fatal(err)
	}
	s.adopt(store, c)
	p := s.products["p"]
	if p.snapLocs != n || len(p.locs) != 0 {
		b.Fatalf("%d locators in the file, %d in RAM", p.snapLocs, len(p.locs))
	}
	r := rand.New(rand.NewPCG(1, 1))
	b.ResetTimer()
	for range b.N {
		from := r.Int64N(n - 100)
		locs, err := s.locRange(p, from, from+100)
		if err != nil || locs[0] != uint64(from+1)<<8 {
			b.Fatal("wrong locators", err)
		}
	}
	b.StopTimer()
	store.close()
}
