package shard

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
)

// idSpace returns n distinct 10-byte ids as substrings of one string, so
// that a benchmark can take a fresh id per op without allocating and
// without a million-element slice of pointers for the GC to scan.
func idSpace(n int) func(i int) string {
	b := make([]byte, 0, 10*n)
	for i := 0; i < n; i++ {
		b = fmt.Appendf(b, "%010d", i)
	}
	all := string(b)
	return func(i int) string { return all[10*i : 10*i+10] }
}

// BenchmarkDecideApply measures the pure core on the hot path: a RESERVE of
// one unit on a hot product with a fresh key and reservation id, decided and
// applied as the actor does it. The maps and the hold slab grow to b.N.
func BenchmarkDecideApply(b *testing.B) {
	s := NewState(0, int64(RetentionDefault))
	seed := Op{ProductID: "hot", Type: TypeAdd, Quantity: QuantityMax, IdempotencyKey: "seed", ExpectedVersion: NoVersion, Actor: "a"}
	es, _, _ := s.decide(&seed, t0, nil)
	s.apply(&es[0], 1)
	s.products["hot"].onHand = StockMax
	id := idSpace(b.N)
	out := make([]Entry, 0, 4)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		op := Op{ProductID: "hot", Type: TypeReserve, Quantity: 1, ReservationID: id(i), TTLSeconds: 900,
			IdempotencyKey: id(i), ExpectedVersion: NoVersion, Actor: ActorDefault}
		var err *Error
		out, _, err = s.decide(&op, t0, out[:0])
		if err != nil {
			b.Fatal(err)
		}
		if err := s.apply(&out[0], uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeEntry measures encoding one entry into its WAL record.
func BenchmarkEncodeEntry(b *testing.B) {
	e := sampleEntry()
	enc := newEncoder()
	b.ReportAllocs()
	for b.Loop() {
		enc.encode(&e)
	}
}

// BenchmarkMemory reports the live heap per product (one ADD each) and per
// active hold (with its RESERVE entry and idempotency key), measured over a
// million of each. Run it with -benchtime=1x.
func BenchmarkMemory(b *testing.B) {
	const n = 1_000_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "sku-" + strconv.Itoa(1_000_000+i)
	}
	b.Run("per_product", func(b *testing.B) {
		for b.Loop() {
			s := NewState(0, int64(RetentionDefault))
			ops := make([]Op, n)
			for i := range ops {
				ops[i] = Op{ProductID: ids[i], Type: TypeAdd, Quantity: 10, IdempotencyKey: "restock-" + ids[i], ExpectedVersion: NoVersion, Actor: "a"}
			}
			before := heap()
			applyAll(b, s, ops)
			b.ReportMetric(float64(heap()-before)/n, "B/product")
			runtime.KeepAlive(ops)
			runtime.KeepAlive(s)
		}
	})
	b.Run("per_active_hold", func(b *testing.B) {
		for b.Loop() {
			s := NewState(0, int64(RetentionDefault))
			seed := make([]Op, 1000)
			for i := range seed {
				seed[i] = Op{ProductID: ids[i], Type: TypeAdd, Quantity: QuantityMax, IdempotencyKey: "seed", ExpectedVersion: NoVersion, Actor: "a"}
			}
			applyAll(b, s, seed)
			ops := make([]Op, n)
			for i := range ops {
				ops[i] = Op{ProductID: ids[i%1000], Type: TypeReserve, Quantity: 1, ReservationID: "order-" + strconv.Itoa(10_000_000+i),
					TTLSeconds: 900, IdempotencyKey: "order-" + strconv.Itoa(10_000_000+i), ExpectedVersion: NoVersion, Actor: "a"}
			}
			before := heap()
			applyAll(b, s, ops)
			b.ReportMetric(float64(heap()-before)/n, "B/hold")
			runtime.KeepAlive(ops)
			runtime.KeepAlive(s)
		}
	})
}

func applyAll(b *testing.B, s *State, ops []Op) {
	var out []Entry
	for i := range ops {
		var err *Error
		out, _, err = s.decide(&ops[i], t0, out[:0])
		if err != nil {
			b.Fatal(err)
		}
		for k := range out {
			s.apply(&out[k], 1)
		}
	}
}

// heap returns the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkAtomicCart measures a checkout cart through one shard's engine
// on an in-memory journal: an atomic batch of 3 RESERVE lines over 1,000
// products, from 32 goroutines, as the HTTP handler submits it. Allocations
// and CPU per cart, not the disk.
func BenchmarkAtomicCart(b *testing.B) {
	te := startEngine(&testing.T{}, 1)
	ctx := context.Background()
	const products = 1000
	var stock []Op
	for k := range products {
		stock = append(stock, Op{ProductID: "p" + strconv.Itoa(k), Type: TypeAdd, Quantity: QuantityMax, IdempotencyKey: "seed", ExpectedVersion: NoVersion})
	}
	for from := 0; from < products; from += 100 {
		if _, err := te.Batch(ctx, stock[from:from+100], false); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // 32 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			rid := "c" + strconv.FormatInt(i, 10)
			ops := make([]Op, 3)
			for j := range ops {
				ops[j] = Op{ProductID: "p" + strconv.Itoa(int(i*7+int64(j)*331)%products), Type: TypeReserve, Quantity: 1,
					ReservationID: rid, TTLSeconds: 900, IdempotencyKey: rid + "-" + strconv.Itoa(j), ExpectedVersion: NoVersion, Actor: ActorDefault}
			}
			if _, err := te.Batch(ctx, ops, true); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	te.Close(ctx)
}
