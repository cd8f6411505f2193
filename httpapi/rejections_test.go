package httpapi

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// counters scrapes /metrics and returns inventory_rejections_total by code
// and inventory_idempotent_replays_total (under "replays").
func counters(t *testing.T, ts *testServer) map[string]float64 {
	t.Helper()
	w := ts.do(req{method: "GET", path: "/metrics"})
	if w.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", w.Code)
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(w.Body.Bytes()))
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		key := ""
		switch {
		case strings.HasPrefix(name, `inventory_rejections_total{code="`):
			key = strings.TrimSuffix(strings.TrimPrefix(name, `inventory_rejections_total{code="`), `"}`)
		case name == "inventory_idempotent_replays_total":
			key = "replays"
		default:
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		got[key] += v
	}
	return got
}

// rejectionsCounter checks, request by request, that
// inventory_rejections_total moves by exactly what was answered.
type rejectionsCounter struct {
	t    *testing.T
	ts   *testServer
	last map[string]float64
}

// expect runs fn and checks that the counters moved by want (code → count)
// and nothing else did.
func (rc *rejectionsCounter) expect(name string, want map[string]float64, fn func()) {
	rc.t.Helper()
	fn()
	now := counters(rc.t, rc.ts)
	keys := map[string]bool{}
	for k := range now {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	for k := range keys {
		if got := now[k] - rc.last[k]; got != want[k] {
			rc.t.Errorf("%s: %s moved by %v, want %v", name, k, got, want[k])
		}
	}
	rc.last = now
}

// newRejectionsServer is an API and its engine registered on one registry,
// as inventoryd wires them.
func newRejectionsServer(t *testing.T, o serverOptions, cfg Config) *testServer {
	reg := prometheus.NewRegistry()
	o.cfg.Registerer = reg
	cfg.Registry = reg
	return withConfig(newTestServer(t, o), cfg)
}

// TestRejectionsCounted drives every kind of answer and checks after each
// that inventory_rejections_total{code} moved by exactly the refusals
// answered: once per problem document, and once per refused op inside a
// non-atomic batch's 200.
func TestRejectionsCounted(t *testing.T) {
	ts := newRejectionsServer(t, serverOptions{shards: 2}, Config{BodyBytesInflightMax: BodyBytesInflightMin})
	ts.e.GET("/panic", func(echo.Context) error { panic("boom") })
	// Two products on different shards, for an atomic batch refused on both.
	p, q := "p", "q"
	for i := 0; shard.Route(q, 2) == shard.Route(p, 2); i++ {
		q = "q" + strconv.Itoa(i)
	}
	rc := &rejectionsCounter{t: t, ts: ts, last: counters(t, ts)}
	none := map[string]float64{}
	post := func(product, body string, hdr ...string) func() {
		return func() { ts.write(product, body, hdr...) }
	}
	get := func(path string) func() { return func() { ts.do(req{method: "GET", path: path}) } }
	batch := func(body string) func() { return func() { ts.do(req{method: "POST", path: "/v1/batch", body: body}) } }

	rc.expect("201", none, post(p, `{"type":"ADD","quantity":5}`, "Idempotency-Key", "add-p"))
	rc.expect("201 on the other shard", none, post(q, `{"type":"ADD","quantity":5}`))
	rc.expect("201 reserve", none, post(p, `{"type":"RESERVE","quantity":2,"reservation_id":"r1"}`))
	rc.expect("200 replay", map[string]float64{"replays": 1}, post(p, `{"type":"ADD","quantity":5}`, "Idempotency-Key", "add-p"))
	rc.expect("200 reads", none, func() {
		for _, path := range []string{"/v1/products/p", "/v1/products/p/transactions", "/v1/products/p/reservations/r1", "/healthz", "/readyz", "/openapi.json"} {
			if w := ts.do(req{method: "GET", path: path}); w.Code != http.StatusOK {
				t.Errorf("GET %s: %d", path, w.Code)
			}
		}
	})

	rc.expect("400 malformed body", map[string]float64{"invalid_request": 1}, post(p, `{"type":"ADD",`))
	rc.expect("400 no key", map[string]float64{"invalid_request": 1}, func() {
		ts.do(req{method: "POST", path: "/v1/products/p/transactions", body: `{"type":"ADD","quantity":1}`})
	})
	rc.expect("400 quantity 0", map[string]float64{"invalid_request": 1}, post(p, `{"type":"ADD","quantity":0}`))
	rc.expect("400 bad query", map[string]float64{"invalid_request": 1}, get("/v1/products/p?x=1"))
	rc.expect("400 bad limit", map[string]float64{"invalid_request": 1}, get("/v1/products/p/transactions?limit=0"))
	rc.expect("404 product", map[string]float64{"not_found": 1}, get("/v1/products/nothing"))
	rc.expect("404 reservation", map[string]float64{"not_found": 1}, get("/v1/products/p/reservations/none"))
	rc.expect("404 route", map[string]float64{"not_found": 1}, get("/no/such/route"))
	rc.expect("405", map[string]float64{"method_not_allowed": 1}, func() { ts.do(req{method: "DELETE", path: "/v1/products/p"}) })
	rc.expect("405 HEAD", map[string]float64{"method_not_allowed": 1}, func() { ts.do(req{method: "HEAD", path: "/v1/products/p"}) })
	rc.expect("409 insufficient_stock", map[string]float64{"insufficient_stock": 1}, post(p, `{"type":"REMOVE","quantity":99}`))
	rc.expect("409 reservation_exists", map[string]float64{"reservation_exists": 1}, post(p, `{"type":"RESERVE","quantity":1,"reservation_id":"r1"}`))
	rc.expect("409 reservation_not_active", map[string]float64{"reservation_not_active": 1}, post(p, `{"type":"RELEASE","reservation_id":"none"}`))
	rc.expect("409 commit_exceeds_hold", map[string]float64{"commit_exceeds_hold": 1}, post(p, `{"type":"COMMIT","reservation_id":"r1","quantity":3}`))
	rc.expect("412", map[string]float64{"version_conflict": 1}, post(p, `{"type":"ADD","quantity":1}`, "If-Match", `"99"`))
	rc.expect("413 announced", map[string]float64{"payload_too_large": 1}, post(p, `{"type":"ADD","quantity":1,"reason":"`+strings.Repeat("x", writeBytesMax)+`"}`))
	rc.expect("413 ops", map[string]float64{"payload_too_large": 1}, batch(batchOfAdds(1001)))
	rc.expect("422", map[string]float64{"idempotency_key_reused": 1}, post(p, `{"type":"ADD","quantity":6}`, "Idempotency-Key", "add-p"))
	rc.expect("500", map[string]float64{"internal_error": 1}, get("/panic"))

	// Batches: each refused op of a non-atomic batch, the one problem of an
	// atomic batch (however many of its shards refused it).
	rc.expect("non-atomic batch", map[string]float64{"insufficient_stock": 1, "invalid_request": 1}, batch(`{"ops":[
		{"product_id":"p","type":"ADD","quantity":1,"idempotency_key":"b1"},
		{"product_id":"p","type":"REMOVE","quantity":99,"idempotency_key":"b2"},
		{"product_id":"p","type":"ADD","quantity":0,"idempotency_key":"b3"}]}`))
	rc.expect("non-atomic batch replayed", map[string]float64{"replays": 1, "insufficient_stock": 1, "invalid_request": 1}, batch(`{"ops":[
		{"product_id":"p","type":"ADD","quantity":1,"idempotency_key":"b1"},
		{"product_id":"p","type":"REMOVE","quantity":99,"idempotency_key":"b2"},
		{"product_id":"p","type":"ADD","quantity":0,"idempotency_key":"b3"}]}`))
	rc.expect("atomic batch refused on two shards", map[string]float64{"insufficient_stock": 1}, batch(`{"atomic":true,"ops":[
		{"product_id":"`+p+`","type":"REMOVE","quantity":99,"idempotency_key":"a1"},
		{"product_id":"`+q+`","type":"REMOVE","quantity":99,"idempotency_key":"a2"}]}`))
	rc.expect("atomic batch, invalid op", map[string]float64{"invalid_request": 1}, batch(`{"atomic":true,"ops":[
		{"product_id":"p","type":"ADD","quantity":0,"idempotency_key":"a3"}]}`))
	rc.expect("atomic batch applied", none, batch(`{"atomic":true,"ops":[
		{"product_id":"`+p+`","type":"ADD","quantity":1,"idempotency_key":"a4"},
		{"product_id":"`+q+`","type":"ADD","quantity":1,"idempotency_key":"a5"}]}`))

	// 503 overloaded: a stalled body holds the whole body budget.
	slow := newTrickle(`{"ops":[`+strings.Repeat(" ", 3<<20), "]}")
	done := slowRequest(ts, "/v1/batch", batchBytesMax, slow)
	<-slow.stalled
	rc.expect("503 overloaded", map[string]float64{"overloaded": 1}, post(p, `{"type":"ADD","quantity":1}`))
	rc.expect("400 after the stall", map[string]float64{"invalid_request": 1}, func() {
		close(slow.next)
		<-done
	})
}

// TestRejectionsCountedUnavailable: 503 unavailable, while the ledger
// replays (a write, a read and the readiness probe) and after a journal
// failure.
func TestRejectionsCountedUnavailable(t *testing.T) {
	gate := make(chan struct{})
	ts := newRejectionsServer(t, serverOptions{shards: 1, noWait: true, openGate: gate}, Config{})
	rc := &rejectionsCounter{t: t, ts: ts, last: counters(t, ts)}
	rc.expect("write while replaying", map[string]float64{"unavailable": 1}, func() { ts.write("p", `{"type":"ADD","quantity":1}`) })
	rc.expect("read while replaying", map[string]float64{"unavailable": 1}, func() { ts.do(req{method: "GET", path: "/v1/products/p"}) })
	rc.expect("readyz while replaying", map[string]float64{"unavailable": 1}, func() { ts.do(req{method: "GET", path: "/readyz"}) })
	rc.expect("non-atomic batch while replaying", map[string]float64{"unavailable": 1}, func() {
		ts.do(req{method: "POST", path: "/v1/batch", body: batchOfAdds(2)})
	})
	rc.expect("healthz while replaying", map[string]float64{}, func() { ts.do(req{method: "GET", path: "/healthz"}) })
	close(gate)

	ts = newRejectionsServer(t, serverOptions{shards: 1}, Config{})
	rc = &rejectionsCounter{t: t, ts: ts, last: counters(t, ts)}
	rc.expect("201", map[string]float64{}, func() { ts.mustWrite("p", `{"type":"ADD","quantity":1}`) })
	ts.journals[0].Fail(shardtest.Fault{Err: errors.New("injected journal fault")})
	rc.expect("write after a journal failure", map[string]float64{"unavailable": 1}, func() { ts.write("p", `{"type":"ADD","quantity":1}`) })
	rc.expect("non-atomic batch of 3 after a journal failure", map[string]float64{"unavailable": 3}, func() {
		ts.do(req{method: "POST", path: "/v1/batch", body: batchOfAdds(3)})
	})
}
