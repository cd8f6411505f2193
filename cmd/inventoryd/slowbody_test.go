package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/httpapi"
)

// metric returns the value of the unlabelled sample name on /metrics, and
// false if there is none.
func (s *server) metric(name string) (float64, bool) {
	s.t.Helper()
	r := s.do("GET", "/metrics", nil)
	if r.status != 200 {
		s.t.Fatalf("GET /metrics: %d", r.status)
	}
	sc := bufio.NewScanner(strings.NewReader(string(r.raw)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f, true
		}
	}
	return 0, false
}

// slowBatch opens a connection and sends the headers of a batch that
// announces announced bytes of body, and then the first bytes of it.
func (s *server) slowBatch(announced int, first string) net.Conn {
	s.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		announced, first); err != nil {
		s.t.Fatal(err)
	}
	return c
}

// TestSlowBodies: 300 clients that each announce a 4 MiB batch and send one
// byte must not make the server hold what they announced. Before bodies were
// read into buffers that grow with what arrives, this took the Go heap to
// 1.2 GiB; now it stays at a few MiB. Once they hang up, the server serves
// as before and holds no body memory.
func TestSlowBodies(t *testing.T) {
	const (
		conns         = 300
		announced     = 4 << 20
		heapBytesMax  = 256 << 20
		inflightGauge = "inventory_http_body_inflight_bytes"
	)
	s := start(t, t.TempDir())
	heap0, _ := s.metric("go_memstats_heap_alloc_bytes")
	var cs []net.Conn
	for range conns {
		cs = append(cs, s.slowBatch(announced, "{"))
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	// Wait until every request is in its handler with its byte read, or
	// the heap shows what the old code did.
	var heap float64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		heap, _ = s.metric("go_memstats_heap_alloc_bytes")
		inflight, _ := s.metric(inflightGauge)
		if inflight >= conns || heap > heapBytesMax {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: %s %v, heap %v MiB; the server did not take the %d slow bodies", inflightGauge, inflight, heap/(1<<20), conns)
		}
	}
	t.Logf("Go heap with %d slow 4 MiB batches: %.1f MiB (%.1f MiB before them)", conns, heap/(1<<20), heap0/(1<<20))
	if heap > heapBytesMax {
		t.Errorf("Go heap %.0f MiB with %d slow batches that sent 1 byte each, want under %d MiB", heap/(1<<20), conns, heapBytesMax>>20)
	}

	for _, c := range cs {
		c.Close()
	}
	cs = nil
	if r := s.write("p", "after-slow", map[string]any{"type": "ADD", "quantity": 1}); r.status != 201 {
		t.Errorf("write after the slow clients hung up: %d %s", r.status, r.raw)
	}
	if r := s.do("GET", "/readyz", nil); r.status != 200 {
		t.Errorf("readyz after the slow clients hung up: %d", r.status)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		v, _ := s.metric(inflightGauge)
		if v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %v 20s after the slow clients hung up", inflightGauge, v)
		}
	}
}

// TestInflightBodyBytes: with --inflight-body-bytes at its minimum, one
// slow batch that has sent 2.5 MiB holds the whole budget (its buffer is
// the 4 MiB class), so a write is refused at once with 503 overloaded and
// Retry-After, and changes nothing; once the slow client hangs up, writes
// are served again.
func TestInflightBodyBytes(t *testing.T) {
	const budget = 4 << 20
	s := start(t, t.TempDir(), "--inflight-body-bytes", strconv.Itoa(budget))
	if r := s.write("p", "seed", map[string]any{"type": "ADD", "quantity": 5}); r.status != 201 {
		t.Fatalf("seed: %d %s", r.status, r.raw)
	}
	c := s.slowBatch(4<<20, `{"ops":[`+strings.Repeat(" ", 5<<19))
	defer c.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if v, _ := s.metric("inventory_http_body_inflight_bytes"); v == budget {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow batch never filled the budget")
		}
	}
	r := s.write("p", "refused", map[string]any{"type": "REMOVE", "quantity": 1})
	if r.status != 503 || r.body["code"] != "overloaded" || r.header.Get("Retry-After") == "" {
		t.Errorf("write with the body budget full: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.raw)
	}
	if r := s.do("GET", "/v1/products/p", nil); num(r.body["version"]) != 1 {
		t.Errorf("the refused write changed the product: %s", r.raw)
	}
	c.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if v, _ := s.metric("inventory_http_body_inflight_bytes"); v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the budget was not given back after the slow client hung up")
		}
	}
	if r := s.write("p", "refused", map[string]any{"type": "REMOVE", "quantity": 1}); r.status != 201 {
		t.Errorf("the same write once the budget is free: %d %s", r.status, r.raw)
	}
}

func TestInflightBodyBytesFlag(t *testing.T) {
	env := map[string]string{"INVENTORY_INFLIGHT_BODY_BYTES": "8388608"}
	c, err := parse(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.InflightBodyBytes != 8<<20 {
		t.Errorf("from the environment: %d %v", c.InflightBodyBytes, err)
	}
	if c, err = parse([]string{"--inflight-body-bytes", "16777216"}, func(k string) string { return env[k] }, io.Discard); err != nil || c.InflightBodyBytes != 16<<20 {
		t.Errorf("the flag over the environment: %d %v", c.InflightBodyBytes, err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
	if c, _ = parse(nil, func(string) string { return "" }, io.Discard); c.InflightBodyBytes != httpapi.BodyBytesInflightDefault {
		t.Errorf("default %d", c.InflightBodyBytes)
	}
	for _, v := range []string{"0", "-1", "4194303"} {
		c, err := parse([]string{"--inflight-body-bytes", v}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--inflight-body-bytes must be 4194304") {
			t.Errorf("--inflight-body-bytes %s: %v", v, err)
		}
	}
}
