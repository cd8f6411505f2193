package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inventory-ledger/inventory/httpapi"
	"github.com/inventory-ledger/inventory/shard"
)

// The benchmarks here run the engine in process on the real WAL, durable on
// disk: an fsync before every acknowledgement.

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
	e, err := shard.Open(shard.Config{Shards: 4, Registerer: reg}, openWAL(dir))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	if err := e.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.Write(ctx, shard.Op{ProductID: "hot", Type: shard.TypeAdd, Quantity: shard.QuantityMax, IdempotencyKey: "seed", ExpectedVersion: shard.NoVersion}); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ops := make([]shard.Op, per)
		for pb.Next() {
			for j := range ops {
				id := strconv.FormatInt(next.Add(1), 10)
				ops[j] = shard.Op{ProductID: "hot", Type: shard.TypeReserve, Quantity: 1, ReservationID: "r" + id, IdempotencyKey: "k" + id, ExpectedVersion: shard.NoVersion}
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
	}{{"restored", time.Hour}, {"expired", shard.RetentionDefault + time.Hour}} {
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
		e, err := shard.Open(shard.Config{Shards: shards}, openWAL(dir))
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
// COMMIT or RELEASE) through an engine on the WAL whose clock stands age
// ago. Each shard gets its products' ops in batches of 1000, one batch at
// a time, so that each batch is one WAL block of 1000 records.
func writeLedger(tb testing.TB, dir string, shards, products, perProduct int, age time.Duration) {
	at := time.Now().Add(-age).UnixNano()
	e, err := shard.Open(shard.Config{Shards: shards, Clock: func() int64 { return at }}, openWAL(dir))
	if err != nil {
		tb.Fatal(err)
	}
	defer e.Close(context.Background())
	if err := e.Wait(context.Background()); err != nil {
		tb.Fatal(err)
	}
	batches := make([]chan []shard.Op, shards)
	var wg sync.WaitGroup
	for i := range batches {
		batches[i] = make(chan []shard.Op, 1)
		wg.Go(func() {
			for ops := range batches[i] {
				res, err := e.Batch(context.Background(), ops, false)
				if err != nil {
					tb.Errorf("batch: %v", err)
					continue
				}
				for j, r := range res {
					if r.Err != nil {
						tb.Errorf("%s: %v", ops[j].Type, r.Err)
					}
				}
			}
		})
	}
	pending := make([][]shard.Op, shards)
	for p := 0; p < products; p++ {
		pid := "sku-" + strconv.Itoa(p)
		i := shard.Route(pid, shards)
		for v := 0; v < perProduct; v++ {
			id := strconv.Itoa(v)
			op := shard.Op{ProductID: pid, IdempotencyKey: "k" + id, ExpectedVersion: shard.NoVersion, Actor: "loader", Reason: "restock"}
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
			batches[i] <- pending[i]
			pending[i] = nil
		}
	}
	for i := range batches {
		if len(pending[i]) > 0 {
			batches[i] <- pending[i]
		}
		close(batches[i])
	}
	wg.Wait()
}

// discardWriter is a ResponseWriter that keeps only the status, so that a
// benchmark measures the handler, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkPostReserve measures the hot path in process with the real WAL
// (fsync per batch): POST .../transactions RESERVE → 201 through the whole
// echo stack (ServeHTTP), from 64 goroutines as 64 connections would, on
// products stocked far beyond what the run can reserve. One product is the
// flash-sale case: all requests on one shard. The same on in-memory
// journals is BenchmarkPostReserve in httpapi.
func BenchmarkPostReserve(b *testing.B) {
	b.Run("wal/1-product", func(b *testing.B) { benchReserve(b, 1) })
	b.Run("wal/64-products", func(b *testing.B) { benchReserve(b, 64) })
}

func benchReserve(b *testing.B, products int) {
	dir := b.TempDir()
	const shards = 4
	if err := shard.PrepareDir(dir, shards); err != nil {
		b.Fatal(err)
	}
	eng, err := shard.Open(shard.Config{Shards: shards}, openWAL(dir))
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close(context.Background())
	if err := eng.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Config{Engine: eng, Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	for p := range products {
		op := shard.Op{ProductID: "sku-" + strconv.Itoa(p), Type: shard.TypeAdd, Quantity: 1_000_000_000, IdempotencyKey: "stock", ExpectedVersion: shard.NoVersion}
		if _, err := eng.Write(context.Background(), op); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := seq.Add(1)
		path := "/v1/products/sku-" + strconv.Itoa(int(n)%products) + "/transactions"
		u, _ := url.Parse(path)
		body := &bytes.Reader{}
		r := &http.Request{Method: "POST", URL: u, RequestURI: path, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {""}}, Body: io.NopCloser(body), Host: "x"}
		w := &discardWriter{h: http.Header{}}
		var buf []byte
		for pb.Next() {
			i := seq.Add(1)
			buf = append(buf[:0], `{"type":"RESERVE","quantity":1,"reservation_id":"order-`...)
			buf = strconv.AppendInt(buf, i, 10)
			buf = append(buf, `","ttl_seconds":600,"reason":"checkout"}`...)
			body.Reset(buf)
			r.ContentLength = int64(len(buf))
			r.Header["Idempotency-Key"][0] = "key-" + strconv.FormatInt(i, 10)
			clear(w.h)
			h.ServeHTTP(w, r)
			if w.status != http.StatusCreated {
				b.Fatalf("status %d", w.status)
			}
		}
	})
}
