package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// scenario is one workload. setup creates its products before the clock
// starts; step runs step number i, due at start (its first request is
// timed from start, follow-ups from their own send); done ends the run
// early; expect adds the scenario's own totals to the verdict.
type scenario interface {
	setup(ctx context.Context, e *env) error
	step(ctx context.Context, e *env, i int64, start time.Time)
	done() bool
	expect(e *env, all map[string]facts, v *verification)
}

// env is what a scenario works with.
type env struct {
	cfg    *config
	c      *client
	b      *book
	rec    *recorder
	prefix string // product id prefix: scenario, seed and run nonce
}

// longTTL is the TTL of holds that the harness settles or leaves active:
// far longer than any run, so none expires behind the harness's back.
const longTTL = 3600

// rngFor is step i's random source: the same seed gives every step the
// same choices, however the steps are spread over workers.
func (e *env) rngFor(i int64) *rand.Rand {
	return rand.New(rand.NewPCG(e.cfg.seed, uint64(i)))
}

func (e *env) pid(k int) string { return e.prefix + "-p" + strconv.Itoa(k) }

// write sends one single write timed from start, records it, and books
// its entries. It returns the answer and the decoded body on 2xx.
func (e *env) write(ctx context.Context, start time.Time, op Op) (reply, *writeResponse) {
	r, w := e.c.write(ctx, op)
	ok := int64(0)
	if w != nil {
		ok = 1
		e.b.acked(w.Transactions)
	} else if r.unknown() {
		e.b.unknownOutcome(op.ProductID, 1)
	}
	e.rec.record(start, r.at.Sub(start), r, 1, ok)
	return r, w
}

// batch sends ops as one batch timed from start, records it, and books
// every entry an op reported.
func (e *env) batch(ctx context.Context, start time.Time, atomic bool, ops []Op) (reply, *batchResponse) {
	r, br := e.c.batch(ctx, atomic, ops)
	ok := int64(0)
	switch {
	case br != nil:
		for _, res := range br.Results {
			if res.Status == 201 || res.Status == 200 {
				ok++
				e.b.acked(res.Transactions)
			} else if res.Error != nil {
				e.rec.opCode(res.Error.Code)
			} else {
				e.rec.opCode("unparsed")
			}
		}
	case r.unknown():
		for _, op := range ops {
			e.b.unknownOutcome(op.ProductID, 1)
		}
	}
	e.rec.record(start, r.at.Sub(start), r, int64(len(ops)), ok)
	return r, br
}

// stockUp puts qty units on each product in one or more non-atomic
// batches, before the run starts.
func (e *env) stockUp(ctx context.Context, pids []string, qty int64) error {
	for from := 0; from < len(pids); from += 1000 {
		var ops []Op
		for _, pid := range pids[from:min(from+1000, len(pids))] {
			ops = append(ops, Op{ProductID: pid, Type: "ADD", Quantity: qty, Reason: "bench setup", IdempotencyKey: "setup"})
		}
		r, br := e.c.batch(ctx, false, ops)
		if br == nil {
			return fmt.Errorf("setup batch: status %d %s %v", r.status, r.code, r.err)
		}
		for i, res := range br.Results {
			if res.Status != 201 {
				return fmt.Errorf("setup of %s: status %d", ops[i].ProductID, res.Status)
			}
			e.b.acked(res.Transactions)
		}
	}
	return nil
}

// weights is a parsed "name=weight,..." flag.
type weights struct {
	names []string
	cum   []int // cumulative weights
}

func parseWeights(s string, known ...string) (weights, error) {
	var w weights
	total := 0
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(val)
		if !ok || err != nil || n < 0 {
			return w, fmt.Errorf("%q: want name=weight with a whole weight >= 0", part)
		}
		valid := false
		for _, k := range known {
			valid = valid || k == name
		}
		if !valid || seen[name] {
			return w, fmt.Errorf("%q: name must be one of %s, each once", name, strings.Join(known, ", "))
		}
		seen[name] = true
		total += n
		w.names = append(w.names, name)
		w.cum = append(w.cum, total)
	}
	if total == 0 {
		return w, fmt.Errorf("%q: weights sum to zero", s)
	}
	return w, nil
}

func (w weights) pick(r *rand.Rand) string {
	x := r.IntN(w.cum[len(w.cum)-1])
	for i, c := range w.cum {
		if x < c {
			return w.names[i]
		}
	}
	return w.names[len(w.names)-1]
}

// ---- flashsale ----

// flashsale: one product with N units; every step reserves 1 unit (and
// commits it with -commit). The run ends when an answer shows the stock
// gone.
type flashsale struct {
	pid     string
	drained atomic.Bool
	holds   atomic.Int64 // acknowledged RESERVEs
	commits atomic.Int64 // acknowledged COMMITs
}

func (s *flashsale) setup(ctx context.Context, e *env) error {
	s.pid = e.prefix + "-hot"
	return e.stockUp(ctx, []string{s.pid}, e.cfg.units)
}

func (s *flashsale) done() bool { return s.drained.Load() }

func (s *flashsale) step(ctx context.Context, e *env, i int64, start time.Time) {
	rid := "h" + strconv.FormatInt(i, 10)
	r, w := e.write(ctx, start, Op{ProductID: s.pid, Type: "RESERVE", Quantity: 1, ReservationID: rid,
		TTLSeconds: longTTL, Reason: "flash sale", IdempotencyKey: rid + "-r"})
	if w == nil {
		if r.code == "insufficient_stock" {
			s.drained.Store(true)
		}
		return
	}
	s.holds.Add(1)
	e.b.held(s.pid, 1, false, 0)
	if w.Stock.Available == 0 {
		s.drained.Store(true)
	}
	if !e.cfg.commit {
		return
	}
	if _, w := e.write(ctx, time.Now(), Op{ProductID: s.pid, Type: "COMMIT", ReservationID: rid,
		Reason: "paid", IdempotencyKey: rid + "-c"}); w != nil {
		s.commits.Add(1)
		e.b.settled(s.pid, 1)
	}
}

func (s *flashsale) expect(e *env, all map[string]facts, v *verification) {
	f := all[s.pid]
	n := e.cfg.units
	pb := e.b.product(s.pid)
	holds, commits := s.holds.Load(), s.commits.Load()
	committed := f.quantities["COMMIT"]
	v.Facts = map[string]any{
		"units": n, "drained": s.drained.Load(), "holds_acknowledged": holds, "commits_acknowledged": commits,
		"ledger_reserves": f.counts["RESERVE"], "ledger_commits": f.counts["COMMIT"],
		"reserved": f.last.Reserved, "committed": committed, "available": f.last.Available,
	}
	if got := f.quantities["RESERVE"]; got > n {
		v.Problems = append(v.Problems, fmt.Sprintf("oversold: %d units reserved of %d", got, n))
	}
	if pb.unknown == 0 && f.counts["RESERVE"] != holds {
		v.Problems = append(v.Problems, fmt.Sprintf("%d holds acknowledged but %d RESERVE entries in the ledger", holds, f.counts["RESERVE"]))
	}
	if f.counts["RELEASE"] != 0 {
		v.Problems = append(v.Problems, fmt.Sprintf("%d RELEASE entries in a flash sale that releases nothing", f.counts["RELEASE"]))
	}
	if s.drained.Load() {
		if f.counts["RESERVE"] != n || f.last.Available != 0 || f.last.Reserved+committed != n {
			v.Problems = append(v.Problems, fmt.Sprintf("stock drained but reserve entries %d, reserved+committed %d, available %d; want %d, %d, 0",
				f.counts["RESERVE"], f.last.Reserved+committed, f.last.Available, n, n))
		}
		if pb.unknown == 0 && holds != n {
			v.Problems = append(v.Problems, fmt.Sprintf("stock drained after %d acknowledged holds, want exactly %d", holds, n))
		}
	}
}

// ---- checkout ----

// checkout: K products with Zipf popularity; each step is a cart of 1-5
// lines reserved by one atomic batch, then committed, released or left to
// expire by one more atomic batch, in the -outcomes proportions.
type checkout struct {
	carts, reservedCarts atomic.Int64
	outcomes             weights
	outcomeCounts        [3]atomic.Int64 // commit, release, expire
}

func (s *checkout) setup(ctx context.Context, e *env) error {
	w, err := parseWeights(e.cfg.outcomes, "commit", "release", "expire")
	if err != nil {
		return fmt.Errorf("-outcomes: %w", err)
	}
	s.outcomes = w
	return e.stockUp(ctx, allPids(e), e.cfg.stock)
}

func allPids(e *env) []string {
	var pids []string
	for k := range e.cfg.products {
		pids = append(pids, e.pid(k))
	}
	return pids
}

func (s *checkout) done() bool { return false }

// zipfPick returns n distinct products, popular ones more often.
func zipfPick(r *rand.Rand, e *env, n int) []int {
	z := rand.NewZipf(r, e.cfg.zipf, 1, uint64(e.cfg.products-1))
	n = min(n, e.cfg.products)
	var ks []int
	for tries := 0; len(ks) < n && tries < 64; tries++ {
		k := int(z.Uint64())
		dup := false
		for _, x := range ks {
			dup = dup || x == k
		}
		if !dup {
			ks = append(ks, k)
		}
	}
	return ks
}

func (s *checkout) step(ctx context.Context, e *env, i int64, start time.Time) {
	r := e.rngFor(i)
	ks := zipfPick(r, e, 1+r.IntN(5))
	outcome := s.outcomes.pick(r)
	rid := "c" + strconv.FormatInt(i, 10)
	ttl := int64(longTTL)
	if outcome == "expire" {
		ttl = int64(e.cfg.expireTTL / time.Second)
	}
	ops := make([]Op, len(ks))
	for j, k := range ks {
		ops[j] = Op{ProductID: e.pid(k), Type: "RESERVE", Quantity: 1 + int64(r.IntN(2)), ReservationID: rid,
			TTLSeconds: ttl, Reason: "cart", IdempotencyKey: rid + "-reserve-" + strconv.Itoa(j)}
	}
	s.carts.Add(1)
	_, br := e.batch(ctx, start, true, ops)
	if br == nil {
		return
	}
	s.reservedCarts.Add(1)
	for _, op := range ops {
		e.b.held(op.ProductID, op.Quantity, outcome == "expire", time.Duration(ttl)*time.Second)
	}
	var typ string
	switch outcome {
	case "commit":
		typ = "COMMIT"
		s.outcomeCounts[0].Add(1)
	case "release":
		typ = "RELEASE"
		s.outcomeCounts[1].Add(1)
	default:
		s.outcomeCounts[2].Add(1)
		return
	}
	settle := make([]Op, len(ops))
	for j, op := range ops {
		settle[j] = Op{ProductID: op.ProductID, Type: typ, ReservationID: rid, Reason: "cart " + outcome,
			IdempotencyKey: rid + "-" + outcome + "-" + strconv.Itoa(j)}
	}
	if _, br := e.batch(ctx, time.Now(), true, settle); br != nil {
		for _, op := range ops {
			e.b.settled(op.ProductID, op.Quantity)
		}
	}
}

func (s *checkout) expect(e *env, all map[string]facts, v *verification) {
	var reserves, commits, releases, expired int64
	for _, f := range all {
		reserves += f.counts["RESERVE"]
		commits += f.counts["COMMIT"]
		releases += f.counts["RELEASE"] - f.expired
		expired += f.expired
	}
	v.Facts = map[string]any{
		"carts": s.carts.Load(), "carts_reserved": s.reservedCarts.Load(),
		"carts_committed": s.outcomeCounts[0].Load(), "carts_released": s.outcomeCounts[1].Load(),
		"carts_left_to_expire": s.outcomeCounts[2].Load(),
		"ledger_reserves":      reserves, "ledger_commits": commits, "ledger_releases": releases, "ledger_expired": expired,
	}
}

// ---- mixed ----

// mixed: K products with Zipf popularity; each step is one of restock,
// return, remove, read, reserve (left active), commit (reserve then
// commit) or release (reserve then release), in the -mix proportions.
type mixed struct {
	mix weights
}

var mixNames = []string{"read", "reserve", "commit", "release", "restock", "return", "remove"}

func (s *mixed) setup(ctx context.Context, e *env) error {
	w, err := parseWeights(e.cfg.mix, mixNames...)
	if err != nil {
		return fmt.Errorf("-mix: %w", err)
	}
	s.mix = w
	return e.stockUp(ctx, allPids(e), e.cfg.stock)
}

func (s *mixed) done() bool { return false }

func (s *mixed) step(ctx context.Context, e *env, i int64, start time.Time) {
	r := e.rngFor(i)
	pid := e.pid(zipfPick(r, e, 1)[0])
	id := "m" + strconv.FormatInt(i, 10)
	q := 1 + int64(r.IntN(3))
	switch action := s.mix.pick(r); action {
	case "read":
		_, rp := e.c.stock(ctx, pid)
		e.rec.record(start, rp.at.Sub(start), rp, 0, 0)
	case "restock":
		e.write(ctx, start, Op{ProductID: pid, Type: "ADD", Quantity: 5 * q, Reason: "restock", IdempotencyKey: id})
	case "return":
		e.write(ctx, start, Op{ProductID: pid, Type: "RETURN", Quantity: q, Reason: "return", IdempotencyKey: id})
	case "remove":
		e.write(ctx, start, Op{ProductID: pid, Type: "REMOVE", Quantity: q, Reason: "damaged", IdempotencyKey: id})
	default: // reserve, commit, release
		_, w := e.write(ctx, start, Op{ProductID: pid, Type: "RESERVE", Quantity: q, ReservationID: id,
			TTLSeconds: longTTL, Reason: "order", IdempotencyKey: id + "-r"})
		if w == nil {
			return
		}
		e.b.held(pid, q, false, 0)
		if action == "reserve" {
			return
		}
		if _, w := e.write(ctx, time.Now(), Op{ProductID: pid, Type: strings.ToUpper(action), ReservationID: id,
			Reason: "order " + action, IdempotencyKey: id + "-" + action}); w != nil {
			e.b.settled(pid, q)
		}
	}
}

func (s *mixed) expect(e *env, all map[string]facts, v *verification) {
	byType := map[string]int64{}
	for _, f := range all {
		for t, n := range f.counts {
			byType[t] += n
		}
	}
	v.Facts = map[string]any{"ledger_entries_by_type": byType}
}

// ---- batch ----

// batchScenario: each step is one non-atomic batch of -ops RESERVE (or
// ADD) ops of 1 unit over a few products.
type batchScenario struct {
	okOps atomic.Int64
}

func (s *batchScenario) setup(ctx context.Context, e *env) error {
	if e.cfg.op != "reserve" && e.cfg.op != "add" {
		return fmt.Errorf("-op must be reserve or add, got %q", e.cfg.op)
	}
	if e.cfg.op == "add" {
		// Products need no stock for ADD, but one entry each makes them exist
		// for verification.
		return e.stockUp(ctx, allPids(e), 1)
	}
	return e.stockUp(ctx, allPids(e), e.cfg.stock)
}

func (s *batchScenario) done() bool { return false }

func (s *batchScenario) step(ctx context.Context, e *env, i int64, start time.Time) {
	r := e.rngFor(i)
	ops := make([]Op, e.cfg.opsPerRequest)
	base := "b" + strconv.FormatInt(i, 10) + "-"
	for j := range ops {
		id := base + strconv.Itoa(j)
		pid := e.pid(r.IntN(e.cfg.products))
		if e.cfg.op == "add" {
			ops[j] = Op{ProductID: pid, Type: "ADD", Quantity: 1, IdempotencyKey: id}
		} else {
			ops[j] = Op{ProductID: pid, Type: "RESERVE", Quantity: 1, ReservationID: id, TTLSeconds: longTTL, IdempotencyKey: id}
		}
	}
	_, br := e.batch(ctx, start, false, ops)
	if br == nil {
		return
	}
	for j, res := range br.Results {
		if res.Status == 201 {
			s.okOps.Add(1)
			if e.cfg.op == "reserve" {
				e.b.held(ops[j].ProductID, 1, false, 0)
			}
		}
	}
}

func (s *batchScenario) expect(e *env, all map[string]facts, v *verification) {
	var n int64
	for _, f := range all {
		n += f.counts[strings.ToUpper(e.cfg.op)]
	}
	v.Facts = map[string]any{"ops_acknowledged": s.okOps.Load(), "ledger_entries_of_op_type": n}
}
