package main

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// BenchmarkStockAsOf measures GET ...?as_of= in the engine, on the real
// WAL: one product of a million entries (1000 blocks of 1000 ADDs, a
// millisecond apart), as of a random instant of its history.
func BenchmarkStockAsOf(b *testing.B) {
	const blocks, perBlock = 1000, 1000
	dir := b.TempDir()
	if err := shard.PrepareDir(dir, 1); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).UnixNano()
	var now atomic.Int64
	e, err := shard.Open(shard.Config{Shards: 1, Clock: now.Load}, openWAL(dir))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	if err := e.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	ops := make([]shard.Op, perBlock)
	for k := range blocks {
		for j := range ops {
			ops[j] = shard.Op{ProductID: "hot", Type: shard.TypeAdd, Quantity: 1,
				IdempotencyKey: "k" + strconv.Itoa(k*perBlock+j), ExpectedVersion: shard.NoVersion}
		}
		now.Store(t0 + int64(k)*int64(time.Millisecond))
		if _, err := e.Batch(context.Background(), ops, true); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	b.ResetTimer()
	for b.Loop() {
		k := rng.Int64N(blocks - 1)
		st, err := e.StockAsOf(context.Background(), "hot", t0+k*int64(time.Millisecond)+1)
		if err != nil || st.Version != (k+1)*perBlock {
			b.Fatalf("as of block %d: version %d, %v", k, st.Version, err)
		}
	}
}

// BenchmarkReconcile measures one reconciliation of 1M entries over 100,000
// products and 4 shards, on the real WAL, with the service idle: the time
// of a run and the entries it reads per second.
func BenchmarkReconcile(b *testing.B) {
	const products, perProduct, shards = 100_000, 10, 4
	dir := b.TempDir()
	if err := shard.PrepareDir(dir, shards); err != nil {
		b.Fatal(err)
	}
	writeLedger(b, dir, shards, products, perProduct, time.Hour)
	e, err := shard.Open(shard.Config{Shards: shards}, openWAL(dir))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	if err := e.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	rc, err := shard.NewReconciler(e, shard.ReconcilerConfig{
		OpenLog: func(i int) shard.LogCursor { return wal.NewReader(shard.ShardDir(dir, i)) },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := rc.Run(context.Background())
		if err != nil || rep.Divergent() != 0 {
			b.Fatalf("run: %v, %d divergent", err, rep.Divergent())
		}
	}
	b.ReportMetric(float64(products*perProduct)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
