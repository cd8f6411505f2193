package shard

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/wal"
	"github.com/prometheus/client_golang/prometheus"
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

// openWAL returns an OpenJournal over real WAL directories below dir.
func openWAL(dir string) OpenJournal {
	return func(i int, fn func(uint64, []byte) error) (Journal, error) {
		l, _, err := wal.Open(ShardDir(dir, i), wal.Options{}, fn)
		return l, err
	}
}

// BenchmarkEngineHotProduct measures the whole engine, durable on disk: 64
// goroutines reserving 1 unit each from one hot product. ops/s counts
// reservations acknowledged after their fsync.
func BenchmarkEngineHotProduct(b *testing.B) {
	for _, per := range []int{1, 8} {
		b.Run(fmt.Sprintf("ops_per_request=%d", per), func(b *testing.B) {
			benchHot(b, per)
		})
	}
}

var benchReg *prometheus.Registry

func benchHot(b *testing.B, per int) {
	dir := b.TempDir()
	reg := prometheus.NewRegistry()
	benchReg = reg
	e, err := Open(Config{Shards: 4, Registerer: reg}, openWAL(dir))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	if err := e.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.Write(ctx, Op{ProductID: "hot", Type: TypeAdd, Quantity: QuantityMax, IdempotencyKey: "seed", ExpectedVersion: NoVersion}); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ops := make([]Op, per)
		for pb.Next() {
			for j := range ops {
				id := strconv.FormatInt(next.Add(1), 10)
				ops[j] = Op{ProductID: "hot", Type: TypeReserve, Quantity: 1, ReservationID: "r" + id, IdempotencyKey: "k" + id, ExpectedVersion: NoVersion}
			}
			if per == 1 {
				if _, err := e.Write(ctx, ops[0]); err != nil {
					b.Error(err)
					return
				}
				continue
			}
			res, err := e.Batch(ctx, ops, false)
			if err != nil {
				b.Error(err)
				return
			}
			for _, r := range res {
				if r.Err != nil {
					b.Error(r.Err)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(b.N*per)/time.Since(start).Seconds(), "ops/s")
}

// BenchmarkReplay measures start-up: 1M entries over 4 shards, replayed from
// disk in parallel. entries/s/core divides by the cores the replay could use.
// With keys=restored the ledger is an hour old and every idempotency key is
// restored; with keys=expired it is older than the retention window, as
// most of the log of a service that has run for days is, and none is.
func BenchmarkReplay(b *testing.B) {
	for _, c := range []struct {
		keys string
		age  time.Duration
	}{{"restored", time.Hour}, {"expired", RetentionDefault + time.Hour}} {
		b.Run("keys="+c.keys, func(b *testing.B) { benchReplay(b, c.age) })
	}
}

func benchReplay(b *testing.B, age time.Duration) {
	const products, perProduct = 100_000, 10
	dir := b.TempDir()
	shards := 4
	writeLedger(b, dir, shards, products, perProduct, age)
	b.ResetTimer()
	for b.Loop() {
		e, err := Open(Config{Shards: shards}, openWAL(dir))
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Wait(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		e.Close(context.Background())
		b.StartTimer()
	}
	perSec := float64(products*perProduct) * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(perSec, "entries/s")
	b.ReportMetric(perSec/float64(min(shards, runtime.GOMAXPROCS(0))), "entries/s/core")
}

// writeLedger writes products×perProduct entries (ADD, then RESERVE and
// COMMIT or RELEASE) straight through State and WAL, as the actor would,
// created age ago.
func writeLedger(tb testing.TB, dir string, shards, products, perProduct int, age time.Duration) {
	at := time.Now().Add(-age).UnixNano()
	logs := make([]*wal.Log, shards)
	states := make([]*State, shards)
	for i := range logs {
		l, _, err := wal.Open(ShardDir(dir, i), wal.Options{}, nil)
		if err != nil {
			tb.Fatal(err)
		}
		logs[i], states[i] = l, NewState(i, int64(RetentionDefault))
	}
	enc := newEncoder()
	bufs := make([][]byte, shards)
	recs := make([][][]byte, shards)
	flush := func(i int) {
		locs := make([]uint64, len(recs[i]))
		if err := logs[i].Commit(recs[i], locs); err != nil {
			tb.Fatal(err)
		}
		recs[i], bufs[i] = recs[i][:0], nil
	}
	var out []Entry
	for p := 0; p < products; p++ {
		pid := "sku-" + strconv.Itoa(p)
		i := Route(pid, shards)
		s := states[i]
		for v := 0; v < perProduct; v++ {
			id := strconv.Itoa(v)
			op := Op{ProductID: pid, IdempotencyKey: "k" + id, ExpectedVersion: NoVersion, Actor: "loader", Reason: "restock"}
			switch {
			case v == 0:
				op.Type, op.Quantity = TypeAdd, 1000
			case v%2 == 1:
				op.Type, op.Quantity, op.ReservationID, op.TTLSeconds = TypeReserve, 2, "r"+id, 900
			case v%4 == 0:
				op.Type, op.ReservationID = TypeCommit, "r"+strconv.Itoa(v-1)
			default:
				op.Type, op.ReservationID = TypeRelease, "r"+strconv.Itoa(v-1)
			}
			var err *Error
			out, _, err = s.decide(&op, at, out[:0])
			if err != nil {
				tb.Fatalf("%s: %v", op.Type, err)
			}
			for k := range out {
				s.apply(&out[k], 0)
				rec := enc.encode(&out[k])
				start := len(bufs[i])
				bufs[i] = append(bufs[i], rec...)
				recs[i] = append(recs[i], bufs[i][start:])
			}
			if len(recs[i]) >= 1000 {
				flush(i)
			}
		}
	}
	for i := range logs {
		if len(recs[i]) > 0 {
			flush(i)
		}
		logs[i].Close()
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
