package main

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestReconcileIntervalFlag(t *testing.T) {
	for _, c := range []struct {
		v  string
		ok bool
	}{{"0", true}, {"1m", true}, {"168h", true}, {"59s", false}, {"169h", false}, {"-1m", false}} {
		cfg, err := parse([]string{"--reconcile-interval", c.v}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatalf("parse %s: %v", c.v, err)
		}
		err = cfg.Validate()
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "--reconcile-interval")) {
			t.Errorf("--reconcile-interval %s: %v", c.v, err)
		}
	}
	cfg, _ := parse(nil, func(k string) string { return map[string]string{"INVENTORY_RECONCILE_INTERVAL": "2h"}[k] }, io.Discard)
	if cfg.ReconcileInterval != 2*time.Hour {
		t.Errorf("INVENTORY_RECONCILE_INTERVAL: %s", cfg.ReconcileInterval)
	}
}

// TestReconcileOverHTTP reconciles the real binary's shards, read from
// their WAL files beside it, while a client keeps writing.
func TestReconcileOverHTTP(t *testing.T) {
	s := start(t, t.TempDir())
	for i := range 50 {
		p := "p" + strconv.Itoa(i)
		s.write(p, p+"-add", map[string]any{"type": "ADD", "quantity": 5})
		s.write(p, p+"-hold", map[string]any{"type": "RESERVE", "quantity": 2, "reservation_id": "r"})
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.write("p"+strconv.Itoa(i%50), "more-"+strconv.Itoa(i), map[string]any{"type": "ADD", "quantity": 1})
		}
	}()
	for range 3 {
		r := s.do("POST", "/admin/reconcile", nil)
		if r.status != 200 || r.body["divergent"] != float64(0) {
			t.Fatalf("POST /admin/reconcile: %d %s", r.status, r.raw)
		}
		products := 0.0
		for _, sh := range r.body["shards"].([]any) {
			m := sh.(map[string]any)
			if m["error"] != nil {
				t.Errorf("shard %v", m)
			}
			products += m["products"].(float64)
		}
		if products != 50 {
			t.Errorf("%v products compared, want 50: %s", products, r.raw)
		}
	}
	close(stop)
	<-done
}
