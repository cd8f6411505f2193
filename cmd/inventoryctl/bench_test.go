package main

import (
	"context"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// benchDir writes products×perProduct entries (an ADD, then RESERVEs each
// committed or released) over shards, through the engine on the real WAL,
// in non-atomic batches of at most 1000 ops per shard.
func benchDir(b *testing.B, shards, products, perProduct int) string {
	dir := b.TempDir()
	if err := shard.PrepareDir(dir, shards); err != nil {
		b.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UnixNano()
	e, err := shard.Open(shard.Config{Shards: shards, Clock: func() int64 { return at }}, func(i int, fn func(uint64, []byte) error) (shard.Journal, error) {
		l, _, err := wal.Open(shard.ShardDir(dir, i), wal.Options{}, fn)
		return l, err
	})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	if err := e.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	pending := make([][]shard.Op, shards)
	var wg sync.WaitGroup
	flush := func(i int) {
		ops := pending[i]
		pending[i] = nil
		wg.Go(func() {
			res, err := e.Batch(context.Background(), ops, false)
			if err != nil {
				b.Errorf("batch: %v", err)
				return
			}
			for j := range res {
				if res[j].Err != nil {
					b.Errorf("%s: %v", ops[j].Type, res[j].Err)
					return
				}
			}
		})
	}
	for p := range products {
		pid := "sku-" + strconv.Itoa(p)
		i := shard.Route(pid, shards)
		for v := range perProduct {
			id := strconv.Itoa(v)
			op := shard.Op{ProductID: pid, IdempotencyKey: "k" + id, ExpectedVersion: shard.NoVersion, Actor: "loader"}
			switch {
			case v == 0:
				op.Type, op.Quantity = shard.TypeAdd, 1000
			case v%2 == 1:
				op.Type, op.Quantity, op.ReservationID, op.TTLSeconds = shard.TypeReserve, 2, "r"+id, 900
			case v%4 == 0:
				op.Type, op.ReservationID = shard.TypeCommit, "r"+strconv.Itoa(v-1)
			default:
				op.Type, op.ReservationID = shard.TypeRelease, "r"+strconv.Itoa(v-1)
			}
			pending[i] = append(pending[i], op)
		}
		if len(pending[i])+perProduct > shard.BatchRequestOpsMax {
			wg.Wait() // one batch per shard at a time keeps each shard's log in product order
			flush(i)
		}
	}
	wg.Wait()
	for i := range pending {
		if len(pending[i]) > 0 {
			flush(i)
		}
	}
	wg.Wait()
	return dir
}

// BenchmarkTools runs verify, export (JSON Lines and CSV, to a discarding
// writer) and stock over 1M entries of 100,000 products in 4 shards.
func BenchmarkTools(b *testing.B) {
	const entries = 1_000_000
	dir := benchDir(b, 4, 100_000, 10)
	for _, args := range [][]string{{"verify"}, {"export"}, {"export", "--format", "csv"}, {"stock"}, {"inspect"}} {
		b.Run(args[0]+map[bool]string{true: "-csv", false: ""}[len(args) > 1], func(b *testing.B) {
			for b.Loop() {
				if code := run(append(args, "--data-dir", dir), io.Discard, io.Discard); code != exitOK {
					b.Fatalf("%v: status %d", args, code)
				}
			}
			b.ReportMetric(float64(entries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
