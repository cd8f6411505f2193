package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// What openapi.json says about the query string of an operation that
// documents no query parameter; each such operation says exactly one.
const (
	queryRejected = "Takes no query parameters (any is 400)."
	queryIgnored  = "Ignores the query string"
)

// TestQueryStringAsDocumented sends every documented operation that takes
// no query parameter once without and once with an unknown one, and checks
// that the server does what the operation's description says: the /v1
// routes refuse it with 400, the operational routes (health, readiness,
// metrics, this document) answer as if it were not there.
func TestQueryStringAsDocumented(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.mustWrite("p", `{"type":"ADD","quantity":5}`)
	ts.mustWrite("p", `{"type":"RESERVE","quantity":1,"reservation_id":"r1"}`)

	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]struct {
				In string `json:"in"`
			} `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op struct {
				Description string `json:"description"`
				Parameters  []struct {
					Ref string `json:"$ref"`
					In  string `json:"in"`
				} `json:"parameters"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			hasQuery := false
			for _, p := range op.Parameters {
				in := p.In
				if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
					in = doc.Components.Parameters[name].In
				}
				hasQuery = hasQuery || in == "query"
			}
			if hasQuery {
				continue
			}
			name := strings.ToUpper(method) + " " + path
			rejects, ignores := strings.Contains(op.Description, queryRejected), strings.Contains(op.Description, queryIgnored)
			if rejects == ignores {
				t.Errorf("%s: the description must say either %q or %q: %q", name, queryRejected, queryIgnored, op.Description)
				continue
			}
			checked[name] = true
			url := strings.NewReplacer("{product_id}", "p", "{reservation_id}", "r1").Replace(path)
			base := ts.do(requestFor(strings.ToUpper(method), url))
			if base.Code >= 300 {
				t.Errorf("%s without a query: %d %s", name, base.Code, base.Body)
				continue
			}
			w := ts.do(requestFor(strings.ToUpper(method), url+"?x=1"))
			if rejects {
				problem(t, w, http.StatusBadRequest, "invalid_request")
				continue
			}
			if w.Code != base.Code || w.Header().Get("Content-Type") != base.Header().Get("Content-Type") {
				t.Errorf("%s?x=1: %d %q, without the query %d %q", name, w.Code, w.Header().Get("Content-Type"),
					base.Code, base.Header().Get("Content-Type"))
			}
		}
	}
	for _, name := range []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json", "GET /v1/products/{product_id}/reservations/{reservation_id}", "POST /v1/batch"} {
		if !checked[name] {
			t.Errorf("%s was not checked", name)
		}
	}
}

// requestFor returns a request of method on path that succeeds: writes get
// a valid body and a fresh idempotency key.
func requestFor(method, path string) req {
	r := req{method: method, path: path}
	switch {
	case method != http.MethodPost:
	case strings.HasPrefix(path, "/v1/batch"):
		r.body = `{"ops":[{"product_id":"p","type":"ADD","quantity":1,"idempotency_key":"` + newKey() + `"}]}`
	default:
		r.body = `{"type":"ADD","quantity":1}`
		r.hdr = []string{"Idempotency-Key", newKey()}
	}
	return r
}
