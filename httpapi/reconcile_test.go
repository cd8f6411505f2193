package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestReconcileEndpoint(t *testing.T) {
	ts := newTestServer(t, serverOptions{shards: 2})
	for i := range 10 {
		p := "p" + strconv.Itoa(i)
		ts.mustWrite(p, `{"type":"ADD","quantity":5}`)
		ts.mustWrite(p, `{"type":"RESERVE","quantity":2,"reservation_id":"r"}`)
		ts.mustWrite(p, `{"type":"COMMIT","quantity":1,"reservation_id":"r"}`)
	}
	w := ts.do(req{method: "POST", path: "/admin/reconcile"})
	if w.Code != http.StatusOK {
		t.Fatalf("POST /admin/reconcile: %d %s", w.Code, w.Body)
	}
	rep := decodeJSON(t, w.Body.Bytes())
	if rep["divergent"] != float64(0) || rep["started_at"] == nil || rep["duration_us"] == nil {
		t.Errorf("report %v", rep)
	}
	shards := rep["shards"].([]any)
	products := 0.0
	for _, s := range shards {
		m := s.(map[string]any)
		products += m["products"].(float64)
		if m["divergent"] != float64(0) || len(m["divergences"].([]any)) != 0 || m["error"] != nil || m["index"].(float64) < 1 {
			t.Errorf("shard %v", m)
		}
	}
	if len(shards) != 2 || products != 10 {
		t.Errorf("%d shards, %v products compared; want 2 and 10", len(shards), products)
	}
	problem(t, ts.do(req{method: "POST", path: "/admin/reconcile?x=1"}), http.StatusBadRequest, "invalid_request")
	problem(t, ts.do(req{method: "GET", path: "/admin/reconcile"}), http.StatusMethodNotAllowed, "method_not_allowed")
	m := ts.do(req{method: "GET", path: "/metrics"}).Body.String()
	for _, want := range []string{`inventory_reconcile_divergence_total{shard="0"} 0`, `inventory_reconcile_divergence_total{shard="1"} 0`, "inventory_reconcile_runs_total 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
