package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LogCursor reads one shard's log forward, read-only, beside the shard
// that writes it (wal.Reader). Next passes the records of the blocks after
// those it read already, up to and including block until, to fn in log
// order; it stops without error at a block not yet complete.
type LogCursor interface {
	Next(until uint64, fn func(loc uint64, rec []byte) error) (int, error)
}

// durableJournal is a Journal that says how far it is durable: the last
// block written and fsynced (wal.Log). Reconciliation reads the log up to
// there.
type durableJournal interface {
	LastSeq() uint64
}

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// OpenLog returns a new cursor at the start of shard i's log.
	OpenLog func(shard int) LogCursor
	// Logger receives one line per divergent product and per run.
	Logger *slog.Logger
	// Registerer receives inventory_reconcile_divergence_total and
	// inventory_reconcile_runs_total.
	Registerer prometheus.Registerer
}

// Reconciler checks, while the service runs, that each shard's balances in
// memory are what its ledger says (invariant 4 of DESIGN.md). For one shard
// at a time:
//
//  1. It reads the shard's log from the start up to the last durable block
//     I, on its own goroutine, with no part in the actor, and recomputes
//     each product's version and balances from the entries' types and
//     quantities: an independent sum, not the running balances the entries
//     carry, and not the code (apply) that keeps the cache. A cart's
//     entries count at its COMMIT record, never at its PREPARE.
//  2. It asks the actor for the live version and balances of those
//     products, reconcileChunk at a time: one read request each through the
//     normal queue, answered with its flight, which costs the actor a few
//     map lookups. The shard never pauses for more than that one step of
//     its loop. A product parked by a cart is read too: its cache holds
//     only committed entries, as the recomputation does.
//  3. A product whose live version is the recomputed one is compared. One
//     that moved on since I (a later live version) is compared at that
//     version: the answer comes after its flight is durable, so the log
//     holds that version by then; the recomputation reads on to the
//     durable end after the last chunk and compares each such product when
//     it reaches the version seen live. A live version below the log's, a
//     product missing from the cache, or a version the log never reaches,
//     is a divergence too.
//
// Each divergent product is logged with both states and counted in
// inventory_reconcile_divergence_total{shard}. Products that exist only in
// memory, with no entry in the log, are found by count: products only
// grow, and the log read to the durable end after the last answer holds
// every product memory held at that answer, so memory holding more is a
// divergence (one, without a product id: memory is not searched for them).
//
// Memory: the recomputation holds each product's id and four numbers
// while it runs (about 100 B a product), and a cart's entries from its
// PREPARE to its outcome. One run at a time.
type Reconciler struct {
	e    *Engine
	cfg  ReconcilerConfig
	runs prometheus.Counter
	div  *prometheus.CounterVec
	mu   sync.Mutex // held by the run in progress
}

// reconcileChunk is how many products one live read asks for: 256 map
// lookups cost the actor tens of microseconds, less than one fsync.
const reconcileChunk = 256

// reconcileListMax bounds the divergent products a report lists per
// shard; all are counted and logged.
const reconcileListMax = 100

// NewReconciler returns a Reconciler of e's shards.
func NewReconciler(e *Engine, cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.OpenLog == nil {
		return nil, errors.New("reconciler: OpenLog is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rc := &Reconciler{e: e, cfg: cfg,
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inventory_reconcile_runs_total",
			Help: "Reconciliation runs finished (every shard's balances in memory compared with its ledger).",
		}),
		div: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "inventory_reconcile_divergence_total",
			Help: "Products whose balances in memory differed from their ledger when a reconciliation compared them, by shard. Anything above 0 needs an operator (README).",
		}, []string{"shard"}),
	}
	for i := range e.Shards() {
		rc.div.WithLabelValues(strconv.Itoa(i))
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{rc.runs, rc.div} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("reconciler: register metrics: %w", err)
			}
		}
	}
	return rc, nil
}

// ReconcileReport is the outcome of one run.
type ReconcileReport struct {
	Started  time.Time
	Duration time.Duration
	Shards   []ReconcileShard
}

// Divergent returns how many products diverged, over every shard.
func (r *ReconcileReport) Divergent() int {
	n := 0
	for _, s := range r.Shards {
		n += s.DivergentCount
	}
	return n
}

// ReconcileShard is one shard's part of a report.
type ReconcileShard struct {
	Shard int
	// Index is the durable block the log was first read to.
	Index uint64
	// Products were compared; Moved of them at a version past Index.
	Products, Moved int
	// DivergentCount counts divergent products; Divergent lists the first
	// reconcileListMax.
	DivergentCount int
	Divergent      []Divergence
	// Err says why the shard could not be reconciled (the shard failed,
	// the log could not be read); its products are then not compared.
	Err string
}

// Divergence is one product whose cache and ledger differ.
type Divergence struct {
	// ProductID is empty for the divergence of a shard whose memory holds
	// more products than its ledger.
	ProductID string
	// Live is the cache's state, Ledger the recomputed one, at Live's
	// version unless the log does not reach it.
	Live, Ledger Balances
	Reason       string
}

// Balances are a product's version and balances.
type Balances struct {
	Version, OnHand, Reserved int64
}

// errReconcileBusy answers a run asked for while one is in progress.
var errReconcileBusy = errorf(CodeOverloaded, "a reconciliation is running; its report comes when it ends")

// Run reconciles every shard, one after the other, and returns the report.
// A run asked for while another is in progress is refused overloaded.
func (rc *Reconciler) Run(ctx context.Context) (*ReconcileReport, *Error) {
	if !rc.mu.TryLock() {
		return nil, errReconcileBusy
	}
	defer rc.mu.Unlock()
	rep := &ReconcileReport{Started: time.Now()}
	for i := range rc.e.Shards() {
		s := rc.shard(ctx, i)
		if s.DivergentCount > 0 {
			rc.div.WithLabelValues(strconv.Itoa(i)).Add(float64(s.DivergentCount))
		}
		if s.Err != "" {
			rc.cfg.Logger.Warn("reconcile: shard not compared", "shard", i, "err", s.Err)
		}
		rep.Shards = append(rep.Shards, s)
		if err := ctx.Err(); err != nil {
			return nil, errorf(CodeUnavailable, "reconciliation stopped: %v", err)
		}
	}
	rep.Duration = time.Since(rep.Started)
	rc.runs.Inc()
	level := slog.LevelInfo
	if rep.Divergent() > 0 {
		level = slog.LevelError
	}
	rc.cfg.Logger.Log(ctx, level, "reconcile done", "divergent", rep.Divergent(), "duration", rep.Duration.Round(time.Millisecond).String())
	return rep, nil
}

// shard reconciles shard i.
func (rc *Reconciler) shard(ctx context.Context, i int) ReconcileShard {
	out := ReconcileShard{Shard: i}
	e := rc.e
	if err := e.enter(); err != nil {
		out.Err = err.Detail
		return out
	}
	dj, ok := e.journals[i].(durableJournal)
	e.leave()
	if !ok {
		out.Err = "the journal does not say how far it is durable"
		return out
	}
	b := newRebuild()
	cur := rc.cfg.OpenLog(i)
	out.Index = dj.LastSeq()
	if _, err := cur.Next(out.Index, b.record); err != nil {
		out.Err = fmt.Sprintf("read the log: %v", err)
		return out
	}
	ids := make([]string, 0, len(b.products))
	for id := range b.products {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	diverged := func(d Divergence) {
		out.DivergentCount++
		if len(out.Divergent) < reconcileListMax {
			out.Divergent = append(out.Divergent, d)
		}
		rc.cfg.Logger.Error("reconcile: balances in memory differ from the ledger", "shard", i, "product", d.ProductID,
			"reason", d.Reason, "live_version", d.Live.Version, "live_on_hand", d.Live.OnHand, "live_reserved", d.Live.Reserved,
			"ledger_version", d.Ledger.Version, "ledger_on_hand", d.Ledger.OnHand, "ledger_reserved", d.Ledger.Reserved)
	}
	liveProducts := 0 // products in memory at the last chunk's answer
	// At least one request, also for an empty log: it reports how many
	// products memory holds.
	for start := 0; start == 0 || start < len(ids); start += reconcileChunk {
		chunk := ids[start:min(start+reconcileChunk, len(ids))]
		r := newRequest(reqBalances)
		r.products = chunk
		if err := e.enter(); err != nil {
			out.Err = err.Detail
			return out
		}
		err := e.send(ctx, i, r)
		e.leave()
		if err == nil {
			err = r.err
		}
		if err != nil {
			out.Err = fmt.Sprintf("read live balances: %s", err.Detail)
			return out
		}
		liveProducts = r.count
		for k, id := range chunk {
			live, found := r.live[k], r.found[k]
			rec := b.products[id]
			switch {
			case !found:
				diverged(Divergence{ProductID: id, Ledger: rec.Balances, Reason: "in the ledger, not in memory"})
			case live.Version == rec.Version:
				out.Products++
				if live != rec.Balances {
					diverged(Divergence{ProductID: id, Live: live, Ledger: rec.Balances, Reason: "balances differ"})
				}
			case live.Version > rec.Version:
				rec.watch, rec.live = live.Version, live
			default:
				diverged(Divergence{ProductID: id, Live: live, Ledger: rec.Balances, Reason: "memory is behind the ledger"})
			}
		}
	}
	// Products that moved on: read on to the durable end, which holds every
	// version an answer showed, comparing each at the version seen live.
	b.seen = func(id string, rec *rebuilt) {
		out.Products++
		out.Moved++
		if rec.live != rec.Balances {
			diverged(Divergence{ProductID: id, Live: rec.live, Ledger: rec.Balances, Reason: "balances differ"})
		}
	}
	if _, err := cur.Next(dj.LastSeq(), b.record); err != nil {
		out.Err = fmt.Sprintf("read the log: %v", err)
		return out
	}
	// Products only grow, and the log read to the durable end holds every
	// product memory held at the last answer: fewer means memory holds
	// products the ledger does not.
	if len(b.products) < liveProducts {
		diverged(Divergence{Reason: fmt.Sprintf("memory holds %d products, the ledger only %d", liveProducts, len(b.products))})
	}
	for _, id := range ids {
		if rec := b.products[id]; rec.watch != 0 {
			diverged(Divergence{ProductID: id, Live: rec.live, Ledger: rec.Balances, Reason: "memory is at a version the durable ledger does not reach"})
		}
	}
	if b.err != nil {
		out.Err = b.err.Error()
	}
	return out
}

// rebuild recomputes products' balances from log records, in log order.
type rebuild struct {
	products map[string]*rebuilt
	dec      *decoder
	// pending are the entries of carts prepared and not yet resolved;
	// collecting is the one whose entries follow in the log.
	pending    map[uint64][]Entry
	collecting uint64
	want       int
	// seen is called when a watched product reaches its watched version.
	seen func(id string, rec *rebuilt)
	err  error // the first record that could not be read
}

// rebuilt is one product's recomputed state.
type rebuilt struct {
	Balances
	// watch is the version at which to compare with live, 0 for none.
	watch int64
	live  Balances
}

func newRebuild() *rebuild {
	return &rebuild{products: make(map[string]*rebuilt), dec: newDecoder(), pending: make(map[uint64][]Entry)}
}

// record takes one log record.
func (b *rebuild) record(loc uint64, rec []byte) error {
	if isTxRecord(rec) {
		r, err := decodeTx(rec)
		if err != nil {
			return fmt.Errorf("record at %#x: %w", loc, err)
		}
		switch r.kind {
		case txPrepare:
			b.pending[r.tx] = nil
			b.collecting, b.want = r.tx, r.n
		case txCommit:
			for k := range b.pending[r.tx] {
				b.add(&b.pending[r.tx][k])
			}
			delete(b.pending, r.tx)
		case txAbort:
			delete(b.pending, r.tx)
		}
		return nil
	}
	var e Entry
	if err := b.dec.decode(rec, &e, b.want == 0); err != nil {
		return fmt.Errorf("record at %#x: %w", loc, err)
	}
	if b.want > 0 { // decoded as copies: they wait for the outcome
		b.pending[b.collecting] = append(b.pending[b.collecting], e)
		b.want--
		return nil
	}
	b.add(&e)
	return nil
}

// add applies one entry's effect, as its type and quantity say.
func (b *rebuild) add(e *Entry) {
	p := b.products[e.ProductID]
	if p == nil {
		p = &rebuilt{}
		b.products[strings.Clone(e.ProductID)] = p
	}
	if e.Type == 0 || e.Type >= typeEnd {
		if b.err == nil {
			b.err = fmt.Errorf("entry of product %q version %d has unknown type %d", e.ProductID, e.Version, e.Type)
		}
		return
	}
	_, p.OnHand, p.Reserved = effect(e.Type, e.Quantity, p.OnHand, p.Reserved)
	p.Version++
	if p.watch != 0 && p.Version == p.watch {
		p.watch = 0
		if b.seen != nil {
			b.seen(e.ProductID, p)
		}
	}
}

// finishBalances answers a reqBalances: the live state of r.products, and
// how many products the shard holds. Called only from the actor goroutine.
func (st *State) finishBalances(r *request) {
	r.count = len(st.products)
	r.live = make([]Balances, len(r.products))
	r.found = make([]bool, len(r.products))
	for k, id := range r.products {
		if p := st.products[id]; p != nil {
			r.live[k], r.found[k] = Balances{Version: p.version, OnHand: p.onHand, Reserved: p.reserved}, true
		}
	}
}
