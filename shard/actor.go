package shard

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Journal is the durable log of one shard. The shard declares what it needs;
// package wal provides it.
type Journal interface {
	// Locate fills locs[i] with the locator recs[i] will have once the
	// block of recs is written: the next block after those located before.
	// It does no I/O and is called from the actor goroutine.
	Locate(recs [][]byte, locs []uint64) error
	// Write makes the oldest located block durable as one unit (one write,
	// one fsync); it is called from the shard's writer goroutine, in Locate
	// order. An error with a method Retryable() bool that reports true wrote
	// nothing a retry would duplicate (a failed open of a new file, say for
	// want of a descriptor): the journal is usable and Write is called
	// again with the same recs. After any other error the journal is failed
	// for good: never retried.
	Write(recs [][]byte) error
	// ReadMany returns the committed records at locs, in order. Safe for
	// concurrent use with Write from any goroutine.
	ReadMany(locs []uint64) ([][]byte, error)
	// Close syncs and closes the journal.
	Close() error
}

type reqKind uint8

const (
	reqWrite reqKind = iota
	reqStock
	reqHistory
	reqReservation
	reqPrepare // this shard's part of a tx: write it prepared (doc.go)
	reqResolve // the outcome of a tx: commit or abort its prepared part
	// reqLocate reads a product's stock and the locators of some versions
	// (asof.go); reqBalances the live balances of some products
	// (reconcile.go).
	reqLocate
	reqBalances
)

// request is one message to a shard actor. The caller fills the inputs and
// waits on done; the actor fills the outputs and sends on done exactly once.
type request struct {
	kind reqKind

	// Writes: this shard's ops, in batch order, and their index in the batch.
	ops    []Op
	index  []int
	atomic bool
	// evalOnly marks a prepare that only reports refusals: the batch fails
	// anyway, so nothing is written or parked.
	evalOnly bool
	// tx names the tx of a prepare or resolve; shards are its participants.
	// prio is the tx's age: the number of its first attempt, kept when it is
	// retried, so that a retried tx grows older until it waits, never dies.
	tx, prio uint64
	shards   []int
	// deadline is when the coordinator of a prepare stops waiting for it.
	deadline time.Time
	// commit marks a resolve that applies the prepared part (else it
	// aborts); durable marks an abort answered only once its ABORT record
	// is durable.
	commit, durable bool

	// Reads.
	productID     string
	reservationID string
	after         int64
	limit         int

	// Outputs.
	err     *Error     // the whole request failed
	results []opResult // one per op of a write
	stock   Stock
	resv    resvRecord
	locs    []uint64 // entries to read: history, or a reservation's entries
	next    int64    // history: next_after, or 0

	// reqLocate: the versions to locate (each at most the product's), whose
	// locators go in locs. reqBalances: the products to read, each one's
	// live balances, if found, and how many products the shard holds.
	versions []int64
	products []string
	live     []Balances
	found    []bool
	count    int

	done chan struct{}
}

// opResult is the outcome of one op.
type opResult struct {
	err     *Error
	entries []Entry // new entries; nil for a replay
	// replayOf is the first version of the original entries of a replay;
	// replayLocs are their locators (the next entry's too, which belongs to
	// the request if it is a continuation).
	replayOf   int64
	replayLocs [2]uint64
	replayN    int
	// replayed marks a replay of an earlier op of the same tx part, whose
	// entries are not applied yet: entries are that op's.
	replayed bool
	stock    Stock
}

func newRequest(kind reqKind) *request {
	return &request{kind: kind, done: make(chan struct{}, 1)}
}

// cost is what r takes of a flight's op budget, which bounds the bytes of
// the flight's records: an entry record per op (two for a partial COMMIT,
// counted in the block limit), and a tx record's participant list.
func (r *request) cost() int {
	return max(1, len(r.ops)) + len(r.shards)
}

// touches calls fn with every product the request reads or writes, until fn
// returns false.
func (r *request) touches(fn func(productID string) bool) {
	if r.kind == reqWrite || r.kind == reqPrepare {
		for i := range r.ops {
			if !fn(r.ops[i].ProductID) {
				return
			}
		}
		return
	}
	fn(r.productID)
}

// actor is the only goroutine that touches one shard's State. Each turn of
// its loop:
//
//  1. takes requests into the current flight, within the flight's op
//     budget: those that wait for it (below), if any; else it waits for one
//     event (a request in the inbox, a tx's outcome on ctrl, the timer, the
//     writer idle, a stop) and then drains the queues without blocking;
//  2. reads the clock once, expires due holds, forgets old idempotency keys;
//  3. decides and applies every request taken, in order (each sees those
//     before it), encoding the new entries into the current flight.
//
// When the event is the writer idle (the shard's writer goroutine waits for
// work, and the current flight holds something), the actor seals the flight
// (locates its records in the journal, fills in reads), hands it over and
// opens the other one: the writer writes it with one write and one fsync,
// then answers its requests.
//
// While the writer is busy with one flight, the actor keeps deciding into
// the next, so a flight holds everything that arrived during the previous
// fsync: the batch grows with the load and deciding overlaps the fsync.
// Flights are written and answered in order, and nothing is answered before
// its flight is durable, so no reply shows state that is not. After a
// journal error the shard answers unavailable for good.
//
// Requests wait for the current flight in two places, and are taken before
// the inbox: the one request that did not fit in the budget (carry), which
// opens the next flight, and those that waited for a parked product
// (ready), which join the current flight as far as its budget goes.
type actor struct {
	id      int
	cfg     *Config
	state   *State
	journal Journal
	m       *shardMetrics

	inbox chan *request
	ctrl  chan *request // reqResolve only
	quit  chan struct{}
	done  chan struct{}

	// The pipeline to the writer. Two flights alternate: the writer has one
	// while the actor fills the other (cur).
	cur     *flight
	free    chan *flight
	idle    chan struct{} // the writer offers a token when it waits for work
	toWrite chan *flight
	written chan struct{} // closed when the writer stops
	// writeFailed is set by the writer after a journal error.
	writeFailed atomic.Bool
	// stalled is set by the writer while it retries a retryable journal
	// error; the shard then writes nothing and is not ready.
	stalled atomic.Bool

	failed  bool
	entries []Entry  // entries of the current flight applied to the state, in log order
	refs    []recRef // what each record of the current flight is, for locate
	enc     *encoder

	// markers are the outcomes of txs the replay left in doubt, which the
	// first flight writes.
	markers []txRecord
	// carry was taken from a queue but did not fit in the current flight's
	// budget: it opens the next flight, and nothing more is taken until then.
	carry *request
	// Requests that touch a product a prepared tx holds (State.parked) wait
	// in deferred until it resolves, then move to ready, which the loop
	// takes before the inbox, in order.
	deferred []*request
	ready    []*request
	// waiting counts deferred and ready, for submit on other goroutines.
	waiting atomic.Int32
	// snap writes the shard's snapshots (snapshot.go); nil when off.
	snap *snapper
}

// flight is one batch on its way to disk: the requests taken for it, its
// records, the requests to answer once they are durable, and its op budget.
//
// The budget bounds the bytes of the flight's block (Config.Validate checks
// that a full one fits): BatchOpsMax ops of requests (request.cost), and
// ExpirePerBatchMax more for expiry RELEASEs. A request is charged when it
// is taken and given back if it leaves the flight without joining it
// (deferred, answered at once, or a tx outcome with nothing to write), so
// an empty flight has spent nothing.
type flight struct {
	taken  []*request // to decide in the next step
	buf    []byte     // encoded records, back to back
	ends   []int      // end offset of each record in buf
	recs   [][]byte   // views of buf
	locs   []uint64
	answer []*request

	ops       int // the budget spent
	opsMax    int // Config.BatchOpsMax
	expireMax int // Config.ExpirePerBatchMax

	// What the flight's metrics count once it is durable, and not before.
	types   [typeEnd]int // new entries by type
	expired int          // expiry RELEASEs
	replays int          // idempotent replays answered
	holds   int          // active holds right after the flight
	// snapDurable receives, once the flight is written, whether it is
	// durable: a snapshot covering it waits for that (snapshot.go).
	snapDurable chan bool
}

func newFlight(cfg *Config) *flight {
	return &flight{opsMax: cfg.BatchOpsMax, expireMax: cfg.ExpirePerBatchMax}
}

// empty reports whether f has taken nothing and holds neither records nor
// answers: the writer has nothing to do with it.
func (f *flight) empty() bool { return len(f.taken) == 0 && len(f.answer) == 0 && len(f.ends) == 0 }

// full reports whether f's budget for requests is spent.
func (f *flight) full() bool { return f.ops >= f.opsMax }

// fits reports whether r fits in what is left of f's budget. A flight that
// has spent nothing takes any request, so that none waits for ever.
func (f *flight) fits(r *request) bool { return f.ops == 0 || f.ops+r.cost() <= f.opsMax }

// take charges r to f's budget, to decide in the next step.
func (f *flight) take(r *request) {
	f.taken = append(f.taken, r)
	f.ops += r.cost()
}

// giveBack refunds r, taken but leaving f without joining it. Call it
// before r is answered: the caller may reuse r then.
func (f *flight) giveBack(r *request) { f.ops -= r.cost() }

// expiryFits reports whether one more expiry RELEASE fits in f's budget.
func (f *flight) expiryFits() bool { return f.ops < f.opsMax+f.expireMax }

// addExpiry counts one expiry RELEASE written in f.
func (f *flight) addExpiry() {
	f.ops++
	f.expired++
}

// count adds f's counts to the shard's metrics; the writer calls it once f
// is durable.
func (f *flight) count(m *shardMetrics) {
	for t, n := range f.types {
		if n > 0 {
			m.byType[t].Add(float64(n))
		}
	}
	if f.expired > 0 {
		m.expired.Add(float64(f.expired))
	}
	if f.replays > 0 {
		m.replays.Add(float64(f.replays))
	}
	m.activeHolds.Store(int64(f.holds))
}

// reset empties f for reuse.
func (f *flight) reset() {
	clear(f.taken)
	clear(f.answer)
	clear(f.recs)
	f.taken, f.answer, f.recs, f.buf, f.ends = f.taken[:0], f.answer[:0], f.recs[:0], f.buf[:0], f.ends[:0]
	f.ops = 0
	f.types, f.expired, f.replays = [typeEnd]int{}, 0, 0
}

func newActor(id int, cfg *Config, st *State, j Journal, m *shardMetrics) *actor {
	return &actor{
		id: id, cfg: cfg, state: st, journal: j, m: m,
		inbox:   make(chan *request, cfg.InboxDepth),
		ctrl:    make(chan *request, cfg.TxInflightMax),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		free:    make(chan *flight, 1),
		idle:    make(chan struct{}),
		toWrite: make(chan *flight),
		written: make(chan struct{}),
		enc:     newEncoder(),
	}
}

// queued returns how many requests wait in the shard's queue: the inbox and
// the requests waiting for parked products, which have left the inbox.
// Without the latter, a product parked by a slow atomic batch would let
// requests pile up without bound.
func (a *actor) queued() int { return len(a.inbox) + int(a.waiting.Load()) }

// submit queues r, or answers overloaded at once when the shard's queue is
// full. The bound is loose by what is in motion: submitters racing on the
// last free place, and the requests the actor has taken from the inbox but
// not yet deferred (at most one batch).
func (a *actor) submit(r *request) bool {
	if a.queued() >= cap(a.inbox) {
		return false
	}
	select {
	case a.inbox <- r:
		return true
	default:
		return false
	}
}

// run is the actor's loop: each turn takes what waits for the current
// flight or else waits for one event, then steps.
func (a *actor) run() {
	defer close(a.done)
	a.free <- newFlight(a.cfg)
	a.cur = newFlight(a.cfg)
	go a.writer()
	for i := range a.markers {
		a.record(a.enc.encodeTx(&a.markers[i]), recRef{entry: -1})
	}
	a.markers = nil
	// Holds whose TTL passed while the service was down are due at once.
	timer := time.NewTimer(a.wait(max(a.cfg.Clock(), a.state.lastAt)))
	defer timer.Stop()
	for {
		if !a.takeWaiting() {
			// The queues are read while the flight has room; the writer is
			// offered the flight once it holds something.
			var requests, resolves <-chan *request
			if a.room() {
				requests, resolves = a.inbox, a.ctrl
			}
			var writerIdle <-chan struct{}
			if !a.cur.empty() {
				writerIdle = a.idle
			}
			select {
			case r := <-resolves:
				a.take(r)
			case r := <-requests:
				a.take(r)
			case <-timer.C: // a hold is due, or keys are to be forgotten
			case <-writerIdle:
				a.send()
			case <-a.quit:
				a.stop()
				return
			}
			a.drain()
		}
		timer.Reset(a.wait(a.step()))
	}
}

// room reports whether the current flight takes more from the queues: no
// request is carried over to the next one, and its budget is not spent.
func (a *actor) room() bool { return a.carry == nil && !a.cur.full() }

// take adds r to the current flight, or carries it to the next when it
// would overflow the budget.
func (a *actor) take(r *request) {
	if a.cur.fits(r) {
		a.cur.take(r)
	} else {
		a.carry = r
	}
}

// takeWaiting takes the requests that wait for the current flight, ahead
// of the queues, and reports whether there were any: the one carried over,
// if the flight is empty (send opens a flight with it, but a flight also
// empties when all that was taken with it was deferred or refused); else
// those that waited for a parked product, as far as the budget goes.
func (a *actor) takeWaiting() bool {
	if r := a.carry; r != nil && a.cur.empty() {
		a.carry = nil
		a.cur.take(r)
		return true
	}
	if !a.room() || len(a.ready) == 0 {
		return false
	}
	for len(a.ready) > 0 && a.room() {
		r := a.ready[0]
		a.ready[0] = nil
		a.ready = a.ready[1:]
		a.waiting.Add(-1)
		a.take(r)
	}
	return true
}

// drain takes more requests from the queues without blocking, while the
// flight has room and nothing waits for it.
func (a *actor) drain() {
	for a.room() && len(a.ready) == 0 {
		select {
		case r := <-a.ctrl:
			a.take(r)
		case r := <-a.inbox:
			a.take(r)
		default:
			return
		}
	}
}

// wait returns how long the actor may sleep: until the next hold expires, and
// at most a second so that old idempotency keys are forgotten steadily.
func (a *actor) wait(now int64) time.Duration {
	d := time.Second
	// A due hold on a parked product waits for its batch to resolve, which
	// arrives as a message and wakes the actor: no need to poll for it.
	if at, ok := a.state.nextExpiry(now, a.state.isParked); ok {
		d = min(d, time.Duration(at-now))
	}
	return max(d, time.Millisecond)
}

// step decides the requests the current flight has taken and returns the
// time it ran at.
func (a *actor) step() int64 {
	f := a.cur
	now := max(a.cfg.Clock(), a.state.lastAt)
	a.adoptSnapshot()
	if !a.failed && a.writeFailed.Load() {
		a.fail()
	}
	if a.failed {
		for _, r := range f.taken {
			a.refuse(r, errUnavailable)
		}
		a.clearTaken()
		return now
	}
	// Keys are forgotten on schedule, a parked product's too: a prepared tx
	// part is applied at commit as it was decided, never decided again, so
	// a replay it found stays a replay.
	a.state.forget(now, a.cfg.ForgetPerBatchMax)
	for i := 0; i < a.cfg.ExpirePerBatchMax && f.expiryFits(); i++ {
		n := len(a.entries)
		var ok bool
		a.entries, ok = a.state.expire(now, a.state.isParked, a.entries)
		if !ok {
			break
		}
		a.applyNew(n)
		f.addExpiry()
	}
	for _, r := range f.taken {
		a.handle(r, now)
	}
	a.clearTaken()
	return now
}

// clearTaken forgets the requests the current flight took, now decided:
// each joined the flight or gave back its budget.
func (a *actor) clearTaken() {
	f := a.cur
	clear(f.taken)
	f.taken = f.taken[:0]
	if f.ops != 0 && f.empty() {
		panic(fmt.Sprintf("shard %d: an empty flight has spent %d ops", a.id, f.ops))
	}
}

// send seals the current flight and hands it to the idle writer; the next
// flight opens with the request carried over, if any.
func (a *actor) send() {
	f := a.cur
	if len(f.ends) > 0 {
		a.locate(f)
	}
	for _, r := range f.answer {
		a.finish(r)
	}
	f.holds = a.state.ActiveHolds()
	a.maybeSnapshot(f)
	a.toWrite <- f
	a.cur = <-a.free
	clear(a.entries) // drop references to request strings
	a.entries = a.entries[:0]
	clear(a.refs)
	a.refs = a.refs[:0]
	if r := a.carry; r != nil {
		a.carry = nil
		a.cur.take(r)
	}
}

// answer queues r to be answered once the current flight is durable.
func (a *actor) answer(r *request) {
	a.cur.answer = append(a.cur.answer, r)
}

// writer is the shard's writer goroutine: it writes each flight's records
// with one journal Write and then answers its requests.
func (a *actor) writer() {
	defer close(a.written)
	for {
		a.idle <- struct{}{}
		f, ok := <-a.toWrite
		if !ok {
			return
		}
		if len(f.recs) > 0 && !a.writeFailed.Load() {
			t := time.Now()
			err := a.writeFlight(f.recs)
			a.m.fsync.Observe(time.Since(t).Seconds())
			a.m.batchEntries.Observe(float64(len(f.recs)))
			if err != nil {
				a.writeFailed.Store(true)
				a.m.failed.Set(1) // the same moment readiness sees it
				a.cfg.Logger.Error("shard failed: journal write or fsync error; restart to recover", "shard", a.id, "err", err)
			}
		}
		failed := a.writeFailed.Load()
		if !failed {
			f.count(a.m)
		}
		for _, r := range f.answer {
			if failed {
				r.err = errUnavailable
			}
			r.done <- struct{}{}
		}
		if f.snapDurable != nil {
			f.snapDurable <- !failed
			f.snapDurable = nil
		}
		f.reset()
		a.free <- f
	}
}

// writeFlight writes one flight's records, retrying while the journal
// reports a retryable error (a failed open, which wrote nothing). Meanwhile
// the shard holds this flight and fills the next one until its budget is
// spent, then its queue, which answers overloaded when full; it reports
// itself stalled, so the service is not ready. Only a stop of the shard
// ends the retries.
func (a *actor) writeFlight(recs [][]byte) error {
	backoff := writeRetryMin
	for {
		err := a.journal.Write(recs)
		var r interface{ Retryable() bool }
		if err == nil || !errors.As(err, &r) || !r.Retryable() {
			if a.stalled.Swap(false) {
				a.m.stalled.Set(0)
				a.cfg.Logger.Info("shard writes again", "shard", a.id)
			}
			return err
		}
		if !a.stalled.Swap(true) {
			a.m.stalled.Set(1)
			a.cfg.Logger.Warn("shard stalled: its journal cannot open a file; retrying", "shard", a.id, "err", err)
		}
		a.m.writeRetries.Inc()
		select {
		case <-a.quit:
			return fmt.Errorf("shard stopped while its journal write was stalled: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, writeRetryMax)
	}
}

// A stalled journal write is retried after writeRetryMin, doubling up to
// writeRetryMax: soon enough that a shard resumes within a tenth of a
// second of descriptors coming back, rarely enough to cost nothing.
const (
	writeRetryMin = time.Millisecond
	writeRetryMax = 100 * time.Millisecond
)

func (a *actor) reply(r *request, err *Error) {
	r.err = err
	r.done <- struct{}{}
}

// handle decides and applies one request, which joins the current flight,
// or defers it while a product it touches is held by a prepared tx.
func (a *actor) handle(r *request, now int64) {
	switch {
	case r.kind == reqResolve:
		a.resolve(r)
		return
	case r.kind == reqPrepare && !r.evalOnly:
		// A part taken up (or again, after waiting) once its coordinator
		// stopped waiting is refused: its tx is aborted or about to be.
		if !time.Now().Before(r.deadline) {
			a.refuse(r, errTxAborted)
			return
		}
		// Wait-die: a part that finds a product held waits for the holder
		// only if its tx is older; else it is refused at once and its tx
		// retried, older each time. Waits go from older to younger only,
		// so no cycle of waits (deadlock) can form, and the oldest tx
		// never dies.
		switch a.parkedBy(r) {
		case holderNone:
			a.prepare(r, now)
			a.answer(r)
		case holderYounger:
			a.postpone(r)
		default:
			a.refuse(r, errConflict)
		}
		return
	}
	if a.touchesParked(r) {
		a.postpone(r)
		return
	}
	switch r.kind {
	case reqWrite:
		if r.atomic {
			a.writeAtomic(r, now)
		} else {
			a.write(r, now)
		}
	case reqPrepare:
		a.prepare(r, now)
	}
	a.answer(r)
}

// postpone takes r out of the current flight to wait for the products it
// touches to be unparked (deferred).
func (a *actor) postpone(r *request) {
	a.cur.giveBack(r)
	a.deferred = append(a.deferred, r)
	a.waiting.Add(1)
}

// refuse takes r out of the current flight and answers it at once.
func (a *actor) refuse(r *request, err *Error) {
	a.cur.giveBack(r)
	a.reply(r, err)
}

// touchesParked reports whether r touches a product a prepared tx holds.
func (a *actor) touchesParked(r *request) bool {
	if len(a.state.parked) == 0 {
		return false
	}
	blocked := false
	r.touches(func(id string) bool {
		blocked = a.state.isParked(id)
		return !blocked
	})
	return blocked
}

// Who holds the products a prepare touches.
const (
	holderNone    = iota // nobody
	holderYounger        // only txs younger than the prepare's
	holderOlder          // a tx as old or older
)

// parkedBy tells who holds the products of prepare r.
func (a *actor) parkedBy(r *request) int {
	if len(a.state.parked) == 0 {
		return holderNone
	}
	h := holderNone
	for i := range r.ops {
		p, ok := a.state.parked[r.ops[i].ProductID]
		switch {
		case !ok:
		case p.prio <= r.prio:
			return holderOlder
		default:
			h = holderYounger
		}
	}
	return h
}

// write applies each op on its own.
func (a *actor) write(r *request, now int64) {
	r.results = make([]opResult, len(r.ops))
	for i := range r.ops {
		a.do(&r.ops[i], &r.results[i], now)
	}
}

// do decides and applies one op on the live state.
func (a *actor) do(op *Op, res *opResult, now int64) {
	n := len(a.entries)
	var out outcome
	var err *Error
	a.entries, out, err = a.state.decide(op, now, a.entries)
	switch {
	case err != nil:
		res.err = err
	case out.replayOf != 0:
		res.replayOf = out.replayOf
		a.cur.replays++
	default:
		a.applyNew(n)
		res.entries = append([]Entry(nil), a.entries[n:]...)
	}
}

// writeAtomic applies all ops or none: they are dry-run first, and only if
// every one succeeds are the dry run's entries applied to the live state,
// as a commit applies a prepared part's (and as a replay applies the
// log's). Deciding them again on the live state would give the same
// entries: it cost 9% of the service's CPU in a checkout run.
func (a *actor) writeAtomic(r *request, now int64) {
	results, entries, i, err := a.decideAll(r.ops, now, apart(r.ops))
	if err != nil {
		r.err = err.withIndex(r.index[i])
		return
	}
	n := len(a.entries)
	a.entries = append(a.entries, entries...)
	a.applyNew(n)
	for i := range results {
		if results[i].replayOf != 0 || results[i].replayed {
			a.cur.replays++
		}
	}
	r.results = results
}

// apartMax is the most ops apart compares pairwise; a longer batch takes
// the fork.
const apartMax = 16

// apart reports whether ops are few and each names a different product.
// Keys and reservations are scoped to their product, so then no op can see
// another's effect: each can be decided on the live state as if alone.
func apart(ops []Op) bool {
	if len(ops) > apartMax {
		return false
	}
	for i := 1; i < len(ops); i++ {
		for j := range i {
			if ops[i].ProductID == ops[j].ProductID {
				return false
			}
		}
	}
	return true
}

// decideAll decides ops as one batch and changes nothing. It returns each
// op's result (its entries, or the version it replays) and all the
// entries, or the first refusal with its position in ops. It runs on a
// scratch fork of the state, where each op's entries are applied so that
// later ops on the same product see them; or, with live (for ops that are
// apart), on the live state itself, applying nothing: only the id counter
// moves between ops, as apply would move it, and it is put back. The fork
// and applying twice cost 12% of the service's CPU in a checkout run.
func (a *actor) decideAll(ops []Op, now int64, live bool) ([]opResult, []Entry, int, *Error) {
	f := a.state
	if live {
		defer func(ids uint64) { f.ids = ids }(f.ids)
	} else {
		f = a.state.fork(ops)
	}
	results := make([]opResult, len(ops))
	// One entry per op, and room for the RELEASE of a partial COMMIT:
	// growing from nil was the largest allocation of a cart.
	all := make([]Entry, 0, len(ops)+1)
	for i := range ops {
		n := len(all)
		var err *Error
		var out outcome
		all, out, err = f.decide(&ops[i], now, all)
		if err != nil {
			return nil, nil, i, err
		}
		if out.replayOf != 0 {
			if p := a.state.products[ops[i].ProductID]; p != nil && out.replayOf <= p.version {
				results[i].replayOf = out.replayOf
				continue
			}
			// The key was applied by an earlier op of this batch, on the
			// fork only: answer with that op's entries (the live state has
			// no locators for them yet).
			for j := range i {
				if e := results[j].entries; len(e) > 0 && e[0].ProductID == ops[i].ProductID && e[0].Version == out.replayOf {
					results[i].entries, results[i].replayed = e, true
				}
			}
			if !results[i].replayed {
				panic(fmt.Sprintf("shard %d: dry run replays version %d of %q, which neither the state nor the batch has", a.id, out.replayOf, ops[i].ProductID))
			}
			continue
		}
		if live {
			f.ids += uint64(len(all) - n)
		} else {
			for j := n; j < len(all); j++ {
				if err := f.apply(&all[j], 0); err != nil {
					panic(fmt.Sprintf("shard %d: dry run: %v", a.id, err))
				}
			}
		}
		results[i].entries = all[n:len(all):len(all)]
	}
	return results, all, 0, nil
}

// prepare writes this shard's part of a tx: a dry run, and on success a
// PREPARE record and the part's entries, decided but not applied, in the
// current flight; its products are held until the tx resolves. The answer,
// once the flight is durable, tells the coordinator the part is prepared.
// An evalOnly prepare only reports the first refusal.
func (a *actor) prepare(r *request, now int64) {
	// Always on a fork: its apply checks every entry before the part is
	// durable, where a bad entry would stop every later start (a part on the
	// live state is checked only when it is committed).
	results, entries, i, err := a.decideAll(r.ops, now, false)
	if err != nil {
		r.err = err.withIndex(r.index[i])
		return
	}
	r.results = results
	if r.evalOnly {
		return
	}
	p := &txPart{tx: r.tx, prio: r.prio, shards: r.shards, entries: entries, locs: make([]uint64, len(entries))}
	if err := a.state.prepareTx(p); err != nil {
		panic(fmt.Sprintf("shard %d: %v", a.id, err)) // handle checked the products
	}
	a.record(a.enc.encodeTx(&txRecord{kind: txPrepare, tx: r.tx, shards: r.shards, n: len(entries)}), recRef{entry: -1})
	for j := range p.entries {
		a.record(a.enc.encode(&p.entries[j]), recRef{entry: -1, part: p, i: j})
	}
}

// resolve applies the outcome of a tx to its prepared part here: a commit
// applies the part's entries and writes a COMMIT record, an abort drops
// them and writes an ABORT record. Either unparks the products and takes up
// the requests that waited for them. Only a durable abort is answered (once
// its record is durable); the coordinator does not wait for the others.
func (a *actor) resolve(r *request) {
	switch {
	case r.commit:
		p, err := a.state.commitTx(r.tx)
		if err != nil {
			panic(fmt.Sprintf("shard %d: %v", a.id, err))
		}
		a.record(a.enc.encodeTx(&txRecord{kind: txCommit, tx: r.tx}), recRef{entry: -1})
		for i := range p.entries {
			a.cur.types[p.entries[i].Type]++
		}
	default:
		p := a.state.abortTx(r.tx)
		if p == nil && !r.durable {
			// The part was refused or answered unavailable, or it has not
			// been taken up yet. The coordinator aborts a part it has no
			// answer from only past the part's deadline, so that part is
			// refused when it is taken up. Nothing to write or remember.
			a.cur.giveBack(r)
			break
		}
		a.record(a.enc.encodeTx(&txRecord{kind: txAbort, tx: r.tx}), recRef{entry: -1})
		if r.durable {
			a.answer(r)
		}
	}
	// What waited is taken up by the loop before the inbox, within the
	// flight's budget: handled here, a burst of it could overflow a block.
	a.ready = append(a.ready, a.deferred...)
	a.deferred = a.deferred[:0]
}

// recRef says what one record of the current flight is, so that locate can
// put its locator where it belongs: an entry applied to the state (entry
// indexes a.entries), an entry of a prepared part (part.locs[i]), or a tx
// record (neither).
type recRef struct {
	entry int
	part  *txPart
	i     int
}

// record appends rec to the current flight.
func (a *actor) record(rec []byte, ref recRef) {
	f := a.cur
	f.buf = append(f.buf, rec...)
	f.ends = append(f.ends, len(f.buf))
	a.refs = append(a.refs, ref)
}

// applyNew applies and encodes the entries a.entries[n:].
func (a *actor) applyNew(n int) {
	for i := n; i < len(a.entries); i++ {
		e := &a.entries[i]
		if err := a.state.apply(e, 0); err != nil {
			panic(fmt.Sprintf("shard %d: apply of a decided entry: %v", a.id, err))
		}
		a.record(a.enc.encode(e), recRef{entry: i})
		a.cur.types[e.Type]++
	}
}

// locate points each new entry's index slot at the journal locator it will
// have once f is written.
func (a *actor) locate(f *flight) {
	start := 0
	for _, end := range f.ends {
		f.recs = append(f.recs, f.buf[start:end])
		start = end
	}
	if cap(f.locs) < len(f.recs) {
		f.locs = make([]uint64, len(f.recs))
	}
	f.locs = f.locs[:len(f.recs)]
	if err := a.journal.Locate(f.recs, f.locs); err != nil {
		// Config.Validate bounds a batch to fit a block: this is a bug.
		panic(fmt.Sprintf("shard %d: locate batch: %v", a.id, err))
	}
	for i, ref := range a.refs {
		switch {
		case ref.entry >= 0:
			e := &a.entries[ref.entry]
			p := a.state.products[e.ProductID]
			p.locs[e.Version-1-p.snapLocs] = f.locs[i]
		case ref.part != nil:
			ref.part.locs[ref.i] = f.locs[i]
		}
	}
}

// fail stops the shard for good: the state is now ahead of the journal, and
// after a failed write or fsync the file cannot be trusted either. Recovery
// is a restart, which replays what is durable.
func (a *actor) fail() {
	a.failed = true
	for _, d := range a.deferred {
		a.reply(d, errUnavailable)
	}
	for _, d := range a.ready {
		a.reply(d, errUnavailable)
	}
	a.deferred, a.ready = nil, nil
	a.waiting.Store(0)
}

// finish fills the outputs that need the batch's locators: reads and
// idempotent replays. It runs after the commit.
func (a *actor) finish(r *request) {
	st := a.state
	switch r.kind {
	case reqWrite, reqPrepare, reqResolve:
		for i := range r.results {
			res := &r.results[i]
			switch {
			case res.err != nil:
			case res.replayOf != 0:
				p := st.products[r.ops[i].ProductID]
				end := min(p.version, res.replayOf+1)
				locs, err := st.locRange(p, res.replayOf-1, end)
				if err != nil {
					res.err = err
					break
				}
				res.replayN = copy(res.replayLocs[:], locs)
			default:
				res.stock = stockAfter(&res.entries[len(res.entries)-1])
			}
		}
	case reqStock:
		s, ok := st.Stock(r.productID)
		if !ok {
			r.err = errorf(CodeNotFound, "product %q has no entries", r.productID)
			return
		}
		r.stock = s
	case reqHistory:
		p := st.products[r.productID]
		if p == nil {
			r.err = errorf(CodeNotFound, "product %q has no entries", r.productID)
			return
		}
		r.stock = p.stock(r.productID)
		if r.after < p.version {
			end := min(p.version, r.after+int64(r.limit))
			locs, err := st.locRange(p, r.after, end)
			if err != nil {
				r.err = err
				return
			}
			r.locs = locs
			if end < p.version {
				r.next = end
			}
		}
	case reqLocate:
		st.finishLocate(r)
	case reqBalances:
		st.finishBalances(r)
	case reqReservation:
		rec, ok, err := st.reservation(r.productID, r.reservationID)
		if err != nil {
			r.err = err
			return
		}
		if !ok {
			r.err = errorf(CodeNotFound, "reservation %q of product %q not found", r.reservationID, r.productID)
			return
		}
		p := st.products[r.productID]
		r.resv = rec
		r.locs = make([]uint64, 1, 2)
		if r.locs[0], err = st.locAt(p, rec.reserveVersion()); err == nil && rec.state() != StateActive {
			var settled uint64
			settled, err = st.locAt(p, rec.settle)
			r.locs = append(r.locs, settled)
		}
		if err != nil {
			r.locs, r.err = nil, err
		}
	}
}

// stop answers what is still queued, writes the last flight and closes the
// journal.
func (a *actor) stop() {
	for queued := true; queued; {
		select {
		case r := <-a.ctrl:
			a.reply(r, errClosed)
		case r := <-a.inbox:
			a.reply(r, errClosed)
		default:
			queued = false
		}
	}
	if a.carry != nil {
		a.reply(a.carry, errClosed)
		a.carry = nil
	}
	for _, d := range a.deferred {
		a.reply(d, errClosed)
	}
	for _, d := range a.ready {
		a.reply(d, errClosed)
	}
	if !a.cur.empty() {
		<-a.idle
		a.send()
	}
	<-a.idle // the writer has answered everything
	close(a.toWrite)
	<-a.written
	a.finalSnapshot()
	if err := a.journal.Close(); err != nil && !a.failed {
		a.cfg.Logger.Error("close journal", "shard", a.id, "err", err)
	}
}
