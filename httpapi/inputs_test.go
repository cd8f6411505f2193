package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

// TestBadInputs sends one malformed or out-of-range request after another
// and checks that each is refused with its documented status and code, that
// none changes state, and that the service stays healthy.
func TestBadInputs(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.mustWrite("p", `{"type":"ADD","quantity":10}`)
	ts.mustWrite("p", `{"type":"RESERVE","quantity":1,"reservation_id":"r1"}`)
	const path = "/v1/products/p/transactions"
	key := func() []string { return []string{"Idempotency-Key", newKey()} }
	write := func(body string, hdr ...string) req {
		return req{method: "POST", path: path, body: body, hdr: append(key(), hdr...)}
	}
	const add = `{"type":"ADD","quantity":1}`
	long := strings.Repeat("a", 129)

	cases := []struct {
		name   string
		r      req
		status int
		code   string
		detail string // a substring the detail must contain
	}{
		// Malformed bodies.
		{"not JSON", write(`hello`), 400, "invalid_request", "malformed"},
		{"truncated", write(`{"type":"ADD","quantity":1`), 400, "invalid_request", "end of input"},
		{"empty body", write(``), 400, "invalid_request", "empty"},
		{"blank body", write("  \n"), 400, "invalid_request", "empty"},
		{"null body", write(`null`), 400, "invalid_request", "object"},
		{"array body", write(`[]`), 400, "invalid_request", "object"},
		{"string body", write(`"ADD"`), 400, "invalid_request", "object"},
		{"trailing garbage", write(add + ` x`), 400, "invalid_request", "after the document"},
		{"two documents", write(add + add), 400, "invalid_request", "after the document"},
		{"trailing comma", write(`{"type":"ADD","quantity":1,}`), 400, "invalid_request", "member name"},
		{"single quotes", write(`{'type':'ADD'}`), 400, "invalid_request", "member name"},
		{"leading zero", write(`{"type":"ADD","quantity":01}`), 400, "invalid_request", "leading zero"},
		{"control character", write("{\"type\":\"ADD\",\"quantity\":1,\"reason\":\"a\x01\"}"), 400, "invalid_request", "control"},
		{"invalid UTF-8", write("{\"type\":\"ADD\",\"quantity\":1,\"reason\":\"\xff\"}"), 400, "invalid_request", "UTF-8"},
		{"lone surrogate", write(`{"type":"ADD","quantity":1,"reason":"\ud800"}`), 400, "invalid_request", "surrogate"},
		{"bad escape", write(`{"type":"ADD","quantity":1,"reason":"\x"}`), 400, "invalid_request", "escape"},
		{"BOM", write("\ufeff" + add), 400, "invalid_request", "malformed"},

		// Schema: wrong types, names, duplicates.
		{"quantity as string", write(`{"type":"ADD","quantity":"2"}`), 400, "invalid_request", "quantity: must be an integer, not a string"},
		{"quantity with fraction", write(`{"type":"ADD","quantity":2.5}`), 400, "invalid_request", "quantity: must be an integer"},
		{"quantity 2.0", write(`{"type":"ADD","quantity":2.0}`), 400, "invalid_request", "quantity: must be an integer"},
		{"quantity with exponent", write(`{"type":"ADD","quantity":1e3}`), 400, "invalid_request", "quantity: must be an integer"},
		{"quantity true", write(`{"type":"ADD","quantity":true}`), 400, "invalid_request", "not a boolean"},
		{"quantity null", write(`{"type":"ADD","quantity":null}`), 400, "invalid_request", "not null"},
		{"quantity object", write(`{"type":"ADD","quantity":{}}`), 400, "invalid_request", "not an object"},
		{"type as number", write(`{"type":1,"quantity":1}`), 400, "invalid_request", "type: must be a string"},
		{"reason as number", write(`{"type":"ADD","quantity":1,"reason":5}`), 400, "invalid_request", "reason: must be a string"},
		{"ttl as string", write(`{"type":"RESERVE","quantity":1,"reservation_id":"x","ttl_seconds":"60"}`), 400, "invalid_request", "ttl_seconds"},
		{"duplicate key", write(`{"type":"ADD","quantity":1,"quantity":2}`), 400, "invalid_request", `duplicate field "quantity"`},
		{"duplicate key escaped", write(`{"type":"ADD","quantity":1,"quan\u0074ity":2}`), 400, "invalid_request", `duplicate field "quantity"`},
		{"key case", write(`{"Type":"ADD","quantity":1}`), 400, "invalid_request", `unknown field "Type"`},
		{"value case", write(`{"type":"add","quantity":1}`), 400, "invalid_request", "type must be one of"},
		{"unknown field", write(`{"type":"ADD","quantity":1,"foo":1}`), 400, "invalid_request", `unknown field "foo"`},
		{"product_id in body", write(`{"type":"ADD","quantity":1,"product_id":"q"}`), 400, "invalid_request", `unknown field "product_id"`},
		{"idempotency_key in body", write(`{"type":"ADD","quantity":1,"idempotency_key":"k"}`), 400, "invalid_request", `unknown field "idempotency_key"`},
		{"expected_version in body", write(`{"type":"ADD","quantity":1,"expected_version":2}`), 400, "invalid_request", `unknown field "expected_version"`},
		{"no type", write(`{"quantity":1}`), 400, "invalid_request", "type must be one of"},

		// Out-of-range values and fields that do not apply.
		{"quantity 0", write(`{"type":"ADD","quantity":0}`), 400, "invalid_request", "quantity must be an integer from 1"},
		{"quantity -1", write(`{"type":"ADD","quantity":-1}`), 400, "invalid_request", "quantity must be an integer from 1"},
		{"quantity too big", write(`{"type":"ADD","quantity":1000000001}`), 400, "invalid_request", "quantity must be an integer from 1"},
		{"quantity beyond int64", write(`{"type":"ADD","quantity":99999999999999999999999}`), 400, "invalid_request", "quantity must be an integer from 1"},
		{"quantity below int64", write(`{"type":"ADD","quantity":-99999999999999999999999}`), 400, "invalid_request", "quantity must be an integer from 1"},
		{"quantity 0 on COMMIT", write(`{"type":"COMMIT","quantity":0,"reservation_id":"r1"}`), 400, "invalid_request", "quantity must be an integer from 1"},
		{"no quantity on ADD", write(`{"type":"ADD"}`), 400, "invalid_request", "quantity"},
		{"ttl 0", write(`{"type":"RESERVE","quantity":1,"reservation_id":"x","ttl_seconds":0}`), 400, "invalid_request", "ttl_seconds must be"},
		{"ttl too long", write(`{"type":"RESERVE","quantity":1,"reservation_id":"x","ttl_seconds":604801}`), 400, "invalid_request", "ttl_seconds must be"},
		{"ttl on ADD", write(`{"type":"ADD","quantity":1,"ttl_seconds":60}`), 400, "invalid_request", "ttl_seconds applies only to RESERVE"},
		{"quantity on RELEASE", write(`{"type":"RELEASE","quantity":1,"reservation_id":"r1"}`), 400, "invalid_request", "quantity does not apply"},
		{"quantity 0 on RELEASE", write(`{"type":"RELEASE","quantity":0,"reservation_id":"r1"}`), 400, "invalid_request", "quantity does not apply"},
		{"reservation_id on ADD", write(`{"type":"ADD","quantity":1,"reservation_id":"r9"}`), 400, "invalid_request", "reservation_id does not apply"},
		{"empty reservation_id on ADD", write(`{"type":"ADD","quantity":1,"reservation_id":""}`), 400, "invalid_request", "reservation_id does not apply"},
		{"no reservation_id", write(`{"type":"RESERVE","quantity":1}`), 400, "invalid_request", "reservation_id"},
		{"empty reservation_id", write(`{"type":"RESERVE","quantity":1,"reservation_id":""}`), 400, "invalid_request", "reservation_id"},
		{"bad reservation_id", write(`{"type":"RESERVE","quantity":1,"reservation_id":"a b"}`), 400, "invalid_request", "reservation_id"},
		{"long reservation_id", write(`{"type":"RESERVE","quantity":1,"reservation_id":"` + long + `"}`), 400, "invalid_request", "reservation_id"},
		{"long reason", write(`{"type":"ADD","quantity":1,"reason":"` + strings.Repeat("é", 129) + `"}`), 400, "invalid_request", "reason"},
		{"bad product id", req{method: "POST", path: "/v1/products/a%20b/transactions", body: add, hdr: key()}, 400, "invalid_request", "product_id"},
		{"long product id", req{method: "POST", path: "/v1/products/" + long + "/transactions", body: add, hdr: key()}, 400, "invalid_request", "product_id"},

		// Headers.
		{"no Idempotency-Key", req{method: "POST", path: path, body: add}, 400, "invalid_request", "Idempotency-Key"},
		{"empty Idempotency-Key", req{method: "POST", path: path, body: add, hdr: []string{"Idempotency-Key", ""}}, 400, "invalid_request", "Idempotency-Key"},
		{"Idempotency-Key with space", req{method: "POST", path: path, body: add, hdr: []string{"Idempotency-Key", "a b"}}, 400, "invalid_request", "Idempotency-Key"},
		{"Idempotency-Key too long", req{method: "POST", path: path, body: add, hdr: []string{"Idempotency-Key", strings.Repeat("k", 256)}}, 400, "invalid_request", "Idempotency-Key"},
		{"Idempotency-Key repeated", req{method: "POST", path: path, body: add, hdr: []string{"Idempotency-Key", "a", "Idempotency-Key", "b"}}, 400, "invalid_request", "repeated"},
		{"If-Match unquoted", write(add, "If-Match", "2"), 400, "invalid_request", "If-Match"},
		{"If-Match weak", write(add, "If-Match", `W/"2"`), 400, "invalid_request", "If-Match"},
		{"If-Match star", write(add, "If-Match", "*"), 400, "invalid_request", "If-Match"},
		{"If-Match list", write(add, "If-Match", `"2", "3"`), 400, "invalid_request", "If-Match"},
		{"If-Match leading zero", write(add, "If-Match", `"02"`), 400, "invalid_request", "If-Match"},
		{"If-Match negative", write(add, "If-Match", `"-1"`), 400, "invalid_request", "If-Match"},
		{"If-Match empty quotes", write(add, "If-Match", `""`), 400, "invalid_request", "If-Match"},
		{"If-Match overflow", write(add, "If-Match", `"99999999999999999999"`), 400, "invalid_request", "If-Match"},
		{"If-Match repeated", write(add, "If-Match", `"2"`, "If-Match", `"2"`), 400, "invalid_request", "repeated"},
		{"X-Actor bad", write(add, "X-Actor", "bob smith"), 400, "invalid_request", "X-Actor"},
		{"X-Actor empty", write(add, "X-Actor", ""), 400, "invalid_request", "X-Actor"},
		{"X-Actor long", write(add, "X-Actor", long), 400, "invalid_request", "X-Actor"},
		{"Content-Type text, body not JSON", write("type=ADD&quantity=1", "Content-Type", "text/plain"), 400, "invalid_request", "body must be"},
		{"Content-Type form, body not JSON", write("type=ADD&quantity=1", "Content-Type", "application/x-www-form-urlencoded"), 400, "invalid_request", "body must be"},
		{"charset latin1", write(add, "Content-Type", "application/json; charset=latin1"), 400, "invalid_request", "UTF-8"},
		{"query on a write", req{method: "POST", path: path + "?dry_run=1", body: add, hdr: key()}, 400, "invalid_request", "dry_run"},

		// Sizes.
		{"body over 64 KiB", write(`{"type":"ADD","quantity":1,"reason":"` + strings.Repeat(" ", 64<<10) + `"}`), 413, "payload_too_large", "65536"},
		{"whitespace over 64 KiB", write(add + strings.Repeat(" ", 64<<10)), 413, "payload_too_large", "65536"},

		// Query parameters of history.
		{"after negative", req{method: "GET", path: path + "?after=-1"}, 400, "invalid_request", "after"},
		{"after not a number", req{method: "GET", path: path + "?after=x"}, 400, "invalid_request", "after"},
		{"after fraction", req{method: "GET", path: path + "?after=1.5"}, 400, "invalid_request", "after"},
		{"after leading zero", req{method: "GET", path: path + "?after=01"}, 400, "invalid_request", "after"},
		{"after plus", req{method: "GET", path: path + "?after=%2B1"}, 400, "invalid_request", "after"},
		{"after empty", req{method: "GET", path: path + "?after="}, 400, "invalid_request", "after"},
		{"after repeated", req{method: "GET", path: path + "?after=1&after=2"}, 400, "invalid_request", "repeated"},
		{"after overflow", req{method: "GET", path: path + "?after=99999999999999999999"}, 400, "invalid_request", "after"},
		{"limit 0", req{method: "GET", path: path + "?limit=0"}, 400, "invalid_request", "limit"},
		{"limit 1001", req{method: "GET", path: path + "?limit=1001"}, 400, "invalid_request", "limit"},
		{"limit negative", req{method: "GET", path: path + "?limit=-5"}, 400, "invalid_request", "limit"},
		{"limit huge", req{method: "GET", path: path + "?limit=9223372036854775807"}, 400, "invalid_request", "limit"},
		{"unknown parameter", req{method: "GET", path: path + "?offset=1"}, 400, "invalid_request", `"offset"`},
		{"bad escape in query", req{method: "GET", path: path + "?after=%zz"}, 400, "invalid_request", "query"},
		{"query on GET product", req{method: "GET", path: "/v1/products/p?x=1"}, 400, "invalid_request", `"x"`},
		{"query on GET reservation", req{method: "GET", path: "/v1/products/p/reservations/r1?x=1"}, 400, "invalid_request", `"x"`},
		{"bad reservation id in path", req{method: "GET", path: "/v1/products/p/reservations/a%20b"}, 400, "invalid_request", "reservation_id"},
		{"bad product id in GET", req{method: "GET", path: "/v1/products/a%20b"}, 400, "invalid_request", "product_id"},

		// Routes.
		{"unknown route", req{method: "GET", path: "/v1/stock"}, 404, "not_found", "no resource"},
		{"wrong method", req{method: "PUT", path: path, body: add}, 405, "method_not_allowed", "PUT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := ts.do(c.r)
			p := problem(t, w, c.status, c.code)
			if d, _ := p["detail"].(string); !strings.Contains(d, c.detail) {
				t.Errorf("detail %q does not mention %q", d, c.detail)
			}
		})
	}
	if v := ts.version("p"); v != 2 {
		t.Errorf("version %d after bad inputs, want 2: a refused request changed state", v)
	}
	if v := ts.version("q"); v != 0 {
		t.Errorf("product q has version %d", v)
	}
	if w := ts.do(req{method: "GET", path: "/healthz"}); w.Code != http.StatusOK {
		t.Errorf("healthz after bad inputs: %d", w.Code)
	}
	ts.mustWrite("p", add) // still takes writes
}

func TestValidEdgeInputs(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	// Whitespace, escapes, field order, charset and a -0 the schema allows.
	ts.mustWrite("p", " \r\n\t{ \"quantity\" : 1000000000 , \"type\" : \"ADD\" , \"reason\" : \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\/\" } \n",
		"Content-Type", "application/json; charset=UTF-8")
	res := ts.mustWrite("p", `{"type":"REMOVE","quantity":1,"reason":"`+strings.Repeat("é", 128)+`"}`)
	if r := res["transaction"].(map[string]any)["reason"].(string); len(r) != 256 {
		t.Errorf("a reason of 256 bytes came back as %d bytes", len(r))
	}
	w := ts.do(req{method: "GET", path: "/v1/products/p/transactions?limit=1"})
	tx := decodeJSON(t, w.Body.Bytes())["transactions"].([]any)[0].(map[string]any)
	if tx["reason"] != `café 😀 "q" /` {
		t.Errorf("reason %q", tx["reason"])
	}
	// Percent-encoded ids are decoded; the id charset allows ._~:@-
	ts.mustWrite("a.b_c~d:e@f-g", `{"type":"ADD","quantity":1}`)
	if v := ts.version("a%2Eb_c~d:e@f-g"); v != 1 {
		t.Errorf("escaped product id: version %d", v)
	}
	// If-Match "0" on a new product, then "1".
	ts.mustWrite("fresh", `{"type":"ADD","quantity":1}`, "If-Match", `"0"`)
	ts.mustWrite("fresh", `{"type":"ADD","quantity":1}`, "If-Match", `"1"`)
	// Longest ids and keys.
	ts.mustWrite(strings.Repeat("p", 128), `{"type":"ADD","quantity":1}`, "Idempotency-Key", strings.Repeat("~", 255),
		"X-Actor", strings.Repeat("a", 128))
	// A quantity of -0 is 0: absent on COMMIT? No: present, so refused.
	w = ts.write("p", `{"type":"COMMIT","quantity":-0,"reservation_id":"x"}`)
	problem(t, w, 400, "invalid_request")
}
