package shard

import (
	"context"
	"fmt"
)

// StockAsOf returns a product's stock as it was right after the last of its
// entries created at or before t (Unix nanoseconds): the running balances
// and the version that entry carries. A product without an entry created
// by then is not_found.
//
// What "created at or before t" means: the last entry in version order
// whose created_at is at or before t. apply refuses an entry of a product
// created before the product's previous one, live and in replay (the actor
// never stamps below the last created_at it replayed, even after the wall
// clock stepped back), so created_at never decreases along a product's
// versions and the entries at or before t are a prefix of its history: that
// entry is also the latest one by time, and a binary search finds it.
// Entries of one flight share a created_at, so they are in or out together.
//
// It reads through the shard actor, like every read: each step asks the
// actor for the locators of a few versions (a request through the normal
// queue, answered once its flight is durable, and held back while an atomic
// batch holds the product), then reads those entries from the journal on
// the caller's goroutine. Nothing tentative is ever seen: a prepared tx's
// entries have no versions until committed. The first step also gets the
// current stock; when its last entry is already at or before t, that is
// the answer. Otherwise each step narrows the range of versions to 1/65th:
// four steps for ten million entries, each reading at most 64 of them.
func (e *Engine) StockAsOf(ctx context.Context, productID string, t int64) (Stock, *Error) {
	r := newRequest(reqLocate)
	s, err := e.ask(ctx, r, productID, "")
	if err != nil {
		return Stock{}, err
	}
	if r.stock.UpdatedAt <= t {
		return r.stock, nil
	}
	// Entry lo (0: none) is created at or before t, entry hi after it.
	lo, hi := int64(0), r.stock.Version
	var last Entry
	for hi-lo > 1 {
		r = newRequest(reqLocate)
		r.versions = probeVersions(lo, hi, asOfProbesMax)
		if _, err := e.ask(ctx, r, productID, ""); err != nil {
			return Stock{}, err
		}
		ens, err := e.read(s, r.locs...)
		if err != nil {
			return Stock{}, err
		}
		for k := range ens {
			en := &ens[k]
			if en.ProductID != productID || en.Version != r.versions[k] {
				e.cfg.Logger.Error("as_of: the journal returned another entry", "shard", s, "product", productID,
					"want_version", r.versions[k], "got_product", en.ProductID, "got_version", en.Version)
				return Stock{}, errorf(CodeUnavailable, "ledger entry could not be read")
			}
			if en.CreatedAt > t {
				hi = en.Version
				break
			}
			lo, last = en.Version, *en
		}
	}
	if lo == 0 {
		return Stock{}, errorf(CodeNotFound, "product %q has no entries created at or before that time", productID)
	}
	return stockAfter(&last), nil
}

// asOfProbesMax is how many versions one step of StockAsOf reads: the
// range shrinks 65-fold per step, at the cost of 64 record reads (about
// 32 KiB) and one round trip through the actor.
const asOfProbesMax = 64

// probeVersions returns up to n versions strictly between lo and hi, in
// ascending order and evenly spread: all of them when there are at most n.
func probeVersions(lo, hi int64, n int) []int64 {
	gap := hi - lo - 1
	if gap <= int64(n) {
		vs := make([]int64, 0, gap)
		for v := lo + 1; v < hi; v++ {
			vs = append(vs, v)
		}
		return vs
	}
	vs := make([]int64, n)
	for j := range vs {
		// Steps of (hi-lo)/(n+1) >= 1: strictly ascending, inside (lo, hi).
		vs[j] = lo + int64(j+1)*(hi-lo)/int64(n+1)
	}
	return vs
}

// finishLocate answers a reqLocate: the product's stock, and the locators
// of r.versions. Called only from the actor goroutine.
func (st *State) finishLocate(r *request) {
	p := st.products[r.productID]
	if p == nil {
		r.err = errorf(CodeNotFound, "product %q has no entries", r.productID)
		return
	}
	r.stock = p.stock(r.productID)
	r.locs = make([]uint64, len(r.versions))
	for i, v := range r.versions {
		if v < 1 || v > p.version {
			// Callers ask only for versions at or below one the actor
			// reported, and versions never go away: this is a bug.
			panic(fmt.Sprintf("shard %d: locator of version %d of %q, which is at version %d", st.shard, v, r.productID, p.version))
		}
		// The locators a snapshot covers are in its file, not in p.locs.
		loc, err := st.locAt(p, v)
		if err != nil {
			r.err = err
			return
		}
		r.locs[i] = loc
	}
}
