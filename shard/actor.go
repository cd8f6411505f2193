package shard

import (
	"fmt"
	"time"
)

// Journal is the durable log of one shard. The shard declares what it needs;
// package wal provides it.
type Journal interface {
	// Commit makes recs durable as one unit (one write, one fsync) and fills
	// locs[i] with the locator of recs[i]. After an error the journal is
	// failed for good: it is never retried.
	Commit(recs [][]byte, locs []uint64) error
	// Read returns the committed record at loc. Safe for concurrent use with
	// Commit from any goroutine.
	Read(loc uint64) ([]byte, error)
	// Close syncs and closes the journal.
	Close() error
}

type reqKind uint8

const (
	reqWrite reqKind = iota
	reqStock
	reqHistory
	reqReservation
	reqPrepare // phase 1 of an atomic batch that spans shards
	reqResolve // phase 2: commit or abort what reqPrepare parked
)

// request is one message to a shard actor. The caller fills the inputs and
// waits on done; the actor fills the outputs and sends on done exactly once.
type request struct {
	kind reqKind

	// Writes: this shard's ops, in batch order, and their index in the batch.
	ops    []Op
	index  []int
	atomic bool
	// evalOnly marks a prepare that only reports refusals: another shard
	// already refused, so nothing is parked.
	evalOnly bool
	// commit marks a resolve that applies the prepared ops (else it aborts).
	commit bool

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
	stock      Stock
}

func newRequest(kind reqKind) *request {
	return &request{kind: kind, done: make(chan struct{}, 1)}
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

// actor is the only goroutine that touches one shard's State. Its loop:
//
//  1. block for one message, then drain up to the batch limit without blocking;
//  2. read the clock once, expire due holds, forget old idempotency keys;
//  3. decide and apply every request in order (each sees those before it),
//     encoding the new entries;
//  4. write them to the journal with one Commit (one write, one fsync);
//  5. answer every request of the batch.
//
// Nothing is answered before step 4, so no reply shows state that is not
// durable. After a journal error the actor answers unavailable for good.
type actor struct {
	id      int
	cfg     *Config
	state   *State
	journal Journal
	m       *shardMetrics

	inbox chan *request
	ctrl  chan *request // reqResolve only: never full (see Engine.txSlots)
	carry *request      // taken from the inbox but left for the next batch
	quit  chan struct{}
	done  chan struct{}

	failed  bool
	batch   []*request
	answer  []*request
	entries []Entry // new entries of the batch, in log order
	enc     *encoder
	buf     []byte   // encoded records of the batch, back to back
	ends    []int    // end offset of each record in buf
	recs    [][]byte // views of buf for Commit
	locs    []uint64
	ops     int // ops in the batch so far

	// parked are products that a prepared atomic batch holds; requests that
	// touch one wait in deferred until it resolves.
	parked   map[string]struct{}
	deferred []*request
}

func newActor(id int, cfg *Config, st *State, j Journal, m *shardMetrics) *actor {
	return &actor{
		id: id, cfg: cfg, state: st, journal: j, m: m,
		inbox:  make(chan *request, cfg.InboxDepth),
		ctrl:   make(chan *request, cfg.TxInflightMax),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		enc:    newEncoder(),
		parked: make(map[string]struct{}),
	}
}

// submit queues r, or answers overloaded at once when the inbox is full.
func (a *actor) submit(r *request) bool {
	select {
	case a.inbox <- r:
		return true
	default:
		return false
	}
}

func (a *actor) run() {
	defer close(a.done)
	// Holds whose TTL passed while the service was down are due at once.
	timer := time.NewTimer(a.wait(max(a.cfg.Clock(), a.state.lastAt)))
	defer timer.Stop()
	for {
		if r := a.carry; r != nil {
			a.carry = nil
			a.take(r)
		} else {
			select {
			case r := <-a.ctrl:
				a.take(r)
			case r := <-a.inbox:
				a.take(r)
			case <-timer.C:
			case <-a.quit:
				a.stop()
				return
			}
		}
	drain:
		for a.carry == nil && a.ops < a.cfg.BatchOpsMax {
			select {
			case r := <-a.ctrl:
				a.take(r)
			case r := <-a.inbox:
				a.take(r)
			default:
				break drain
			}
		}
		now := a.step()
		timer.Reset(a.wait(now))
	}
}

// take adds r to the batch, or carries it to the next batch when it would
// push the batch past BatchOpsMax (which bounds the journal block's size).
func (a *actor) take(r *request) {
	n := max(1, len(r.ops))
	if len(a.batch) > 0 && a.ops+n > a.cfg.BatchOpsMax {
		a.carry = r
		return
	}
	a.batch = append(a.batch, r)
	a.ops += n
}

// wait returns how long the actor may sleep: until the next hold expires, and
// at most a second so that old idempotency keys are forgotten steadily.
func (a *actor) wait(now int64) time.Duration {
	d := time.Second
	if at, ok := a.state.NextDeadline(); ok {
		d = min(d, time.Duration(at-now))
	}
	return max(d, time.Millisecond)
}

// step processes one batch and returns the time it ran at.
func (a *actor) step() int64 {
	now := max(a.cfg.Clock(), a.state.lastAt)
	if a.failed {
		for _, r := range a.batch {
			a.reply(r, errUnavailable)
		}
		a.reset()
		return now
	}
	a.state.forget(now, a.cfg.ForgetPerBatchMax)
	for i := 0; i < a.cfg.ExpirePerBatchMax; i++ {
		n := len(a.entries)
		var ok bool
		a.entries, ok = a.state.expire(now, a.isParked, a.entries)
		if !ok {
			break
		}
		a.applyNew(n)
		a.m.expired.Inc()
	}
	for _, r := range a.batch {
		a.handle(r, now)
	}
	if len(a.entries) > 0 {
		a.commit()
	}
	for _, r := range a.answer {
		if a.failed {
			r.err = errUnavailable
		} else {
			a.finish(r)
		}
		r.done <- struct{}{}
	}
	a.m.activeHolds.Store(int64(a.state.ActiveHolds()))
	a.reset()
	return now
}

func (a *actor) reset() {
	clear(a.batch)
	a.batch = a.batch[:0]
	clear(a.answer)
	a.answer = a.answer[:0]
	clear(a.entries) // drop references to request strings
	a.entries = a.entries[:0]
	a.buf = a.buf[:0]
	a.ends = a.ends[:0]
	a.ops = 0
}

func (a *actor) reply(r *request, err *Error) {
	r.err = err
	r.done <- struct{}{}
}

func (a *actor) isParked(productID string) bool {
	_, ok := a.parked[productID]
	return ok
}

// handle decides and applies one request, or defers it while a product it
// touches is parked.
func (a *actor) handle(r *request, now int64) {
	if r.kind != reqResolve {
		blocked := false
		r.touches(func(id string) bool {
			blocked = a.isParked(id)
			return !blocked
		})
		if blocked {
			a.deferred = append(a.deferred, r)
			return
		}
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
	case reqResolve:
		a.resolve(r, now)
		return
	}
	a.answer = append(a.answer, r)
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
		a.m.rejected(err.Code)
	case out.replayOf != 0:
		res.replayOf = out.replayOf
		a.m.replays.Inc()
	default:
		a.applyNew(n)
		res.entries = append([]Entry(nil), a.entries[n:]...)
	}
}

// writeAtomic applies all ops or none: they are decided and applied on a
// scratch fork first, and on the live state only if every one succeeds.
func (a *actor) writeAtomic(r *request, now int64) {
	if i, err := a.dryRun(r.ops, now); err != nil {
		r.err = err.withIndex(r.index[i])
		a.m.rejected(err.Code)
		return
	}
	a.applyAll(r, now)
}

// dryRun decides and applies ops on a fork of the state and returns the first
// refusal with its position in ops.
func (a *actor) dryRun(ops []Op, now int64) (int, *Error) {
	f := a.state.fork(ops)
	var scratch []Entry
	for i := range ops {
		var err *Error
		var out outcome
		scratch, out, err = f.decide(&ops[i], now, scratch[:0])
		if err != nil {
			return i, err
		}
		if out.replayOf == 0 {
			for j := range scratch {
				if err := f.apply(&scratch[j], 0); err != nil {
					panic(fmt.Sprintf("shard %d: dry run: %v", a.id, err))
				}
			}
		}
	}
	return 0, nil
}

// applyAll applies ops that a dry run accepted; a refusal now is a bug.
func (a *actor) applyAll(r *request, now int64) {
	r.results = make([]opResult, len(r.ops))
	for i := range r.ops {
		a.do(&r.ops[i], &r.results[i], now)
		if err := r.results[i].err; err != nil {
			panic(fmt.Sprintf("shard %d: op %d refused after its dry run accepted it: %v", a.id, r.index[i], err))
		}
	}
}

// prepare is phase 1 of a cross-shard atomic batch: a dry run, and on
// success the ops' products are parked until the coordinator resolves.
func (a *actor) prepare(r *request, now int64) {
	if i, err := a.dryRun(r.ops, now); err != nil {
		r.err = err.withIndex(r.index[i])
		a.m.rejected(err.Code)
		return
	}
	if r.evalOnly {
		return
	}
	for i := range r.ops {
		a.parked[r.ops[i].ProductID] = struct{}{}
	}
}

// resolve is phase 2: apply the prepared ops (commit) or drop them (abort),
// unpark their products and take up the requests that waited for them.
func (a *actor) resolve(r *request, now int64) {
	for i := range r.ops {
		delete(a.parked, r.ops[i].ProductID)
	}
	if r.commit {
		a.applyAll(r, now)
		a.answer = append(a.answer, r)
	} else {
		r.done <- struct{}{}
	}
	waiting := a.deferred
	a.deferred = nil
	for _, d := range waiting {
		a.handle(d, now)
	}
}

// applyNew applies and encodes the entries a.entries[n:].
func (a *actor) applyNew(n int) {
	for i := n; i < len(a.entries); i++ {
		e := &a.entries[i]
		if err := a.state.apply(e, 0); err != nil {
			panic(fmt.Sprintf("shard %d: apply of a decided entry: %v", a.id, err))
		}
		a.buf = append(a.buf, a.enc.encode(e)...)
		a.ends = append(a.ends, len(a.buf))
		a.m.entry(e.Type)
	}
}

// commit writes the batch's entries to the journal and points each entry's
// index slot at its locator.
func (a *actor) commit() {
	a.recs = a.recs[:0]
	start := 0
	for _, end := range a.ends {
		a.recs = append(a.recs, a.buf[start:end])
		start = end
	}
	if cap(a.locs) < len(a.recs) {
		a.locs = make([]uint64, len(a.recs))
	}
	a.locs = a.locs[:len(a.recs)]
	t := time.Now()
	err := a.journal.Commit(a.recs, a.locs)
	a.m.fsync.Observe(time.Since(t).Seconds())
	a.m.batchEntries.Observe(float64(len(a.recs)))
	clear(a.recs)
	if err != nil {
		a.fail(err)
		return
	}
	for i := range a.entries {
		e := &a.entries[i]
		a.state.products[e.ProductID].locs[e.Version-1] = a.locs[i]
	}
}

// fail stops the shard for good: the state is now ahead of the journal, and
// after a failed write or fsync the file cannot be trusted either. Recovery
// is a restart, which replays what is durable.
func (a *actor) fail(err error) {
	a.failed = true
	a.m.failed.Set(1)
	a.cfg.Logger.Error("shard failed: journal write or fsync error; restart to recover", "shard", a.id, "err", err)
	for _, d := range a.deferred {
		a.reply(d, errUnavailable)
	}
	a.deferred = nil
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
				res.replayLocs[0] = p.locs[res.replayOf-1]
				res.replayN = 1
				if res.replayOf < p.version {
					res.replayLocs[1] = p.locs[res.replayOf]
					res.replayN = 2
				}
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
			r.locs = append([]uint64(nil), p.locs[r.after:end]...)
			if end < p.version {
				r.next = end
			}
		}
	case reqReservation:
		rec, ok := st.reservation(r.productID, r.reservationID)
		if !ok {
			r.err = errorf(CodeNotFound, "reservation %q of product %q not found", r.reservationID, r.productID)
			return
		}
		p := st.products[r.productID]
		r.resv = rec
		r.locs = []uint64{p.locs[rec.reserveVersion()-1]}
		if rec.state() != StateActive {
			r.locs = append(r.locs, p.locs[rec.settle-1])
		}
	}
}

// stop answers what is still queued and closes the journal.
func (a *actor) stop() {
	for {
		select {
		case r := <-a.ctrl:
			a.reply(r, errClosed)
		case r := <-a.inbox:
			a.reply(r, errClosed)
		default:
			if a.carry != nil {
				a.reply(a.carry, errClosed)
			}
			for _, d := range a.deferred {
				a.reply(d, errClosed)
			}
			if err := a.journal.Close(); err != nil && !a.failed {
				a.cfg.Logger.Error("close journal", "shard", a.id, "err", err)
			}
			return
		}
	}
}
