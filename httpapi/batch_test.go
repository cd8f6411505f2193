package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func batch(ts *testServer, body string, hdr ...string) *httptestRecorder {
	return ts.do(req{method: "POST", path: "/v1/batch", body: body, hdr: hdr})
}

func results(t *testing.T, w *httptestRecorder) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range decodeJSON(t, w.Body.Bytes())["results"].([]any) {
		out = append(out, r.(map[string]any))
	}
	return out
}

func TestBatchNonAtomic(t *testing.T) {
	ts := newTestServer(t, serverOptions{shards: 4})
	ts.mustWrite("b", `{"type":"ADD","quantity":1}`) // version 1
	w := batch(ts, `{"ops":[
		{"product_id":"a","type":"ADD","quantity":5,"idempotency_key":"k1"},
		{"product_id":"a","type":"RESERVE","quantity":3,"reservation_id":"r","idempotency_key":"k2"},
		{"product_id":"a","type":"REMOVE","quantity":3,"idempotency_key":"k3"},
		{"product_id":"a","type":"ADD","quantity":0,"idempotency_key":"k4"},
		{"product_id":"b","type":"ADD","quantity":1,"idempotency_key":"k5","expected_version":7},
		{"product_id":"b","type":"ADD","quantity":1,"idempotency_key":"k6","expected_version":1},
		{"product_id":"a","type":"ADD","quantity":5,"idempotency_key":"k1"}
	]}`, "X-Actor", "cart-service")
	if w.Code != http.StatusOK {
		t.Fatalf("non-atomic batch: %d %s", w.Code, w.Body)
	}
	rs := results(t, w)
	wantStatus := []float64{201, 201, 409, 400, 412, 201, 200}
	if len(rs) != len(wantStatus) {
		t.Fatalf("%d results, want %d", len(rs), len(wantStatus))
	}
	for i, r := range rs {
		if r["status"] != wantStatus[i] {
			t.Errorf("op %d: status %v, want %v (%v)", i, r["status"], wantStatus[i], r)
		}
	}
	if tx := rs[1]["transaction"].(map[string]any); tx["created_by"] != "cart-service" || tx["available"] != 2.0 {
		t.Errorf("op 1 entry %v: later ops must see earlier ones, X-Actor applies to each", tx)
	}
	checkEntry(t, rs[1]["transaction"].(map[string]any), "reservation_id", "expires_at", "idempotency_key")
	for i, ext := range map[int][2]any{2: {"available", 2.0}, 4: {"current_version", 1.0}} {
		p := rs[i]["error"].(map[string]any)
		if p[ext[0].(string)] != ext[1] || p["op_index"] != float64(i) || p["status"] != rs[i]["status"] {
			t.Errorf("op %d problem %v", i, p)
		}
	}
	if p := rs[3]["error"].(map[string]any); p["code"] != "invalid_request" || !strings.Contains(p["detail"].(string), "quantity") {
		t.Errorf("op 3 problem %v", p)
	}
	if !equalJSON(rs[6]["transactions"], rs[0]["transactions"]) {
		t.Errorf("replayed op 6 %v, want op 0's entries %v", rs[6], rs[0])
	}
	if v := ts.version("a"); v != 2 {
		t.Errorf("a: version %d, want 2", v)
	}
	// Batch and single-write keys share one namespace per product.
	w = ts.write("a", `{"type":"ADD","quantity":5}`, "Idempotency-Key", "k1")
	if w.Code != http.StatusOK || w.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("single write with a batch op's key: %d %s", w.Code, w.Body)
	}
}

func TestBatchAtomic(t *testing.T) {
	ts := newTestServer(t, serverOptions{shards: 4})
	ts.mustWrite("x", `{"type":"ADD","quantity":5}`)
	ts.mustWrite("y", `{"type":"ADD","quantity":5}`)
	cart := `{"atomic":true,"ops":[
		{"product_id":"x","type":"RESERVE","quantity":2,"reservation_id":"o1","idempotency_key":"c1"},
		{"product_id":"y","type":"RESERVE","quantity":2,"reservation_id":"o1","idempotency_key":"c2"},
		{"product_id":"z","type":"ADD","quantity":1,"idempotency_key":"c3"}]}`
	w := batch(ts, cart)
	if w.Code != http.StatusCreated {
		t.Fatalf("atomic batch: %d %s", w.Code, w.Body)
	}
	first := w.Body.Bytes()
	for i, r := range results(t, w) {
		if r["status"] != 201.0 {
			t.Errorf("op %d: %v", i, r)
		}
	}
	// Every op a replay: 200 and the same results.
	w = batch(ts, cart)
	if w.Code != http.StatusOK {
		t.Errorf("replayed atomic batch: %d %s", w.Code, w.Body)
	}
	if got := strings.ReplaceAll(w.Body.String(), `"status":200`, `"status":201`); got != string(first) {
		t.Errorf("replayed atomic batch\n%s\nwant\n%s", got, first)
	}

	// The third op fails: nothing applies, the answer is its problem.
	for _, c := range []struct {
		name   string
		op     string
		status int
		code   string
	}{
		{"stock", `{"product_id":"y","type":"REMOVE","quantity":9,"idempotency_key":"f3"}`, 409, "insufficient_stock"},
		{"version", `{"product_id":"y","type":"ADD","quantity":1,"idempotency_key":"f3","expected_version":1}`, 412, "version_conflict"},
		{"value", `{"product_id":"y","type":"ADD","quantity":0,"idempotency_key":"f3"}`, 400, "invalid_request"},
		{"key reused", `{"product_id":"x","type":"ADD","quantity":9,"idempotency_key":"c1"}`, 422, "idempotency_key_reused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := `{"atomic":true,"ops":[
				{"product_id":"x","type":"RESERVE","quantity":1,"reservation_id":"o2","idempotency_key":"f1"},
				{"product_id":"z","type":"ADD","quantity":1,"idempotency_key":"f2"},` + c.op + `]}`
			p := problem(t, batch(ts, body), c.status, c.code)
			if p["op_index"] != 2.0 {
				t.Errorf("op_index %v, want 2", p["op_index"])
			}
			if c.code == "version_conflict" && p["current_version"] != 2.0 {
				t.Errorf("current_version %v, want 2", p["current_version"])
			}
		})
	}
	for p, v := range map[string]int64{"x": 2, "y": 2, "z": 1} {
		if got := ts.version(p); got != v {
			t.Errorf("%s: version %d after failed atomic batches, want %d", p, got, v)
		}
	}
}

func TestBatchBadInputs(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	op := `{"product_id":"p","type":"ADD","quantity":1,"idempotency_key":"k"}`
	ops := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"ops":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"product_id":"p","type":"ADD","quantity":1,"idempotency_key":"k%d"}`, i)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	cases := []struct {
		name    string
		body    string
		hdr     []string
		status  int
		code    string
		opIndex any
	}{
		{"no ops", `{"ops":[]}`, nil, 400, "invalid_request", nil},
		{"missing ops", `{"atomic":true}`, nil, 400, "invalid_request", nil},
		{"ops not an array", `{"ops":{}}`, nil, 400, "invalid_request", nil},
		{"op not an object", `{"ops":[1]}`, nil, 400, "invalid_request", 0.0},
		{"atomic as string", `{"atomic":"true","ops":[` + op + `]}`, nil, 400, "invalid_request", nil},
		{"unknown top field", `{"ops":[` + op + `],"dry_run":true}`, nil, 400, "invalid_request", nil},
		{"duplicate ops", `{"ops":[` + op + `],"ops":[` + op + `]}`, nil, 400, "invalid_request", nil},
		{"Atomic case", `{"Atomic":true,"ops":[` + op + `]}`, nil, 400, "invalid_request", nil},
		{"wrong type in op 1", `{"ops":[` + op + `,{"product_id":"p","type":"ADD","quantity":"1","idempotency_key":"k2"}]}`, nil, 400, "invalid_request", 1.0},
		{"unknown field in op 0", `{"ops":[{"product_id":"p","type":"ADD","quantity":1,"idempotency_key":"k","x":1}]}`, nil, 400, "invalid_request", 0.0},
		{"duplicate in op 0", `{"ops":[{"product_id":"p","type":"ADD","quantity":1,"quantity":1,"idempotency_key":"k"}]}`, nil, 400, "invalid_request", 0.0},
		{"trailing data", `{"ops":[` + op + `]} {}`, nil, 400, "invalid_request", nil},
		{"empty", ``, nil, 400, "invalid_request", nil},
		{"If-Match header", `{"ops":[` + op + `]}`, []string{"If-Match", `"1"`}, 400, "invalid_request", nil},
		{"bad X-Actor", `{"ops":[` + op + `]}`, []string{"X-Actor", "a b"}, 400, "invalid_request", nil},
		{"atomic op out of range", `{"atomic":true,"ops":[` + op + `,{"product_id":"p","type":"ADD","quantity":0,"idempotency_key":"k2"}]}`, nil, 400, "invalid_request", 1.0},
		{"1001 ops", ops(1001), nil, 413, "payload_too_large", nil},
		{"over 4 MiB", `{"ops":[` + op + `]}` + strings.Repeat(" ", 4<<20), nil, 413, "payload_too_large", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := problem(t, batch(ts, c.body, c.hdr...), c.status, c.code)
			if p["op_index"] != c.opIndex {
				t.Errorf("op_index %v, want %v", p["op_index"], c.opIndex)
			}
		})
	}
	if v := ts.version("p"); v != 0 {
		t.Errorf("bad batches wrote %d entries", v)
	}
	// An Idempotency-Key header is ignored: the ops carry their keys.
	if w := batch(ts, `{"ops":[`+op+`]}`, "Idempotency-Key", "batch-key"); w.Code != http.StatusOK {
		t.Errorf("batch with an Idempotency-Key header: %d %s", w.Code, w.Body)
	}
	// 1,000 ops is fine.
	if w := batch(ts, ops(1000)); w.Code != http.StatusOK || bytes.Count(w.Body.Bytes(), []byte(`"status":201`)) != 1000 {
		t.Errorf("1000 ops: %d", w.Code)
	}
}
