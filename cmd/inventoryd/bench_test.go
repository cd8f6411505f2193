package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkHTTPBatch posts non-atomic batches of 1000 ADD ops over 4
// products from 8 connections to the real server, durable, and reports
// ops/s. The client discards the answers, so that the load generator's
// JSON decoding does not take the 2 cores from the server.
func BenchmarkHTTPBatch(b *testing.B) {
	s := start(b, b.TempDir())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	var next atomic.Int64
	b.SetParallelism(max(1, 8/maxprocs()))
	b.ResetTimer()
	t0 := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := addBatch([]string{"p0", "p1", "p2", "p3"}, 1, fmt.Sprintf("b%d", next.Add(1)))
			if status, err := postDiscard(client, s.url+"/v1/batch", body); err != nil || status != 200 {
				b.Errorf("status %d %v", status, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*1000)/time.Since(t0).Seconds(), "ops/s")
}

// BenchmarkHTTPReserve reserves 1 unit of one hot product per request from
// 64 connections to the real server, durable, and reports requests/s.
func BenchmarkHTTPReserve(b *testing.B) {
	s := start(b, b.TempDir())
	if r := s.do("POST", "/v1/products/hot/transactions", `{"type":"ADD","quantity":1000000000}`, "Idempotency-Key", "stock"); r.status != 201 {
		b.Fatalf("stock: %d", r.status)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next atomic.Int64
	b.SetParallelism(max(1, 64/maxprocs()))
	b.ResetTimer()
	t0 := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			req, _ := http.NewRequest("POST", s.url+"/v1/products/hot/transactions",
				bytes.NewReader(fmt.Appendf(nil, `{"type":"RESERVE","quantity":1,"reservation_id":"r%d"}`, n)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("k%d", n))
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 201 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "req/s")
}

func maxprocs() int { return runtime.GOMAXPROCS(0) }
