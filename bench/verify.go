package main

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

// ack is one entry a 2xx answer reported: the ledger must hold an entry
// with this id at this version.
type ack struct {
	version int64
	idHash  uint64
	typ     string
}

// productBook is what the harness knows of one product from the answers
// it got.
type productBook struct {
	mu   sync.Mutex
	acks []ack
	// unknown counts writes (ops) whose outcome is unknown: no answer or
	// a 5xx. Each may or may not be in the ledger.
	unknown int64
	// expectReserved is the quantity of acknowledged holds with a long TTL
	// that no acknowledged COMMIT or RELEASE settled; expectExpire the
	// number of acknowledged holds left to expire.
	expectReserved int64
	expectExpire   int64
	expiresBy      time.Time // latest TTL end of those
}

// book is the harness's record of every product it touched. Safe for
// concurrent use.
type book struct {
	mu       sync.Mutex
	products map[string]*productBook
	order    []string // first-touch order, for a stable report
}

var idSeed = maphash.MakeSeed()

func hashID(id string) uint64 { return maphash.String(idSeed, id) }

func newBook() *book { return &book{products: map[string]*productBook{}} }

func (b *book) product(pid string) *productBook {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.products[pid]
	if !ok {
		p = &productBook{}
		b.products[pid] = p
		b.order = append(b.order, pid)
	}
	return p
}

// acked records the entries of an acknowledged write.
func (b *book) acked(entries []Entry) {
	for _, e := range entries {
		p := b.product(e.ProductID)
		p.mu.Lock()
		p.acks = append(p.acks, ack{version: e.Version, idHash: hashID(e.ID), typ: e.Type})
		p.mu.Unlock()
	}
}

// unknownOutcome records n ops on pid whose outcome is unknown.
func (b *book) unknownOutcome(pid string, n int64) {
	p := b.product(pid)
	p.mu.Lock()
	p.unknown += n
	p.mu.Unlock()
}

// held records an acknowledged hold of q; ttl short means it is left to
// expire.
func (b *book) held(pid string, q int64, expiring bool, ttl time.Duration) {
	p := b.product(pid)
	p.mu.Lock()
	if expiring {
		p.expectExpire++
		p.expiresBy = maxTime(p.expiresBy, time.Now().Add(ttl))
	} else {
		p.expectReserved += q
	}
	p.mu.Unlock()
}

// settled records an acknowledged COMMIT or RELEASE of a long hold of q.
func (b *book) settled(pid string, q int64) {
	p := b.product(pid)
	p.mu.Lock()
	p.expectReserved -= q
	p.mu.Unlock()
}

// expiriesDone is when every hold left to expire should have expired: its
// TTL plus the service's one second to notice.
func (b *book) expiriesDone() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var t time.Time
	for _, p := range b.products {
		p.mu.Lock()
		if p.expectExpire > 0 {
			t = maxTime(t, p.expiresBy.Add(time.Second))
		}
		p.mu.Unlock()
	}
	return t
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// facts is what a checker learnt from one product's ledger.
type facts struct {
	entries     int64
	counts      map[string]int64 // entries by type
	quantities  map[string]int64 // quantity moved by type
	expired     int64            // RELEASEs the service wrote for expired holds
	unackedOwn  int64            // entries not written by the service that no ack names
	activeHolds int64
	last        Stock // balances after the last entry
}

// problemsMax bounds the problems kept per product; the rest are counted.
const problemsMax = 20

// checker replays one product's ledger, entry by entry in version order,
// checking every invariant the API promises, and matches the entries
// against the acknowledgements the harness received.
type checker struct {
	pid      string
	acks     []ack // sorted by version
	ackNext  int
	f        facts
	holds    map[string]int64 // active holds: reservation id → quantity held
	used     map[string]bool  // every reservation id ever reserved
	partial  string           // reservation whose remainder must be released next
	problems []string
	dropped  int
}

func newChecker(pid string, acks []ack) *checker {
	acks = slices.Clone(acks)
	slices.SortFunc(acks, func(a, b ack) int { return cmp.Compare(a.version, b.version) })
	return &checker{pid: pid, acks: acks, holds: map[string]int64{}, used: map[string]bool{},
		f: facts{counts: map[string]int64{}, quantities: map[string]int64{}}}
}

func (c *checker) fail(format string, args ...any) {
	if len(c.problems) >= problemsMax {
		c.dropped++
		return
	}
	c.problems = append(c.problems, fmt.Sprintf("%s: ", c.pid)+fmt.Sprintf(format, args...))
}

// add checks the next entry of the ledger.
func (c *checker) add(e Entry) {
	prev := c.f.last
	c.f.entries++
	v := c.f.entries
	if e.Version != v {
		c.fail("entry %s has version %d, want %d (versions must run 1..n without gaps)", e.ID, e.Version, v)
	}
	if e.ProductID != c.pid {
		c.fail("version %d belongs to product %q", e.Version, e.ProductID)
	}
	q := e.Quantity
	if q <= 0 {
		c.fail("version %d: quantity %d not positive", e.Version, q)
	}
	wantOnHand, wantReserved, wantDelta := prev.OnHand, prev.Reserved, int64(0)
	if c.partial != "" && (e.Type != "RELEASE" || e.ReservationID != c.partial) {
		c.fail("version %d: a partial COMMIT of %q is not followed by the RELEASE of its remainder", e.Version, c.partial)
		delete(c.holds, c.partial)
		c.partial = ""
	}
	switch e.Type {
	case "ADD", "RETURN":
		wantOnHand += q
		wantDelta = q
	case "REMOVE":
		wantOnHand -= q
		wantDelta = -q
	case "RESERVE":
		wantReserved += q
		wantDelta = -q
		if e.ReservationID == "" || c.used[e.ReservationID] {
			c.fail("version %d: RESERVE reuses reservation id %q", e.Version, e.ReservationID)
		}
		c.used[e.ReservationID] = true
		c.holds[e.ReservationID] = q
	case "COMMIT":
		wantOnHand -= q
		wantReserved -= q
		held, ok := c.holds[e.ReservationID]
		switch {
		case !ok:
			c.fail("version %d: COMMIT of %q, which is not an active hold", e.Version, e.ReservationID)
		case q > held:
			c.fail("version %d: COMMIT of %d exceeds the %d held by %q", e.Version, q, held, e.ReservationID)
		case q < held:
			c.holds[e.ReservationID] = held - q
			c.partial = e.ReservationID
		default:
			delete(c.holds, e.ReservationID)
		}
	case "RELEASE":
		wantReserved -= q
		wantDelta = q
		held, ok := c.holds[e.ReservationID]
		switch {
		case !ok:
			c.fail("version %d: RELEASE of %q, which is not an active hold", e.Version, e.ReservationID)
		case q != held:
			c.fail("version %d: RELEASE of %d, but %q holds %d", e.Version, q, e.ReservationID, held)
		}
		delete(c.holds, e.ReservationID)
		c.partial = ""
		if e.CreatedBy == "system" && e.Reason == "expired" {
			c.f.expired++
		}
	default:
		c.fail("version %d: unknown type %q", e.Version, e.Type)
	}
	if e.Delta != wantDelta {
		c.fail("version %d (%s %d): delta %d, want %d", e.Version, e.Type, q, e.Delta, wantDelta)
	}
	if e.OnHand != wantOnHand || e.Reserved != wantReserved {
		c.fail("version %d (%s %d): on_hand %d reserved %d, want the running sums %d and %d",
			e.Version, e.Type, q, e.OnHand, e.Reserved, wantOnHand, wantReserved)
	}
	if e.Available != e.OnHand-e.Reserved {
		c.fail("version %d: available %d != on_hand %d - reserved %d", e.Version, e.Available, e.OnHand, e.Reserved)
	}
	if e.Available < 0 || e.Reserved < 0 || e.OnHand < 0 {
		c.fail("version %d: negative balance (on_hand %d reserved %d available %d): oversold",
			e.Version, e.OnHand, e.Reserved, e.Available)
	}
	c.f.counts[e.Type]++
	c.f.quantities[e.Type] += q
	// Match acknowledgements at this version.
	matched := false
	for c.ackNext < len(c.acks) && c.acks[c.ackNext].version <= e.Version {
		a := c.acks[c.ackNext]
		c.ackNext++
		if a.version < e.Version {
			continue // reported as missing when its version was passed; cannot happen in order
		}
		if a.idHash != hashID(e.ID) || a.typ != e.Type {
			c.fail("version %d: acknowledged %s entry is not in the ledger (the ledger has %s %s there)",
				a.version, a.typ, e.Type, e.ID)
			continue
		}
		matched = true
	}
	if !matched && e.CreatedBy != "system" {
		c.f.unackedOwn++
	}
	// Track the running balances from the entry itself so one bad entry
	// is reported once, not at every later version.
	c.f.last = Stock{ProductID: c.pid, OnHand: e.OnHand, Reserved: e.Reserved, Available: e.Available, Version: e.Version}
}

// finish checks the end of the ledger against the product's current stock
// and the acknowledgements never matched; unknown is the number of writes
// whose outcome the harness does not know.
func (c *checker) finish(stock Stock, unknown int64) (facts, []string) {
	if c.partial != "" {
		c.fail("the ledger ends after a partial COMMIT of %q without the RELEASE of its remainder", c.partial)
	}
	l := c.f.last
	if stock.Version != l.Version || stock.OnHand != l.OnHand || stock.Reserved != l.Reserved || stock.Available != l.Available {
		c.fail("stock (version %d on_hand %d reserved %d available %d) differs from the ledger's end (version %d on_hand %d reserved %d available %d)",
			stock.Version, stock.OnHand, stock.Reserved, stock.Available, l.Version, l.OnHand, l.Reserved, l.Available)
	}
	var held int64
	for _, q := range c.holds {
		held += q
	}
	c.f.activeHolds = int64(len(c.holds))
	if held != l.Reserved {
		c.fail("reserved %d but the active holds in the ledger sum to %d", l.Reserved, held)
	}
	if missing := len(c.acks) - c.ackNext; missing > 0 {
		c.fail("%d acknowledged entries are missing from the ledger (first: %s at version %d; the ledger ends at %d)",
			missing, c.acks[c.ackNext].typ, c.acks[c.ackNext].version, l.Version)
	}
	if c.f.unackedOwn > unknown {
		c.fail("%d entries no acknowledged write made, but only %d writes had an unknown outcome: a refused write took effect",
			c.f.unackedOwn, unknown)
	}
	if c.dropped > 0 {
		c.problems = append(c.problems, fmt.Sprintf("%s: ... and %d more problems", c.pid, c.dropped))
	}
	return c.f, c.problems
}

// ledgerPageLimit is the page size of the ledger walk: the API's maximum.
const ledgerPageLimit = 1000

// verifyProduct fetches the stock and the whole ledger of pid and checks
// them. The walk is bounded: it stops after the stock's version plus one
// page, so a ledger that keeps growing or loops cannot hold it.
func verifyProduct(ctx context.Context, c *client, pid string, pb *productBook) (facts, []string) {
	stock, r := c.stock(ctx, pid)
	if r.err != nil || r.status != 200 {
		return facts{}, []string{fmt.Sprintf("%s: GET stock: status %d %s %v", pid, r.status, r.code, r.err)}
	}
	pb.mu.Lock()
	ch := newChecker(pid, pb.acks)
	unknown := pb.unknown
	pb.mu.Unlock()
	pagesMax := stock.Version/ledgerPageLimit + 2
	after := int64(0)
	for page := int64(0); ; page++ {
		if page >= pagesMax {
			ch.fail("ledger walk passed %d pages for %d entries", pagesMax, stock.Version)
			break
		}
		p, err := c.ledgerPage(ctx, pid, after, ledgerPageLimit)
		if err != nil {
			ch.fail("read ledger after %d: %v", after, err)
			break
		}
		for _, e := range p.Transactions {
			ch.add(e)
		}
		if p.NextAfter == nil {
			break
		}
		if *p.NextAfter <= after {
			ch.fail("ledger page after %d says next_after %d: not advancing", after, *p.NextAfter)
			break
		}
		after = *p.NextAfter
	}
	return ch.finish(stock, unknown)
}

// verification is the verdict of one run.
type verification struct {
	Verified bool     `json:"verified"`
	Skipped  bool     `json:"skipped,omitempty"`
	Products int      `json:"products"`
	Entries  int64    `json:"entries"`
	Acked    int64    `json:"acked_entries"`
	Unknown  int64    `json:"unknown_outcomes"`
	Problems []string `json:"problems"`
	Facts    any      `json:"facts,omitempty"` // the scenario's totals
}

// verifyAll checks every product in the book, a few at a time, and
// returns per-product facts.
func verifyAll(ctx context.Context, c *client, b *book) (map[string]facts, *verification) {
	b.mu.Lock()
	pids := slices.Clone(b.order)
	b.mu.Unlock()
	v := &verification{Products: len(pids)}
	all := make(map[string]facts, len(pids))
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, pid := range pids {
		pb := b.product(pid)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f, probs := verifyProduct(ctx, c, pid, pb)
			pb.mu.Lock()
			acked, unknown := int64(len(pb.acks)), pb.unknown
			pb.mu.Unlock()
			mu.Lock()
			all[pid] = f
			v.Entries += f.entries
			v.Acked += acked
			v.Unknown += unknown
			v.Problems = append(v.Problems, probs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(v.Problems)
	return all, v
}
