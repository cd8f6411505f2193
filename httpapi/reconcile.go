package httpapi

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/inventory-ledger/inventory/shard"
)

// routeReconcile runs a reconciliation and answers its report. It is an
// operational route: once access control exists it takes the admin role.
const routeReconcile = "/admin/reconcile"

// postReconcile is POST /admin/reconcile: it recomputes every shard's
// balances from its ledger, compares them with memory (shard.Reconciler)
// and answers 200 with the report, divergent products or not; a run
// already in progress makes it 503 overloaded. It takes no query and
// ignores any body.
func (s *server) postReconcile(c echo.Context) error {
	r := c.Request()
	if err := noQuery(r); err != nil {
		return err
	}
	if s.reconciler == nil {
		return newError(shard.CodeUnavailable, "reconciliation is not configured on this server")
	}
	rep, err := s.reconciler.Run(r.Context())
	if err != nil {
		return err
	}
	return s.reply(c, http.StatusOK, func(w encoder) { encodeReconcile(w, rep) })
}

// encodeReconcile writes a reconciliation report:
//
//	{"started_at", "duration_us", "divergent", "shards": [{"shard", "index",
//	 "products", "moved", "divergent", "divergences": [{"product_id",
//	 "reason", "live": Balances, "ledger": Balances}], "error"?}]}
func encodeReconcile(w encoder, rep *shard.ReconcileReport) {
	w.object(4)
	w.key("started_at")
	w.time(rep.Started.UnixNano())
	w.key("duration_us")
	w.int(int64(rep.Duration / time.Microsecond))
	w.key("divergent")
	w.int(int64(rep.Divergent()))
	w.key("shards")
	w.array(len(rep.Shards))
	for i := range rep.Shards {
		sh := &rep.Shards[i]
		n := 6
		if sh.Err != "" {
			n++
		}
		w.object(n)
		w.key("shard")
		w.int(int64(sh.Shard))
		w.key("index")
		w.int(int64(sh.Index))
		w.key("products")
		w.int(int64(sh.Products))
		w.key("moved")
		w.int(int64(sh.Moved))
		w.key("divergent")
		w.int(int64(sh.DivergentCount))
		w.key("divergences")
		w.array(len(sh.Divergent))
		for j := range sh.Divergent {
			d := &sh.Divergent[j]
			w.object(4)
			w.key("product_id")
			w.str(d.ProductID)
			w.key("reason")
			w.str(d.Reason)
			w.key("live")
			encodeBalances(w, d.Live)
			w.key("ledger")
			encodeBalances(w, d.Ledger)
			w.end()
		}
		w.end()
		if sh.Err != "" {
			w.key("error")
			w.str(sh.Err)
		}
		w.end()
	}
	w.end()
	w.end()
}

func encodeBalances(w encoder, b shard.Balances) {
	w.object(3)
	w.key("version")
	w.int(b.Version)
	w.key("on_hand")
	w.int(b.OnHand)
	w.key("reserved")
	w.int(b.Reserved)
	w.end()
}
