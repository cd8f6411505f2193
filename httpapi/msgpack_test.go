package httpapi

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// fromMsgpack decodes a msgpack answer and re-encodes it through JSON, so
// that it compares equal to the JSON answer it should match.
func fromMsgpack(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := msgpack.Unmarshal(b, &v); err != nil {
		t.Fatalf("msgpack answer: %v", err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return decodeJSON(t, j)
}

func TestMsgpackRoundTrip(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.mustWrite("p", `{"type":"ADD","quantity":300000}`)
	body, err := msgpack.Marshal(map[string]any{
		"type": "RESERVE", "quantity": 70000, "reservation_id": "order-1", "ttl_seconds": 600, "reason": "checkout é",
	})
	if err != nil {
		t.Fatal(err)
	}
	hdr := []string{"Content-Type", "application/msgpack", "Accept", "application/msgpack", "Idempotency-Key", "mp-1"}
	w := ts.do(req{method: "POST", path: "/v1/products/p/transactions", body: string(body), hdr: hdr})
	if w.Code != http.StatusCreated || w.Header().Get("Content-Type") != "application/msgpack" {
		t.Fatalf("msgpack write: %d %v %q", w.Code, w.Header(), w.Body)
	}
	got := fromMsgpack(t, w.Body.Bytes())

	// The JSON replay of the same request must say the same.
	jw := ts.do(req{method: "POST", path: "/v1/products/p/transactions", body: string(body),
		hdr: []string{"Content-Type", "application/msgpack", "Idempotency-Key", "mp-1"}})
	if jw.Code != http.StatusOK || jw.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("JSON replay: %d %v", jw.Code, jw.Header())
	}
	if want := decodeJSON(t, jw.Body.Bytes()); !equalJSON(got, want) {
		t.Errorf("msgpack answer\n%v\nJSON answer\n%v", got, want)
	}
	tx := got["transaction"].(map[string]any)
	checkEntry(t, tx, "reservation_id", "expires_at", "idempotency_key")
	if tx["quantity"] != 70000.0 || tx["reason"] != "checkout é" || tx["delta"] != -70000.0 {
		t.Errorf("entry %v", tx)
	}

	// Reads in msgpack.
	for _, path := range []string{"/v1/products/p", "/v1/products/p/transactions?limit=1", "/v1/products/p/reservations/order-1"} {
		mw := ts.do(req{method: "GET", path: path, hdr: []string{"Accept", "application/json;q=0.5, application/msgpack"}})
		jw := ts.do(req{method: "GET", path: path})
		if mw.Code != 200 || mw.Header().Get("Content-Type") != "application/msgpack" {
			t.Errorf("GET %s in msgpack: %d %v", path, mw.Code, mw.Header())
			continue
		}
		if got, want := fromMsgpack(t, mw.Body.Bytes()), decodeJSON(t, jw.Body.Bytes()); !equalJSON(got, want) {
			t.Errorf("GET %s: msgpack %v, JSON %v", path, got, want)
		}
	}
	// JSON preferred, or no msgpack: JSON.
	for _, accept := range []string{"application/json, application/msgpack;q=0.9", "*/*", "text/html", "application/msgpack;q=0"} {
		w := ts.do(req{method: "GET", path: "/v1/products/p", hdr: []string{"Accept", accept}})
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Accept %q: Content-Type %q", accept, ct)
		}
	}
	// Problems are JSON even for msgpack clients.
	w = ts.do(req{method: "GET", path: "/v1/products/none", hdr: []string{"Accept", "application/msgpack"}})
	problem(t, w, 404, "not_found")

	// A batch in msgpack, with a refused op.
	bb, _ := msgpack.Marshal(map[string]any{"atomic": false, "ops": []map[string]any{
		{"product_id": "p", "type": "REMOVE", "quantity": 1, "idempotency_key": "mb-1", "expected_version": 2},
		{"product_id": "p", "type": "REMOVE", "quantity": 1 << 40, "idempotency_key": "mb-2"},
	}})
	w = ts.do(req{method: "POST", path: "/v1/batch", body: string(bb), hdr: []string{"Content-Type", "application/msgpack", "Accept", "application/msgpack"}})
	if w.Code != 200 {
		t.Fatalf("msgpack batch: %d %s", w.Code, w.Body)
	}
	rs := fromMsgpack(t, w.Body.Bytes())["results"].([]any)
	if r0, r1 := rs[0].(map[string]any), rs[1].(map[string]any); r0["status"] != 201.0 || r1["status"] != 400.0 ||
		r1["error"].(map[string]any)["op_index"] != 1.0 {
		t.Errorf("msgpack batch results %v", rs)
	}
}

// mp builds msgpack documents by hand, for inputs a library would not make.
func mp(build func(e *msgpackEncoder)) string {
	var e msgpackEncoder
	build(&e)
	return string(e.b)
}

func TestMsgpackBadInputs(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.mustWrite("p", `{"type":"ADD","quantity":1}`)
	valid := mp(func(e *msgpackEncoder) { e.object(2); e.key("type"); e.str("ADD"); e.key("quantity"); e.int(1) })
	cases := []struct {
		name, body, detail string
	}{
		{"empty", "", "empty"},
		{"not a map", mp(func(e *msgpackEncoder) { e.array(0) }), "must be a map"},
		{"nil", mp(func(e *msgpackEncoder) { e.null() }), "must be a map"},
		{"trailing bytes", valid + "\x00", "after the document"},
		{"truncated", valid[:len(valid)-1], "end of input"},
		{"duplicate key", mp(func(e *msgpackEncoder) {
			e.object(3)
			e.key("type")
			e.str("ADD")
			e.key("quantity")
			e.int(1)
			e.key("quantity")
			e.int(2)
		}), "duplicate"},
		{"unknown field", mp(func(e *msgpackEncoder) { e.object(2); e.key("type"); e.str("ADD"); e.key("Quantity"); e.int(1) }), "unknown field"},
		{"float quantity", mp(func(e *msgpackEncoder) {
			e.object(2)
			e.key("type")
			e.str("ADD")
			e.key("quantity")
			e.b = append(e.b, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0) // float64 1.0
		}), "not a float"},
		{"string quantity", mp(func(e *msgpackEncoder) { e.object(2); e.key("type"); e.str("ADD"); e.key("quantity"); e.str("1") }), "not a string"},
		{"nil reason", mp(func(e *msgpackEncoder) {
			e.object(3)
			e.key("type")
			e.str("ADD")
			e.key("quantity")
			e.int(1)
			e.key("reason")
			e.null()
		}), "not nil"},
		{"binary type", mp(func(e *msgpackEncoder) {
			e.object(2)
			e.key("type")
			e.b = append(e.b, 0xc4, 3, 'A', 'D', 'D')
			e.key("quantity")
			e.int(1)
		}), "not binary"},
		{"integer key", mp(func(e *msgpackEncoder) { e.object(1); e.int(1); e.int(1) }), "keys must be strings"},
		{"uint64 quantity", mp(func(e *msgpackEncoder) {
			e.object(2)
			e.key("type")
			e.str("ADD")
			e.key("quantity")
			e.b = append(e.b, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		}), "quantity must be an integer from 1"},
		{"huge map count", "\xdf\xff\xff\xff\xff", "longer than the input"},
		{"reserved byte", "\xc1", "invalid msgpack"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := ts.write("p", c.body, "Content-Type", "application/msgpack")
			p := problem(t, w, 400, "invalid_request")
			if d, _ := p["detail"].(string); !contains(d, c.detail) {
				t.Errorf("detail %q does not mention %q", d, c.detail)
			}
		})
	}
	if v := ts.version("p"); v != 1 {
		t.Errorf("version %d after bad msgpack, want 1", v)
	}
	// And the valid one applies; integers of every width decode.
	ts.mustWrite("p", valid, "Content-Type", "application/msgpack")
	for _, q := range []int64{127, 128, 255, 256, 65535, 65536, 1000000000} {
		body, _ := msgpack.Marshal(map[string]any{"type": "ADD", "quantity": uint64(q)})
		ts.mustWrite("p", string(body), "Content-Type", "application/vnd.msgpack")
		body, _ = msgpack.Marshal(map[string]any{"type": "ADD", "quantity": q})
		ts.mustWrite("p", string(body), "Content-Type", "application/x-msgpack")
	}
}
