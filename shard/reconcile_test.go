package shard

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// reconciler returns a Reconciler of te's engine over its journals.
func (te *testEngine) reconciler(reg prometheus.Registerer) *Reconciler {
	te.t.Helper()
	rc, err := NewReconciler(te.Engine, ReconcilerConfig{
		OpenLog:    func(i int) LogCursor { return te.js[i].Cursor() },
		Registerer: reg,
	})
	if err != nil {
		te.t.Fatal(err)
	}
	return rc
}

// ledgerWork writes a bit of everything over products p0..p{n-1}: adds, a
// partial commit, a release, and carts across shards.
func ledgerWork(te *testEngine, n int) {
	te.t.Helper()
	for i := range n {
		p := "p" + strconv.Itoa(i)
		te.write(add(p, 10))
		te.write(reserve(p, "r", 4))
		te.write(commit(p, "r", 1))
		te.write(reserve(p, "s", 2))
		te.write(release(p, "s"))
	}
	for i := 0; i+1 < n; i += 2 {
		a, b := "p"+strconv.Itoa(i), "p"+strconv.Itoa(i+1)
		if _, err := te.Batch(context.Background(), []Op{remove(a, 1), reserve(b, "cart", 1)}, true); err != nil {
			te.t.Fatalf("cart: %v", err)
		}
	}
}

func TestReconcileAgrees(t *testing.T) {
	te := startEngine(t, 3)
	ledgerWork(te, 40)
	reg := prometheus.NewRegistry()
	rep, err := te.reconciler(reg).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	compared := 0
	for _, s := range rep.Shards {
		if s.Err != "" || s.DivergentCount != 0 || s.Index == 0 {
			t.Errorf("shard %d: %+v", s.Shard, s)
		}
		compared += s.Products
	}
	if compared != 40 {
		t.Errorf("%d products compared, want 40", compared)
	}
	if got := divergenceTotal(t, reg); got != 0 {
		t.Errorf("divergence counter %v, want 0", got)
	}
}

// divergenceTotal returns the sum of inventory_reconcile_divergence_total.
func divergenceTotal(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() == "inventory_reconcile_divergence_total" {
			found = true
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	if !found {
		t.Error("inventory_reconcile_divergence_total is not registered")
	}
	return total
}

// TestReconcileWhileWriting reconciles while writers move the products:
// those that moved are compared at the version their shard reported, and
// nothing diverges.
func TestReconcileWhileWriting(t *testing.T) {
	te := startEngine(t, 2)
	ledgerWork(te, 20)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := "p" + strconv.Itoa((w*7+i)%20)
				if _, err := te.Write(context.Background(), add(p, 1)); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	rc := te.reconciler(nil)
	moved := 0
	for range 5 {
		rep, err := rc.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rep.Shards {
			if s.Err != "" || s.DivergentCount != 0 {
				t.Errorf("shard %d: %+v", s.Shard, s)
			}
			moved += s.Moved
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d products compared after they moved", moved)
}

// TestReconcileFindsDivergence changes a product's balance in memory (the
// seam: the test writes the actor's state between two of its requests,
// each a channel handoff) and expects the run to find, log and count it.
func TestReconcileFindsDivergence(t *testing.T) {
	te := startEngine(t, 2)
	ledgerWork(te, 10)
	te.write(add("lone", 3))
	s := Route("lone", 2)
	te.stock("lone") // the actor is done with the product
	te.actors[s].state.products["lone"].onHand++
	reg := prometheus.NewRegistry()
	rc := te.reconciler(reg)
	rep, err := rc.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Divergent() != 1 {
		t.Fatalf("%d divergent, want 1: %+v", rep.Divergent(), rep.Shards)
	}
	d := rep.Shards[s].Divergent[0]
	if d.ProductID != "lone" || d.Live != (Balances{1, 4, 0}) || d.Ledger != (Balances{1, 3, 0}) {
		t.Errorf("divergence %+v", d)
	}
	if got := divergenceTotal(t, reg); got != 1 {
		t.Errorf("divergence counter %v, want 1", got)
	}
	if _, err := rc.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := divergenceTotal(t, reg); got != 2 {
		t.Errorf("after a second run: divergence counter %v, want 2", got)
	}

	// A product in memory that the ledger does not have.
	te.stock("lone")
	te.actors[s].state.products["ghost"] = &product{version: 1, onHand: 1}
	rep, err = rc.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Divergent() != 2 || rep.Shards[s].Divergent[1].ProductID != "" {
		t.Errorf("with a product only in memory: %+v", rep.Shards[s])
	}
}

// BenchmarkFinishBalances measures what one live read of a reconciliation
// costs the actor: the balances of reconcileChunk products looked up among
// 1M.
func BenchmarkFinishBalances(b *testing.B) {
	st := NewState(0, int64(RetentionDefault))
	const n = 1_000_000
	for i := range n {
		st.products["p"+strconv.Itoa(i)] = &product{version: 1, onHand: 5}
	}
	r := newRequest(reqBalances)
	for i := range reconcileChunk {
		r.products = append(r.products, "p"+strconv.Itoa(i*3907%n))
	}
	b.ReportAllocs()
	for b.Loop() {
		st.finishBalances(r)
	}
}
