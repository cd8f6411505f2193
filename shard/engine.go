package shard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// OpenJournal opens the journal of shard i, passing every stored record to
// replay in log order before it returns.
type OpenJournal func(shard int, replay func(loc uint64, rec []byte) error) (Journal, error)

// Engine routes requests to shard actors and is the API the HTTP layer calls.
// All methods are safe for concurrent use.
type Engine struct {
	cfg      Config
	actors   []*actor
	journals []Journal
	m        *metrics

	ready    atomic.Bool
	loaded   []atomic.Bool // shard i has replayed
	replayed chan struct{}
	replay   error // set before replayed is closed

	closing  atomic.Bool
	inflight atomic.Int64
	closed   sync.Once

	// txSlots bounds cross-shard atomic batches in flight, and so the
	// resolve messages in a shard's ctrl queue.
	txSlots chan struct{}
	// nextTx numbers txs: past every tx named in the logs at start-up.
	nextTx atomic.Uint64
}

// Result is the outcome of one write op.
type Result struct {
	// Err is set when the op was refused (in a non-atomic batch).
	Err *Error
	// Replayed is true when the op's idempotency key was already applied:
	// Entries and Stock are then the original ones.
	Replayed bool
	// Entries are the entries the op appended; Entries[0] is the one it asked
	// for (a partial COMMIT also appends the RELEASE of the rest).
	Entries []Entry
	// Stock is the product's stock right after Entries.
	Stock Stock
}

// Page is one page of a product's ledger.
type Page struct {
	Entries []Entry
	// Next is the version to pass as after for the next page; 0 when this
	// page reaches the product's last entry.
	Next int64
}

// Open starts an engine and replays every shard's journal in parallel in the
// background. Until Ready, requests are answered unavailable; Wait returns
// the replay's outcome.
func Open(cfg Config, open OpenJournal) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:      cfg,
		actors:   make([]*actor, cfg.Shards),
		journals: make([]Journal, cfg.Shards),
		loaded:   make([]atomic.Bool, cfg.Shards),
		replayed: make(chan struct{}),
		txSlots:  make(chan struct{}, cfg.TxInflightMax),
	}
	e.m = newMetrics(cfg.Registerer, cfg.Shards, func(i int) int {
		if !e.ready.Load() { // actors are set before ready, and never after
			return 0
		}
		return e.actors[i].queued()
	})
	go e.start(open)
	return e, nil
}

func (e *Engine) start(open OpenJournal) {
	t := time.Now()
	errs := make([]error, e.cfg.Shards)
	counts := make([]uint64, e.cfg.Shards)
	states := make([]*State, e.cfg.Shards)
	lds := make([]*loaded, e.cfg.Shards)
	load := func(i int, full bool) {
		ld, err := e.loadShard(i, open, full)
		if err != nil {
			errs[i] = fmt.Errorf("replay shard %d: %w", i, err)
			return
		}
		counts[i] = ld.st.Entries() - ld.loadedFrom
		e.journals[i] = ld.j
		states[i], lds[i] = ld.st, ld
	}
	var wg sync.WaitGroup
	for i := range e.cfg.Shards {
		wg.Go(func() { load(i, false) })
	}
	wg.Wait()
	var markers [][]txRecord
	if err := errors.Join(errs...); err == nil {
		var full []int
		var maxTx uint64
		markers, full, maxTx, errs[0] = resolveInDoubt(states, e.cfg.Logger)
		// Shards whose snapshot cannot tell the outcome of a tx in doubt
		// elsewhere are replayed in full, once (snapshot.go).
		for _, i := range full {
			e.cfg.Logger.Warn("a tx in doubt is older than the snapshot's outcomes: replaying the whole journal", "shard", i)
			e.journals[i].Close()
			states[i].store.close()
			load(i, true)
		}
		if err := errors.Join(errs...); err == nil && len(full) > 0 {
			markers, full, maxTx, errs[0] = resolveInDoubt(states, e.cfg.Logger)
			if len(full) > 0 {
				errs[0] = fmt.Errorf("shards %v cannot resolve txs in doubt after a full replay", full)
			}
		}
		e.nextTx.Store(maxTx)
	}
	if err := errors.Join(errs...); err != nil {
		for _, j := range e.journals {
			if j != nil {
				j.Close()
			}
		}
		e.replay = err
		e.cfg.Logger.Error("replay failed", "err", err)
		close(e.replayed)
		return
	}
	var total uint64
	for i, n := range counts {
		total += n
		st := states[i]
		e.actors[i] = newActor(i, &e.cfg, st, e.journals[i], e.m.shards[i])
		e.actors[i].markers = markers[i]
		e.actors[i].snap = newSnapper(&e.cfg, i, lds[i].snapped, lds[i].lastLoc)
		e.m.shards[i].activeHolds.Store(int64(st.ActiveHolds()))
		e.loaded[i].Store(true)
	}
	d := time.Since(t)
	e.m.replay.Set(d.Seconds())
	e.m.replayed.Add(float64(total))
	for _, a := range e.actors {
		go a.run()
	}
	e.cfg.Logger.Info("replay done", "shards", e.cfg.Shards, "entries", total,
		"duration", d.Round(time.Millisecond).String(), "entries_per_second", int64(float64(total)/max(d.Seconds(), 1e-9)))
	e.ready.Store(true)
	close(e.replayed)
}

// resolveInDoubt decides every tx that a replay left in doubt (prepared on a
// shard whose log holds no outcome for it) the same way every time, applies
// the outcome to each shard's state, and returns the COMMIT or ABORT records
// each shard must write. A tx is committed if a participant's log holds its
// COMMIT, or if every participant's log holds its PREPARE and none its
// ABORT: then every part was durable, which is exactly when the coordinator
// may have answered success. Otherwise it is aborted: some part was never
// written, so no client was told it applied. It also numbers new txs past
// every tx the logs name: it returns the largest.
//
// It applies nothing and returns the shards to replay in full when a
// participant was loaded from a snapshot that cannot answer for a tx
// (named at or before the snapshot's largest tx, and not among the
// outcomes it kept): only the whole log can.
func resolveInDoubt(states []*State, log *slog.Logger) ([][]txRecord, []int, uint64, error) {
	markers := make([][]txRecord, len(states))
	var maxTx uint64
	for _, st := range states {
		maxTx = max(maxTx, st.maxTx)
	}
	// Decide every tx first, from the logs as replayed, then apply: an
	// outcome applied on one shard must not change another's reading.
	decided := make(map[uint64]bool)
	var full []int
	for i, st := range states {
		for _, p := range st.inDoubt() {
			if _, done := decided[p.tx]; done {
				continue
			}
			committed, aborted, all := false, false, true
			for _, s := range p.shards {
				if s >= len(states) {
					return nil, nil, 0, fmt.Errorf("shard %d: tx %d names shard %d of %d", i, p.tx, s, len(states))
				}
				prepared, known, c := states[s].txOutcome(p.tx)
				if !prepared && !known && p.tx <= states[s].snapMaxTx && !slices.Contains(full, s) {
					full = append(full, s)
				}
				switch {
				case known && c:
					committed = true
				case known:
					aborted = true
				case !prepared:
					all = false
				}
			}
			if committed && aborted {
				return nil, nil, 0, fmt.Errorf("shard %d: tx %d is both committed and aborted in the logs", i, p.tx)
			}
			decided[p.tx] = committed || (all && !aborted)
		}
	}
	if len(full) > 0 {
		return nil, full, maxTx, nil
	}
	for i, st := range states {
		for _, p := range st.inDoubt() {
			commit := decided[p.tx]
			if commit {
				if _, err := st.commitTx(p.tx); err != nil {
					return nil, nil, 0, fmt.Errorf("shard %d: %w", i, err)
				}
				markers[i] = append(markers[i], txRecord{kind: txCommit, tx: p.tx})
			} else {
				st.abortTx(p.tx)
				markers[i] = append(markers[i], txRecord{kind: txAbort, tx: p.tx})
			}
			log.Info("tx in doubt resolved", "shard", i, "tx", p.tx, "committed", commit)
		}
	}
	for _, st := range states {
		st.outcomes = nil
	}
	return markers, nil, maxTx, nil
}

// replayer returns the function that applies each record of a shard's log
// to st, in log order.
func replayer(st *State) func(loc uint64, rec []byte) error {
	d := newDecoder()
	var e Entry
	return func(loc uint64, rec []byte) error {
		var err error
		switch {
		case isTxRecord(rec):
			err = st.replayTx(rec, loc)
		default:
			if err = d.decode(rec, &e, true); err != nil {
				break
			}
			if st.collect != nil {
				err = st.collectTx(&e, loc)
			} else {
				err = st.apply(&e, loc)
			}
		}
		if err != nil {
			return fmt.Errorf("record at %#x: %w", loc, err)
		}
		return nil
	}
}

// Ready reports whether every shard has replayed and takes requests.
func (e *Engine) Ready() bool { return e.ready.Load() }

// Readiness returns nil when every shard has replayed and can write, and
// otherwise an unavailable error whose Shards and Detail name the shards
// that cannot, and why: still replaying, failed (a journal error: restart to
// recover) or stalled (a journal write waits for a file it could not open).
func (e *Engine) Readiness() *Error {
	if e.closing.Load() {
		return errClosed
	}
	var shards []int
	var why []string
	if !e.ready.Load() {
		select {
		case <-e.replayed:
			return errorf(CodeUnavailable, "the replay failed: %v", e.replay)
		default:
		}
		for i := range e.loaded {
			if !e.loaded[i].Load() {
				shards = append(shards, i)
			}
		}
		if len(shards) == 0 {
			// Every shard has replayed and the engine is starting them:
			// requests are still refused until ready is set.
			for i := range e.loaded {
				shards = append(shards, i)
			}
			why = append(why, "the shards have replayed and are starting")
		} else {
			why = append(why, fmt.Sprintf("shards %v are replaying the ledger", shards))
		}
	} else {
		var failed, stalled []int
		for i, a := range e.actors {
			switch {
			case a.writeFailed.Load():
				failed = append(failed, i)
			case a.stalled.Load():
				stalled = append(stalled, i)
			}
		}
		if len(failed) > 0 {
			why = append(why, fmt.Sprintf("shards %v failed on a journal error and take no writes until a restart", failed))
		}
		if len(stalled) > 0 {
			why = append(why, fmt.Sprintf("shards %v are stalled: their journals cannot open a file (out of descriptors?) and retry", stalled))
		}
		shards = append(failed, stalled...)
		slices.Sort(shards)
	}
	if len(shards) == 0 {
		return nil
	}
	err := errorf(CodeUnavailable, "not ready: %s", strings.Join(why, "; "))
	err.Shards = shards
	return err
}

// Wait blocks until the replay ends and returns its error.
func (e *Engine) Wait(ctx context.Context) error {
	select {
	case <-e.replayed:
		return e.replay
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shards returns the number of shards.
func (e *Engine) Shards() int { return e.cfg.Shards }

// Route returns the shard that owns productID. The hash is fixed (FNV-1a,
// then MurmurHash3's 64-bit finalizer, mapped onto the shard count by
// multiplication), stable across processes and versions, so a data
// directory keeps its layout. The finalizer matters: FNV-1a's low bits
// depend only on the low bits of each byte, so "sku-1" and "sku-5" would
// always share a shard.
func Route(productID string, shards int) int {
	hi, _ := bits.Mul64(mix64(fnv1a(fnvOffset, productID)), uint64(shards))
	return int(hi)
}

// FNV-1a's 64-bit parameters.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv1a continues the FNV-1a hash h over s.
func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is MurmurHash3's 64-bit finalizer: it spreads every input bit over
// the whole word.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// enter admits a call, or returns why not; leave must follow a nil return.
func (e *Engine) enter() *Error {
	e.inflight.Add(1)
	if e.closing.Load() {
		e.inflight.Add(-1)
		return errClosed
	}
	if !e.ready.Load() {
		e.inflight.Add(-1)
		return errReplaying
	}
	return nil
}

func (e *Engine) leave() { e.inflight.Add(-1) }

// send queues r on shard i and waits for its answer.
func (e *Engine) send(ctx context.Context, i int, r *request) *Error {
	if !e.actors[i].submit(r) {
		return errOverloaded
	}
	return e.wait(ctx, i, r)
}

// wait waits for shard i to answer r, for ctx, or for the shard to stop
// (a request queued as it shut down is never answered).
func (e *Engine) wait(ctx context.Context, i int, r *request) *Error {
	select {
	case <-r.done:
		return r.err
	case <-e.actors[i].done:
		select {
		case <-r.done:
			return r.err
		default:
			return errClosed
		}
	case <-ctx.Done():
		return errorf(CodeUnavailable, "gave up waiting for the shard: %v; the request may still apply", ctx.Err())
	}
}

// Write applies one op.
func (e *Engine) Write(ctx context.Context, op Op) (Result, *Error) {
	if err := op.Validate(); err != nil {
		return Result{}, err
	}
	if err := e.enter(); err != nil {
		return Result{}, err
	}
	defer e.leave()
	i := Route(op.ProductID, e.cfg.Shards)
	r := newRequest(reqWrite)
	r.ops = []Op{op}
	r.index = []int{0}
	if err := e.send(ctx, i, r); err != nil {
		return Result{}, err
	}
	res := e.result(i, &r.results[0])
	return res, res.Err
}

// Batch applies ops in order. Without atomic, each op stands alone and its
// Result carries its refusal. With atomic, all apply or none: the error is
// then the first failing op's, with OpIndex set.
func (e *Engine) Batch(ctx context.Context, ops []Op, atomic bool) ([]Result, *Error) {
	if len(ops) == 0 {
		return nil, invalid("a batch needs at least one op")
	}
	if len(ops) > BatchRequestOpsMax {
		return nil, invalid("a batch has at most %d ops", BatchRequestOpsMax)
	}
	results := make([]Result, len(ops))
	valid := len(ops) // atomic: ops[valid] is the first invalid op
	for i := range ops {
		if err := ops[i].Validate(); err != nil {
			results[i].Err = err.withIndex(i)
			if atomic {
				valid = i
				break
			}
		}
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.leave()
	if atomic {
		var err *Error
		if valid < len(ops) {
			// The batch fails either way; an op before the invalid one may
			// fail first.
			err = cmp.Or(e.evaluate(ctx, ops[:valid], results), results[valid].Err)
		} else {
			err = e.atomicBatch(ctx, ops, results)
		}
		if err != nil {
			return nil, err
		}
		return results, nil
	}
	e.looseBatch(ctx, ops, results)
	return results, nil
}

// split groups the ops that are still to run by shard, in batch order.
func (e *Engine) split(ops []Op, results []Result) map[int]*request {
	parts := make(map[int]*request)
	for i := range ops {
		if results[i].Err != nil {
			continue
		}
		s := Route(ops[i].ProductID, e.cfg.Shards)
		r := parts[s]
		if r == nil {
			r = newRequest(reqWrite)
			if e.cfg.Shards == 1 {
				// One shard has the whole batch: room for the rest of it.
				r.ops, r.index = make([]Op, 0, len(ops)-i), make([]int, 0, len(ops)-i)
			}
			parts[s] = r
		}
		r.ops = append(r.ops, ops[i])
		r.index = append(r.index, i)
	}
	return parts
}

// looseBatch runs each shard's part of a non-atomic batch in parallel.
func (e *Engine) looseBatch(ctx context.Context, ops []Op, results []Result) {
	parts := e.split(ops, results)
	for s, r := range parts {
		if !e.actors[s].submit(r) {
			r.err = errOverloaded
			close(r.done)
		}
	}
	for s, r := range parts {
		err := e.wait(ctx, s, r)
		for j, i := range r.index {
			if err != nil {
				results[i].Err = err.withIndex(i)
				continue
			}
			results[i] = e.result(s, &r.results[j])
			if results[i].Err != nil {
				results[i].Err = results[i].Err.withIndex(i)
			}
		}
	}
}

// atomicBatch runs an all-or-nothing batch. On one shard, the actor does it
// in one step (one WAL block). Across shards it is a tx, committed in one
// round of parallel fsyncs (doc.go has the protocol and its crash cases):
//
//  1. Every participant gets its part at once. Each dry-runs it and, if it
//     passes, writes a PREPARE record with the part's entries in its next
//     flight, holds the products (parks them) and answers once that flight
//     is durable. A part whose product another tx holds waits for it if
//     its tx is older, and is refused at once if younger (wait-die).
//  2. When every part is durable the tx is committed: the coordinator tells
//     each participant to apply its part (it writes a COMMIT record later,
//     in its next flight, which nobody waits for) and answers the client.
//  3. A refused part aborts the tx; its other parts are dropped. A part
//     refused because its product was held makes the coordinator retry the
//     whole tx after a short backoff, until TxTimeout. A participant that
//     failed or did not answer within TxTimeout might still make its part
//     durable, so the abort is first made durable on another participant.
func (e *Engine) atomicBatch(ctx context.Context, ops []Op, results []Result) *Error {
	if len(ops) == 0 {
		return nil
	}
	parts := e.split(ops, results)
	if len(parts) == 1 {
		for s, r := range parts {
			r.atomic = true
			if err := e.send(ctx, s, r); err != nil {
				return err
			}
			e.fill(s, r, results)
		}
		return nil
	}
	select {
	case e.txSlots <- struct{}{}:
		defer func() { <-e.txSlots }()
	default:
		return errOverloaded
	}
	shards := make([]int, 0, len(parts))
	for s := range parts {
		shards = append(shards, s)
	}
	slices.Sort(shards)
	// From here the protocol runs to its end whatever ctx does: held
	// products must always be resolved.
	deadline := time.Now().Add(e.cfg.TxTimeout)
	backoff := txRetryMin
	var prio uint64
	for {
		err, retry := e.tryTx(results, shards, parts, deadline, &prio)
		if !retry {
			if err == nil {
				e.m.txCommitted.Inc()
			} else {
				e.m.txAborted.Inc()
			}
			return err
		}
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		if time.Now().Add(wait).After(deadline) {
			e.m.txConflicts.Inc()
			return errConflict
		}
		e.m.txRetries.Inc()
		time.Sleep(wait)
		backoff = min(2*backoff, txRetryMax)
		parts = e.split(ops, results)
	}
}

// A tx refused because a product was held is retried after a random wait
// of 0.5 to 1.5 times txRetryMin, doubling up to txRetryMax: about the time
// the holder needs to resolve (one fsync), spread so that two txs that
// collided do not collide again.
const (
	txRetryMin = 200 * time.Microsecond
	txRetryMax = 5 * time.Millisecond
)

// partState is what the coordinator learned of one part of a tx.
type partState uint8

const (
	partPrepared partState = iota // durable, products held
	partRefused                   // refused by a rule: nothing written
	partHeld                      // refused because a product was held: nothing written
	partNotSent                   // its shard's queue was full: nothing written
	partUnknown                   // failed or no answer in time: may become durable
)

// tryTx runs one attempt of a tx over parts (one request per shard, in
// shards order) and returns its error, or retry when a part found a product
// held.
func (e *Engine) tryTx(results []Result, shards []int, parts map[int]*request, deadline time.Time, prio *uint64) (*Error, bool) {
	tx := e.nextTx.Add(1)
	if *prio == 0 {
		*prio = tx // the first attempt's number is the tx's age
	}
	states := make([]partState, len(shards))
	for k, s := range shards {
		r := parts[s]
		r.kind, r.tx, r.prio, r.shards, r.deadline = reqPrepare, tx, *prio, shards, deadline
		if !e.actors[s].submit(r) {
			states[k] = partNotSent
		}
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	timedOut := false
	for k, s := range shards {
		if states[k] == partNotSent {
			continue
		}
		r := parts[s]
		got := false
		if !timedOut {
			select {
			case <-r.done:
				got = true
			case <-e.actors[s].done:
			case <-timer.C:
				timedOut = true
			}
		}
		if !got {
			select {
			case <-r.done:
				got = true
			default:
			}
		}
		switch {
		case !got: // r.err is the actor's until it answers
			states[k] = partUnknown
		case r.err == nil:
			states[k] = partPrepared
		case r.err == errConflict:
			states[k] = partHeld
		case r.err.Code == CodeUnavailable:
			states[k] = partUnknown
		default:
			states[k] = partRefused
		}
	}
	all, unknown, retry, notSent := true, false, false, false
	var first *Error
	for k, s := range shards {
		switch states[k] {
		case partRefused:
			err := parts[s].err
			if err.OpIndex < 0 {
				err = err.withIndex(parts[s].index[0])
			}
			if first == nil || err.OpIndex < first.OpIndex {
				first = err
			}
		case partHeld:
			retry = true
		case partNotSent:
			notSent = true
		case partUnknown:
			unknown = true
		}
		all = all && states[k] == partPrepared
	}
	if all {
		for _, s := range shards {
			e.resolveTx(s, tx, true, false)
		}
		for _, s := range shards {
			e.fill(s, parts[s], results)
		}
		return nil, false
	}
	// Some part was refused, not sent, or may yet become durable.
	if unknown && first == nil && !retry && !notSent {
		// Every part is prepared or unknown: the tx could still end up
		// with every part durable, which recovery would take as committed.
		// An ABORT record on one participant rules that out.
		return e.abortDurably(tx, shards, states), false
	}
	for k, s := range shards {
		if states[k] == partPrepared || states[k] == partUnknown {
			e.resolveTx(s, tx, false, false)
		}
	}
	switch {
	case retry:
		return nil, true
	case first != nil:
		return first, false
	case notSent:
		return errOverloaded, false
	}
	return errorf(CodeUnavailable, "a shard of the batch failed; nothing of it applied"), false
}

// abortDurably makes the abort of tx durable on a participant whose part is
// prepared (so its journal works), drops the other parts, and returns the
// batch's error: unavailable, nothing applied; or unavailable with the
// outcome unknown when no participant could record the abort.
func (e *Engine) abortDurably(tx uint64, shards []int, states []partState) *Error {
	recorded := -1
	for k, s := range shards {
		if states[k] != partPrepared || recorded >= 0 {
			continue
		}
		r := e.resolveTx(s, tx, false, true)
		timer := time.NewTimer(e.cfg.TxTimeout)
		select {
		case <-r.done:
			if r.err == nil {
				recorded = s
			}
		case <-e.actors[s].done:
		case <-timer.C:
		}
		timer.Stop()
	}
	for k, s := range shards {
		if s != recorded && (states[k] == partPrepared || states[k] == partUnknown) {
			e.resolveTx(s, tx, false, false)
		}
	}
	if recorded < 0 {
		return errorf(CodeUnavailable, "a shard of the batch failed or did not answer within %s and no other could record the abort: the outcome is known after a restart; retry with the same keys", e.cfg.TxTimeout)
	}
	return errorf(CodeUnavailable, "a shard of the batch failed or did not answer within %s; nothing of it applied", e.cfg.TxTimeout)
}

// evaluate dry-runs an atomic batch that will not apply, on every shard in
// parallel, and returns its first failing op, if any.
func (e *Engine) evaluate(ctx context.Context, ops []Op, results []Result) *Error {
	parts := e.split(ops, results)
	for s, r := range parts {
		r.kind, r.evalOnly = reqPrepare, true
		if !e.actors[s].submit(r) {
			r.err = errOverloaded.withIndex(r.index[0])
			close(r.done)
		}
	}
	var first *Error
	for s, r := range parts {
		if err := e.wait(ctx, s, r); err != nil && (first == nil || err.OpIndex < first.OpIndex) {
			first = err
		}
	}
	return first
}

// resolveTx tells shard s the outcome of tx and returns the message; only a
// durable abort is answered. It never blocks: the ctrl queue holds a
// message per tx in flight, and should it be full (a shard whose writer is
// stuck stops reading it), a goroutine delivers the message later.
func (e *Engine) resolveTx(s int, tx uint64, commit, durable bool) *request {
	r := newRequest(reqResolve)
	r.tx, r.commit, r.durable = tx, commit, durable
	select {
	case e.actors[s].ctrl <- r:
	default:
		go func() {
			select {
			case e.actors[s].ctrl <- r:
			case <-e.actors[s].done:
			}
		}()
	}
	return r
}

// fill copies a shard's op results into the batch results.
func (e *Engine) fill(s int, r *request, results []Result) {
	for j, i := range r.index {
		results[i] = e.result(s, &r.results[j])
	}
}

// result turns an actor's opResult into a Result, reading the original
// entries of a replay from shard s's journal.
func (e *Engine) result(s int, o *opResult) Result {
	if o.err != nil {
		return Result{Err: o.err}
	}
	if o.replayOf == 0 {
		return Result{Entries: o.entries, Stock: o.stock, Replayed: o.replayed}
	}
	res := Result{Replayed: true}
	ens, err := e.read(s, o.replayLocs[:o.replayN]...)
	if err != nil {
		return Result{Err: err}
	}
	for k, en := range ens {
		if k > 0 && en.Origin != OriginContinuation {
			break
		}
		res.Entries = append(res.Entries, en)
	}
	res.Stock = stockAfter(&res.Entries[len(res.Entries)-1])
	return res
}

// read returns the entries at locs of shard s's journal, in order.
func (e *Engine) read(s int, locs ...uint64) ([]Entry, *Error) {
	recs, err := e.journals[s].ReadMany(locs)
	if err == nil && len(recs) != len(locs) {
		err = fmt.Errorf("journal returned %d records for %d locators", len(recs), len(locs))
	}
	var ens []Entry
	if err == nil {
		ens = make([]Entry, len(recs))
		d := newDecoder()
		for i, rec := range recs {
			if err = d.decode(rec, &ens[i], false); err != nil {
				break
			}
		}
	}
	if err != nil {
		e.cfg.Logger.Error("read ledger entries", "shard", s, "locs", locs, "err", err)
		return nil, errorf(CodeUnavailable, "ledger entry could not be read")
	}
	return ens, nil
}

// Stock returns a product's stock.
func (e *Engine) Stock(ctx context.Context, productID string) (Stock, *Error) {
	r, _, err := e.query(ctx, reqStock, productID, "")
	if err != nil {
		return Stock{}, err
	}
	return r.stock, nil
}

// History returns the entries of a product with version > after, at most
// limit of them, in version order.
func (e *Engine) History(ctx context.Context, productID string, after int64, limit int) (Page, *Error) {
	if after < 0 {
		return Page{}, invalid("after must be a non-negative integer")
	}
	if limit < 1 || limit > HistoryLimitMax {
		return Page{}, invalid("limit must be an integer from 1 to %d", HistoryLimitMax)
	}
	r := newRequest(reqHistory)
	r.after, r.limit = after, limit
	s, err := e.ask(ctx, r, productID, "")
	if err != nil {
		return Page{}, err
	}
	ens, err := e.read(s, r.locs...)
	if err != nil {
		return Page{}, err
	}
	return Page{Entries: ens, Next: r.next}, nil
}

// HistoryLimitMax is the largest page of history.
const HistoryLimitMax = 1000

// Reservation returns the state of one hold.
func (e *Engine) Reservation(ctx context.Context, productID, reservationID string) (Reservation, *Error) {
	if err := checkID("reservation_id", reservationID); err != nil {
		return Reservation{}, err
	}
	r, s, err := e.query(ctx, reqReservation, productID, reservationID)
	if err != nil {
		return Reservation{}, err
	}
	ens, rerr := e.read(s, r.locs...)
	if rerr != nil {
		return Reservation{}, rerr
	}
	res := ens[0]
	out := Reservation{
		ProductID:     productID,
		ReservationID: reservationID,
		Quantity:      res.Quantity,
		State:         r.resv.state(),
		ExpiresAt:     res.ExpiresAt,
		CreatedAt:     res.CreatedAt,
	}
	if len(ens) > 1 {
		out.SettledAt = ens[1].CreatedAt
	}
	return out, nil
}

func (e *Engine) query(ctx context.Context, kind reqKind, productID, reservationID string) (*request, int, *Error) {
	r := newRequest(kind)
	s, err := e.ask(ctx, r, productID, reservationID)
	return r, s, err
}

// ask sends read request r about productID to its shard.
func (e *Engine) ask(ctx context.Context, r *request, productID, reservationID string) (int, *Error) {
	if err := checkID("product_id", productID); err != nil {
		return 0, err
	}
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.leave()
	r.productID, r.reservationID = productID, reservationID
	s := Route(productID, e.cfg.Shards)
	return s, e.send(ctx, s, r)
}

// Close stops taking requests, waits up to ctx for those in flight, then
// stops the actors, which sync and close their journals.
func (e *Engine) Close(ctx context.Context) error {
	var err error
	e.closed.Do(func() {
		e.closing.Store(true)
		for e.inflight.Load() > 0 {
			if ctx.Err() != nil {
				err = fmt.Errorf("close: %d requests still in flight: %w", e.inflight.Load(), ctx.Err())
				break
			}
			time.Sleep(time.Millisecond)
		}
		<-e.replayed
		if !e.ready.Load() {
			return
		}
		for _, a := range e.actors {
			close(a.quit)
		}
		for _, a := range e.actors {
			<-a.done
		}
	})
	return err
}
