package httpapi

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzHandlers sends arbitrary requests through the whole handler stack on
// a real engine: no input may cause a 5xx or a panic, and every refusal is
// a problem document with a known code and the status that code maps to.
func FuzzHandlers(f *testing.F) {
	ts := newTestServer(f, serverOptions{})
	seeds := []struct {
		method, path, ct, hdr, body string
	}{
		{"POST", "/v1/products/p/transactions", "application/json", "Idempotency-Key: k1", `{"type":"ADD","quantity":5}`},
		{"POST", "/v1/products/p/transactions", "application/json", "Idempotency-Key: k2", `{"type":"RESERVE","quantity":2,"reservation_id":"r"}`},
		{"POST", "/v1/products/p/transactions", "", "If-Match: \"1\"", `{"type":"REMOVE","quantity":1}`},
		{"POST", "/v1/batch", "application/json", "X-Actor: me", `{"atomic":true,"ops":[{"product_id":"p","type":"COMMIT","reservation_id":"r","idempotency_key":"c"}]}`},
		{"GET", "/v1/products/p/transactions?after=0&limit=10", "", "", ""},
		{"GET", "/v1/products/p/reservations/r", "", "Accept: application/msgpack", ""},
		{"DELETE", "/v1/products/p", "", "", ""},
		{"POST", "/v1/products/p/transactions", "application/msgpack", "Idempotency-Key: m", "\x82\xa4type\xa3ADD\xa8quantity\x01"},
		{"POST", "/v1/batch", "application/json", "Prefer: return=minimal", `{"ops":[{"product_id":"p","type":"ADD","quantity":1,"idempotency_key":"pm"}]}`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.ct, s.hdr, s.body)
	}
	codes := map[string]int{}
	for c, p := range problems {
		codes[string(c)] = p.status
	}
	f.Fuzz(func(t *testing.T, method, path, ct, hdr, body string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t") || strings.ContainsAny(method, " \r\n\t/") || method == "" {
			return // not a request line a client can send
		}
		req := httptest.NewRequest("GET", "/", strings.NewReader(body))
		req.Method = method
		req.URL.Path, req.URL.RawQuery, _ = strings.Cut(path, "?")
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if name, value, ok := strings.Cut(hdr, ": "); ok && name != "" && !strings.ContainsAny(name+value, "\r\n") {
			req.Header.Add(name, value)
		}
		w := httptest.NewRecorder()
		ts.e.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s (%s, %s) %q: %d %s", method, path, ct, hdr, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var p struct {
				Code   string `json:"code"`
				Status int    `json:"status"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || codes[p.Code] != w.Code || p.Status != w.Code {
				t.Fatalf("%s %s: %d with problem %s", method, path, w.Code, w.Body)
			}
		}
	})
}
