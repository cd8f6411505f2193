package httpapi

import (
	"bytes"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var timeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$`)

func checkTime(t *testing.T, what string, v any) {
	t.Helper()
	s, ok := v.(string)
	if !ok || !timeRE.MatchString(s) {
		t.Errorf("%s = %v, want RFC 3339 UTC with 9 fractional digits", what, v)
	}
}

// keys returns the sorted member names of m.
func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sorted(s ...string) []string { slices.Sort(s); return s }

var entryFields = []string{"id", "product_id", "type", "quantity", "delta", "on_hand", "reserved", "available",
	"version", "reason", "created_by", "created_at"}

func checkEntry(t *testing.T, e map[string]any, extra ...string) {
	t.Helper()
	if got, want := keys(e), sorted(append(slices.Clone(entryFields), extra...)...); !slices.Equal(got, want) {
		t.Errorf("entry fields %v, want %v", got, want)
	}
	checkTime(t, "created_at", e["created_at"])
	if _, ok := e["expires_at"]; ok {
		checkTime(t, "expires_at", e["expires_at"])
	}
	if id, _ := e["id"].(string); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("id %q is not a UUIDv7", id)
	}
}

func TestWriteAndRead(t *testing.T) {
	ts := newTestServer(t, serverOptions{})

	w := ts.write("sku-1", `{"type":"ADD","quantity":10,"reason":"restock \"A\""}`, "X-Actor", "alice")
	if w.Code != http.StatusCreated {
		t.Fatalf("ADD: %d %s", w.Code, w.Body)
	}
	if got := w.Header().Get("ETag"); got != `"1"` {
		t.Errorf("ETag %q, want \"1\"", got)
	}
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	body := decodeJSON(t, w.Body.Bytes())
	if got := keys(body); !slices.Equal(got, []string{"stock", "transaction", "transactions"}) {
		t.Errorf("write answer fields %v", got)
	}
	tx := body["transaction"].(map[string]any)
	checkEntry(t, tx, "idempotency_key")
	want := map[string]any{"product_id": "sku-1", "type": "ADD", "quantity": 10.0, "delta": 10.0, "on_hand": 10.0,
		"reserved": 0.0, "available": 10.0, "version": 1.0, "reason": `restock "A"`, "created_by": "alice"}
	for k, v := range want {
		if tx[k] != v {
			t.Errorf("transaction.%s = %v, want %v", k, tx[k], v)
		}
	}
	stock := body["stock"].(map[string]any)
	if got := keys(stock); !slices.Equal(got, sorted("product_id", "on_hand", "reserved", "available", "version", "updated_at")) {
		t.Errorf("stock fields %v", got)
	}
	if stock["updated_at"] != tx["created_at"] || stock["version"] != 1.0 {
		t.Errorf("stock %v after entry %v", stock, tx)
	}

	// RESERVE, default ttl, anonymous.
	res := ts.mustWrite("sku-1", `{"type":"RESERVE","quantity":4,"reservation_id":"order-1"}`)
	tx = res["transaction"].(map[string]any)
	checkEntry(t, tx, "reservation_id", "expires_at", "idempotency_key")
	if tx["created_by"] != "anonymous" || tx["delta"] != -4.0 || tx["reserved"] != 4.0 || tx["available"] != 6.0 {
		t.Errorf("RESERVE entry %v", tx)
	}
	created, _ := time.Parse(time.RFC3339Nano, tx["created_at"].(string))
	expires, _ := time.Parse(time.RFC3339Nano, tx["expires_at"].(string))
	if d := expires.Sub(created); d != 900*time.Second {
		t.Errorf("default ttl gave a hold of %v, want 900s", d)
	}

	w = ts.do(req{method: "GET", path: "/v1/products/sku-1/reservations/order-1"})
	if w.Code != http.StatusOK {
		t.Fatalf("GET reservation: %d %s", w.Code, w.Body)
	}
	r := decodeJSON(t, w.Body.Bytes())
	if got := keys(r); !slices.Equal(got, sorted("reservation_id", "product_id", "quantity", "state", "expires_at", "created_at", "settled_at")) {
		t.Errorf("reservation fields %v", got)
	}
	if r["state"] != "active" || r["settled_at"] != nil || r["quantity"] != 4.0 || r["expires_at"] != tx["expires_at"] {
		t.Errorf("active reservation %v", r)
	}

	// A partial COMMIT appends the COMMIT and the RELEASE of the rest.
	res = ts.mustWrite("sku-1", `{"type":"COMMIT","quantity":3,"reservation_id":"order-1","reason":"shipped"}`)
	txs := res["transactions"].([]any)
	if len(txs) != 2 {
		t.Fatalf("partial COMMIT appended %d entries, want 2", len(txs))
	}
	commit, release := txs[0].(map[string]any), txs[1].(map[string]any)
	checkEntry(t, commit, "reservation_id", "idempotency_key")
	checkEntry(t, release, "reservation_id") // written by the service: no key
	if commit["type"] != "COMMIT" || commit["delta"] != 0.0 || commit["on_hand"] != 7.0 ||
		release["type"] != "RELEASE" || release["quantity"] != 1.0 || release["reason"] != "shipped" ||
		release["available"] != 7.0 || release["version"] != 4.0 {
		t.Errorf("partial COMMIT entries %v, %v", commit, release)
	}
	if !equalJSON(res["transaction"], commit) {
		t.Errorf("transaction %v is not transactions[0]", res["transaction"])
	}
	r = decodeJSON(t, ts.do(req{method: "GET", path: "/v1/products/sku-1/reservations/order-1"}).Body.Bytes())
	if r["state"] != "committed" || r["settled_at"] != commit["created_at"] || r["quantity"] != 4.0 {
		t.Errorf("committed reservation %v", r)
	}

	w = ts.do(req{method: "GET", path: "/v1/products/sku-1"})
	if w.Code != http.StatusOK || w.Header().Get("ETag") != `"4"` {
		t.Fatalf("GET product: %d ETag %q %s", w.Code, w.Header().Get("ETag"), w.Body)
	}
	stock = decodeJSON(t, w.Body.Bytes())
	if stock["on_hand"] != 7.0 || stock["reserved"] != 0.0 || stock["available"] != 7.0 || stock["version"] != 4.0 {
		t.Errorf("stock %v", stock)
	}
	checkTime(t, "updated_at", stock["updated_at"])

	// History: every entry, in version order.
	w = ts.do(req{method: "GET", path: "/v1/products/sku-1/transactions"})
	page := decodeJSON(t, w.Body.Bytes())
	if _, ok := page["next_after"]; ok || len(page["transactions"].([]any)) != 4 {
		t.Errorf("history %s", w.Body)
	}
}

func equalJSON(a, b any) bool {
	return strings.EqualFold(mustMarshal(a), mustMarshal(b))
}

func TestHistoryPaging(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	for range 5 {
		ts.mustWrite("p", `{"type":"ADD","quantity":1}`)
	}
	var versions []float64
	after := "0"
	for i := 0; ; i++ {
		w := ts.do(req{method: "GET", path: "/v1/products/p/transactions?limit=2&after=" + after})
		if w.Code != http.StatusOK {
			t.Fatalf("page %d: %d %s", i, w.Code, w.Body)
		}
		page := decodeJSON(t, w.Body.Bytes())
		for _, e := range page["transactions"].([]any) {
			versions = append(versions, e.(map[string]any)["version"].(float64))
		}
		next, ok := page["next_after"]
		if !ok {
			break
		}
		after = itoa(int64(next.(float64)))
	}
	if !slices.Equal(versions, []float64{1, 2, 3, 4, 5}) {
		t.Errorf("paged versions %v", versions)
	}
	// Past the end: an empty page.
	w := ts.do(req{method: "GET", path: "/v1/products/p/transactions?after=5"})
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), []byte(`{"transactions":[]}`)) {
		t.Errorf("after the last entry: %d %s", w.Code, w.Body)
	}
}

func TestIdempotentReplay(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.mustWrite("p", `{"type":"ADD","quantity":10}`)
	body := `{"type":"RESERVE","quantity":2,"reservation_id":"o-1","ttl_seconds":600,"reason":"checkout"}`
	first := ts.write("p", body, "Idempotency-Key", "key-1", "If-Match", `"1"`)
	if first.Code != http.StatusCreated || first.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v %s", first.Code, first.Header(), first.Body)
	}
	ts.mustWrite("p", `{"type":"ADD","quantity":1}`) // version 3: the If-Match is now stale

	// Same key and request, another actor (not part of the fingerprint), a
	// stale If-Match: the original answer, byte for byte.
	again := ts.write("p", body, "Idempotency-Key", "key-1", "If-Match", `"1"`, "X-Actor", "bob")
	if again.Code != http.StatusOK || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay: %d %v", again.Code, again.Header())
	}
	if !bytes.Equal(again.Body.Bytes(), first.Body.Bytes()) {
		t.Errorf("replay body\n%s\nwant the original\n%s", again.Body, first.Body)
	}
	if again.Header().Get("ETag") != `"2"` {
		t.Errorf("replay ETag %q, want the original \"2\"", again.Header().Get("ETag"))
	}
	if v := ts.version("p"); v != 3 {
		t.Errorf("version %d after a replay, want 3", v)
	}

	// Same key, another request.
	w := ts.write("p", strings.Replace(body, `"quantity":2`, `"quantity":3`, 1), "Idempotency-Key", "key-1", "If-Match", `"1"`)
	problem(t, w, http.StatusUnprocessableEntity, "idempotency_key_reused")
}

func TestErrorCodes(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.mustWrite("p", `{"type":"ADD","quantity":5}`)
	ts.mustWrite("p", `{"type":"RESERVE","quantity":2,"reservation_id":"r1"}`)
	ts.mustWrite("p", `{"type":"RESERVE","quantity":1,"reservation_id":"r2"}`)
	ts.mustWrite("p", `{"type":"RELEASE","reservation_id":"r2"}`)
	// p: on_hand 5, reserved 2, available 3, version 4.

	cases := []struct {
		name   string
		w      func() *httptestRecorder
		status int
		code   string
		ext    map[string]any
	}{
		{"insufficient_stock", func() *httptestRecorder { return ts.write("p", `{"type":"REMOVE","quantity":4}`) },
			409, "insufficient_stock", map[string]any{"available": 3.0}},
		{"insufficient_stock on a new product", func() *httptestRecorder {
			return ts.write("new", `{"type":"RESERVE","quantity":1,"reservation_id":"x"}`)
		}, 409, "insufficient_stock", map[string]any{"available": 0.0}},
		{"reservation_exists", func() *httptestRecorder {
			return ts.write("p", `{"type":"RESERVE","quantity":1,"reservation_id":"r1"}`)
		}, 409, "reservation_exists", nil},
		{"reservation_not_active released", func() *httptestRecorder {
			return ts.write("p", `{"type":"COMMIT","reservation_id":"r2"}`)
		}, 409, "reservation_not_active", map[string]any{"state": "released"}},
		{"reservation_not_active unknown", func() *httptestRecorder {
			return ts.write("p", `{"type":"RELEASE","reservation_id":"nope"}`)
		}, 409, "reservation_not_active", map[string]any{"state": "unknown"}},
		{"commit_exceeds_hold", func() *httptestRecorder {
			return ts.write("p", `{"type":"COMMIT","quantity":3,"reservation_id":"r1"}`)
		}, 409, "commit_exceeds_hold", map[string]any{"held": 2.0}},
		{"version_conflict", func() *httptestRecorder {
			return ts.write("p", `{"type":"ADD","quantity":1}`, "If-Match", `"3"`)
		}, 412, "version_conflict", map[string]any{"current_version": 4.0}},
		{"version_conflict on a new product", func() *httptestRecorder {
			return ts.write("new", `{"type":"ADD","quantity":1}`, "If-Match", `"1"`)
		}, 412, "version_conflict", map[string]any{"current_version": 0.0}},
		{"not_found product", func() *httptestRecorder { return ts.do(req{method: "GET", path: "/v1/products/none"}) },
			404, "not_found", nil},
		{"not_found history", func() *httptestRecorder {
			return ts.do(req{method: "GET", path: "/v1/products/none/transactions"})
		}, 404, "not_found", nil},
		{"not_found reservation", func() *httptestRecorder {
			return ts.do(req{method: "GET", path: "/v1/products/p/reservations/none"})
		}, 404, "not_found", nil},
		{"not_found route", func() *httptestRecorder { return ts.do(req{method: "GET", path: "/v2/nothing"}) },
			404, "not_found", nil},
		{"not_found sub-route", func() *httptestRecorder {
			return ts.do(req{method: "GET", path: "/v1/products/p/reservations"})
		}, 404, "not_found", nil},
		{"payload_too_large", func() *httptestRecorder {
			return ts.write("p", `{"type":"ADD","quantity":1,"reason":"`+strings.Repeat("x", 64<<10)+`"}`)
		}, 413, "payload_too_large", nil},
		{"invalid_request", func() *httptestRecorder { return ts.write("p", `{"type":"ADD"}`) },
			400, "invalid_request", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := problem(t, c.w(), c.status, c.code)
			for k, v := range c.ext {
				if p[k] != v {
					t.Errorf("%s = %v, want %v", k, p[k], v)
				}
			}
			if _, ok := p["op_index"]; ok {
				t.Errorf("op_index on a single write: %v", p)
			}
		})
	}
	if v := ts.version("p"); v != 4 {
		t.Errorf("version %d after refusals, want 4", v)
	}
	if v := ts.version("new"); v != 0 {
		t.Errorf("refusals created product new (version %d)", v)
	}
}
