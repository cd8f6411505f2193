package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
)

// discardWriter is a ResponseWriter that keeps only the status, so that a
// benchmark measures the handler, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// benchReserve runs POST .../transactions RESERVE → 201 through the whole
// echo stack (ServeHTTP), from 64 goroutines as 64 connections would, on a
// product stocked far beyond what the run can reserve.
func benchReserve(b *testing.B, o serverOptions, products int) {
	ts := newTestServer(b, o)
	for p := range products {
		ts.mustWrite("sku-"+strconv.Itoa(p), `{"type":"ADD","quantity":1000000000}`)
	}
	var seq atomic.Int64
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := seq.Add(1)
		c := newReserver("sku-"+strconv.Itoa(int(n)%products), o.token)
		for pb.Next() {
			if status := c.reserve(ts.e, seq.Add(1)); status != http.StatusCreated {
				b.Fatalf("status %d", status)
			}
		}
	})
}

// reserver sends RESERVEs of one unit of one product through a handler,
// reusing one request, body and writer.
type reserver struct {
	r    *http.Request
	body *bytes.Reader
	w    *discardWriter
	buf  []byte
}

// newReserver returns a reserver of product, sending token as its bearer
// secret unless it is empty.
func newReserver(product, token string) *reserver {
	path := "/v1/products/" + product + "/transactions"
	u, _ := url.Parse(path)
	c := &reserver{body: &bytes.Reader{}, w: &discardWriter{h: http.Header{}}}
	c.r = &http.Request{Method: "POST", URL: u, RequestURI: path, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {""}}, Body: io.NopCloser(c.body), Host: "x"}
	if token != "" {
		c.r.Header["Authorization"] = []string{"Bearer " + token}
	}
	return c
}

// reserve sends the RESERVE of reservation order-i with key key-i to h and
// returns the status of its answer.
func (c *reserver) reserve(h http.Handler, i int64) int {
	c.buf = append(c.buf[:0], `{"type":"RESERVE","quantity":1,"reservation_id":"order-`...)
	c.buf = strconv.AppendInt(c.buf, i, 10)
	c.buf = append(c.buf, `","ttl_seconds":600,"reason":"checkout"}`...)
	c.body.Reset(c.buf)
	c.r.ContentLength = int64(len(c.buf))
	c.r.Header["Idempotency-Key"][0] = "key-" + strconv.FormatInt(i, 10)
	clear(c.w.h)
	h.ServeHTTP(c.w, c.r)
	return c.w.status
}

// BenchmarkPostReserve measures the hot path on in-memory journals: the
// HTTP layer and the engine alone. One product is the flash-sale case: all
// requests on one shard. The same with the real WAL (fsync per batch) is
// BenchmarkPostReserve in cmd/inventoryd.
func BenchmarkPostReserve(b *testing.B) {
	b.Run("mem/1-product", func(b *testing.B) { benchReserve(b, serverOptions{shards: 4}, 1) })
	// The same with access control on: a writer's key on every request.
	b.Run("mem/1-product-auth", func(b *testing.B) {
		auth, secrets := testAuth(b, false)
		benchReserve(b, serverOptions{shards: 4, auth: auth, token: secrets[RoleWriter]}, 1)
	})
}

// BenchmarkEncodeWriteAnswer measures encoding a RESERVE's 201 body alone.
func BenchmarkEncodeWriteAnswer(b *testing.B) {
	ts := newTestServer(b, serverOptions{})
	ts.mustWrite("p", `{"type":"ADD","quantity":10}`)
	res, err := ts.eng.Write(b.Context(), reserveOp())
	if err != nil {
		b.Fatal(err)
	}
	sc := getScratch()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		sc.je = jsonEncoder{b: sc.je.b[:0]}
		encodeResultBody(&sc.je, &res, 0)
	}
	b.SetBytes(int64(len(sc.je.b)))
}

// BenchmarkDecodeWrite measures decoding a RESERVE body alone.
func BenchmarkDecodeWrite(b *testing.B) {
	body := []byte(`{"type":"RESERVE","quantity":2,"reservation_id":"order-77","ttl_seconds":600,"reason":"checkout"}`)
	var jr jsonReader
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		jr.reset(body)
		var op shardOp
		if err := decodeWrite(&jr, &op); err != nil {
			b.Fatal(err)
		}
	}
}

type shardOp = shard.Op

func reserveOp() shard.Op {
	return shard.Op{ProductID: "p", Type: shard.TypeReserve, Quantity: 2, ReservationID: "order-77", TTLSeconds: 600,
		Reason: "checkout", IdempotencyKey: "bench-key", ExpectedVersion: shard.NoVersion}
}

// BenchmarkAuthCost measures what access control costs on the hot path:
// two servers on in-memory journals in one process, the second with keys
// on, take the same RESERVE load (64 goroutines on one product) in
// alternating slices of 4096 requests, so that noise from the rest of the
// machine falls on both alike. Each loop is one slice on each, in turns
// first; it reports the time per request of each side and the median of
// the per-slice ratios. Without the network, HTTP parsing and the fsync,
// which a real request pays as well, the ratio is an upper bound of what
// keys cost end to end.
func BenchmarkAuthCost(b *testing.B) {
	auth, secrets := testAuth(b, false)
	sides := [2]*testServer{
		newTestServer(b, serverOptions{shards: 1}),
		newTestServer(b, serverOptions{shards: 1, auth: auth, token: secrets[RoleWriter]}),
	}
	tokens := [2]string{"", secrets[RoleWriter]}
	for _, ts := range sides {
		ts.mustWrite("sku", `{"type":"ADD","quantity":1000000000}`)
	}
	const slice, workers = 4096, 64
	var seq atomic.Int64
	run := func(side int) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Go(func() {
				c := newReserver("sku", tokens[side])
				for range slice / workers {
					if status := c.reserve(sides[side].e, seq.Add(1)); status != http.StatusCreated {
						panic("status " + strconv.Itoa(status))
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	var total [2]time.Duration
	var ratios []float64
	turn := 0
	for b.Loop() {
		var d [2]time.Duration
		d[turn] = run(turn)
		d[1-turn] = run(1 - turn)
		turn = 1 - turn
		total[0] += d[0]
		total[1] += d[1]
		ratios = append(ratios, float64(d[1])/float64(d[0]))
	}
	slices.Sort(ratios)
	n := float64(b.N * slice)
	b.ReportMetric(float64(total[0].Nanoseconds())/n, "ns/req-without")
	b.ReportMetric(float64(total[1].Nanoseconds())/n, "ns/req-with")
	b.ReportMetric(ratios[len(ratios)/2], "with/without-median")
	b.ReportMetric(float64(total[1])/float64(total[0]), "with/without-total")
}
