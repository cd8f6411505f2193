package shard

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// cloneJournals copies the blocks of js into new journals: the logs as a
// crash left them, to recover more than one way.
func cloneJournals(js []*shardtest.Journal) []*shardtest.Journal {
	out := shardtest.Journals(len(js))
	for i, j := range js {
		for _, b := range j.Blocks() {
			out[i].Append(b...)
		}
	}
	return out
}

// txBlock returns the index of the first block of j that holds a tx record
// of kind for tx, or -1.
func txBlock(j *shardtest.Journal, kind txKind, tx uint64) int {
	for b, recs := range j.Blocks() {
		for _, rec := range recs {
			if !isTxRecord(rec) {
				continue
			}
			if r, err := decodeTx(rec); err == nil && r.kind == kind && r.tx == tx {
				return b
			}
		}
	}
	return -1
}

// lastTx returns the largest tx id in the PREPARE records of js.
func lastTx(js []*shardtest.Journal) uint64 {
	var tx uint64
	for _, j := range js {
		for _, rec := range j.Records() {
			if isTxRecord(rec) {
				if r, err := decodeTx(rec); err == nil && r.kind == txPrepare {
					tx = max(tx, r.tx)
				}
			}
		}
	}
	return tx
}

// keysIn returns which of keys the ledgers of products hold, by reading
// every entry.
func keysIn(t *testing.T, e *Engine, products []string, keys []string) map[string]bool {
	t.Helper()
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = false
	}
	for _, p := range products {
		for after := int64(0); ; {
			page, err := e.History(context.Background(), p, after, HistoryLimitMax)
			if err != nil {
				if err.Code == CodeNotFound {
					break
				}
				t.Fatalf("history of %s: %v", p, err)
			}
			for _, en := range page.Entries {
				if _, ok := want[en.IdempotencyKey]; ok {
					want[en.IdempotencyKey] = true
				}
			}
			if page.Next == 0 {
				break
			}
			after = page.Next
		}
	}
	return want
}

// TestTxCrashPoints builds the logs a crash can leave at each point of a
// cross-shard atomic batch and checks that recovery applies the batch
// wholly or not at all, as the rule of doc.go says, and again the same way
// when recovery itself is cut short.
func TestTxCrashPoints(t *testing.T) {
	a, b := productsOn(2, 0, 1)[0], productsOn(2, 1, 1)[0]
	// Run one batch to its end and keep the logs.
	te := startEngine(t, 2)
	te.write(add(a, 10))
	te.write(add(b, 10))
	ops := []Op{remove(a, 3), reserve(b, "cart", 2), add(a, 1), reserve(a, "cart", 4)}
	if _, err := te.Batch(context.Background(), ops, true); err != nil {
		t.Fatalf("batch: %v", err)
	}
	tx := lastTx(te.js)
	eventually(t, "both COMMIT records are written", func() bool {
		return txBlock(te.js[0], txCommit, tx) >= 0 && txBlock(te.js[1], txCommit, tx) >= 0
	})
	te.Close(context.Background())
	full := te.js
	prepA, prepB := txBlock(full[0], txPrepare, tx), txBlock(full[1], txPrepare, tx)
	comA, comB := txBlock(full[0], txCommit, tx), txBlock(full[1], txCommit, tx)
	abort := newEncoder().encodeTx(&txRecord{kind: txAbort, tx: tx})

	keys := []string{ops[0].IdempotencyKey, ops[1].IdempotencyKey, ops[2].IdempotencyKey, ops[3].IdempotencyKey}
	cases := []struct {
		name       string
		keepA      int  // blocks of shard 0's log that survive
		keepB      int  // blocks of shard 1's log
		abortOnA   bool // an ABORT record follows on shard 0
		failMarker bool // recovery's first write fails, as a crash during recovery
		applied    bool
	}{
		{name: "before any PREPARE is durable", keepA: prepA, keepB: prepB},
		{name: "PREPARE durable on one shard only", keepA: prepA + 1, keepB: prepB},
		{name: "PREPARE durable on the other shard only", keepA: prepA, keepB: prepB + 1},
		{name: "every PREPARE durable, no COMMIT (crash after the answer)", keepA: prepA + 1, keepB: prepB + 1, applied: true},
		{name: "one COMMIT durable", keepA: comA + 1, keepB: prepB + 1, applied: true},
		{name: "every COMMIT durable", keepA: comA + 1, keepB: comB + 1, applied: true},
		{name: "every PREPARE durable and an ABORT (the coordinator gave up)", keepA: prepA + 1, keepB: prepB + 1, abortOnA: true},
		{name: "ABORT on a shard whose PREPARE was lost", keepA: prepA, keepB: prepB + 1, abortOnA: true},
		{name: "crash during recovery, before its COMMIT records", keepA: prepA + 1, keepB: prepB + 1, failMarker: true, applied: true},
		{name: "crash during recovery, before its ABORT records", keepA: prepA + 1, keepB: prepB, failMarker: true},
	}
	// Each case runs without snapshots, with a snapshot of each shard
	// covering its whole log as the crash left it (the parts prepared and
	// the outcomes are in the snapshots), and with snapshots that kept no
	// outcome (as if the tx were older than those kept): start-up must
	// then replay the shards that cannot tell.
	for _, snaps := range []string{"none", "kept", "forgotten"} {
		for _, c := range cases {
			t.Run(snaps+"/"+c.name, func(t *testing.T) {
				js := cloneJournals(full)
				js[0].Cut(c.keepA)
				js[1].Cut(c.keepB)
				if c.abortOnA {
					js[0].Append(abort)
				}
				var snapDir func(int) string
				if snaps != "none" {
					dir := t.TempDir()
					snapDir = func(i int) string { return SnapshotDir(dir, i) }
					for i, j := range js {
						snapshotJournal(t, j, i, 2, snapDir(i), snaps == "forgotten")
					}
				}
				txCrashCase(t, c.failMarker, c.applied, js, snapDir, a, b, keys)
			})
		}
	}
}

// snapshotJournal writes a snapshot of shard i of shards covering all of
// j's records, as the shard's state stands after replaying them (parts
// prepared and not resolved included); with forget, without the tx
// outcomes it saw.
func snapshotJournal(t *testing.T, j *shardtest.Journal, i, shards int, dir string, forget bool) {
	t.Helper()
	st := NewState(i, int64(RetentionDefault))
	st.keepFresh = true
	st.beginReplay(0)
	d := newDecoder()
	var e Entry
	var last uint64
	err := j.Open(func(loc uint64, rec []byte) error {
		last = loc
		if isTxRecord(rec) {
			return st.replayTx(rec, loc)
		}
		if err := d.decode(rec, &e, true); err != nil {
			return err
		}
		if st.collect != nil {
			return st.collectTx(&e, loc)
		}
		return st.apply(&e, loc)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.endReplay(); err != nil {
		t.Fatal(err)
	}
	if forget {
		st.recentTx = nil
	}
	c := st.capture(last, t0, shards)
	store, _, err := writeSnapshot(dir, c, func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	store.close()
}

func txCrashCase(t *testing.T, failMarker, applied bool, js []*shardtest.Journal, snapDir func(int) string, a, b string, keys []string) {
	c := struct{ failMarker, applied bool }{failMarker, applied}
	{
		{
			recover := func() {
				t.Helper()
				te := &testEngine{t: t, js: js, clock: newFakeClock(), cfg: Config{Shards: 2}}
				te.cfg.Clock = te.clock.now
				te.cfg.SnapshotDir = snapDir
				te.open()
				got := keysIn(t, te.Engine, []string{a, b}, keys)
				n := 0
				for _, in := range got {
					if in {
						n++
					}
				}
				switch {
				case c.applied && n != len(keys):
					t.Errorf("%d of %d ops in the ledger, want all: %v", n, len(keys), got)
				case !c.applied && n != 0:
					t.Errorf("%d of %d ops in the ledger, want none: %v", n, len(keys), got)
				}
				wantA, wantB := int64(10), int64(10)
				if c.applied {
					wantA, wantB = 8, 10
				}
				if sa, sb := te.stock(a), te.stock(b); sa.OnHand != wantA || sb.OnHand != wantB {
					t.Errorf("on hand %d and %d, want %d and %d", sa.OnHand, sb.OnHand, wantA, wantB)
				}
				te.Close(context.Background())
			}
			if c.failMarker {
				// The outcome's records fail to write: the shards fail, and
				// the logs stay as they were.
				js[0].Fail(shardtest.Fault{Err: errInjected})
				js[1].Fail(shardtest.Fault{Err: errInjected})
				te := &testEngine{t: t, js: js, clock: newFakeClock(), cfg: Config{Shards: 2}}
				te.cfg.Clock = te.clock.now
				te.cfg.SnapshotDir = snapDir
				te.open()
				eventually(t, "the recovery's writes fail", func() bool { return te.Readiness() != nil })
				te.Close(context.Background())
			}
			recover()
			recover() // the outcome is recorded now: the same again
		}
	}
}

// TestTxDiskErrorAborts fails one participant's write of its part, with the
// block on disk or not: the batch is refused unavailable, nothing of it
// applies, now or after a restart, and the other shard keeps working.
func TestTxDiskErrorAborts(t *testing.T) {
	for _, written := range []bool{false, true} {
		t.Run(fmt.Sprintf("block written %v", written), func(t *testing.T) {
			te := startEngine(t, 2)
			a, b := productsOn(2, 0, 1)[0], productsOn(2, 1, 1)[0]
			te.write(add(a, 10))
			te.write(add(b, 10))
			te.js[1].Fail(shardtest.Fault{Err: errInjected, Written: written})
			ops := []Op{remove(a, 3), remove(b, 3)}
			_, err := te.Batch(context.Background(), ops, true)
			if err == nil || err.Code != CodeUnavailable {
				t.Fatalf("batch with a failed participant: %v, want unavailable", err)
			}
			if st := te.stock(a); st.OnHand != 10 {
				t.Errorf("the healthy shard applied its part: %+v", st)
			}
			te.write(add(a, 1)) // the healthy shard works
			te.restart()
			got := keysIn(t, te.Engine, []string{a, b}, []string{ops[0].IdempotencyKey, ops[1].IdempotencyKey})
			if got[ops[0].IdempotencyKey] || got[ops[1].IdempotencyKey] {
				t.Errorf("after a restart: %v, want neither op", got)
			}
			if sa, sb := te.stock(a), te.stock(b); sa.OnHand != 11 || sb.OnHand != 10 {
				t.Errorf("after a restart: on hand %d and %d, want 11 and 10", sa.OnHand, sb.OnHand)
			}
		})
	}
}

// TestTxStuckParticipant holds one participant's journal: the batch fails
// within TxTimeout with nothing applied, and meanwhile the other shard's
// products and expiry keep going. When the disk answers again, the held
// part turns out aborted, also after a restart.
func TestTxStuckParticipant(t *testing.T) {
	te := &testEngine{t: t, js: shardtest.Journals(2), clock: newFakeClock()}
	te.cfg = Config{Shards: 2, Clock: te.clock.now, TxTimeout: 200 * time.Millisecond}
	te.open()
	ctx := context.Background()
	as, bs := productsOn(2, 0, 3), productsOn(2, 1, 1)
	a, other, held, b := as[0], as[1], as[2], bs[0]
	te.write(add(a, 10))
	te.write(add(other, 10))
	te.write(add(held, 10))
	te.write(add(b, 10))
	r := reserve(held, "h", 1)
	r.TTLSeconds = 1
	te.write(r)

	started, release := te.js[1].Hold()
	ops := []Op{remove(a, 3), remove(b, 3)}
	_, err := te.Batch(ctx, ops, true)
	if err == nil || err.Code != CodeUnavailable {
		t.Fatalf("batch with a stuck participant: %v, want unavailable", err)
	}
	<-started
	if st := te.stock(a); st.OnHand != 10 {
		t.Errorf("the healthy participant applied its part: %+v", st)
	}
	te.write(remove(a, 1)) // the product the batch held is free again
	te.write(add(other, 1))
	te.clock.advance(2 * time.Second)
	eventually(t, "the hold on the healthy shard expires", func() bool {
		res, err := te.Reservation(ctx, held, "h")
		return err == nil && res.State == StateExpired
	})
	release()
	te.cfg.TxTimeout = 0
	te.restart()
	got := keysIn(t, te.Engine, []string{a, b}, []string{ops[0].IdempotencyKey, ops[1].IdempotencyKey})
	if got[ops[0].IdempotencyKey] || got[ops[1].IdempotencyKey] {
		t.Errorf("after a restart: %v, want neither op", got)
	}
	if sa, sb := te.stock(a), te.stock(b); sa.OnHand != 9 || sb.OnHand != 10 {
		t.Errorf("after a restart: on hand %d and %d, want 9 and 10", sa.OnHand, sb.OnHand)
	}
}

// TestTxRandomCrashes runs random atomic batches over three shards while
// each shard's journal fails at a random write (the block on disk or not),
// then restarts and checks that every batch is wholly in the ledger or
// wholly out, that every batch answered success is in, and that every batch
// answered with a refusal is out.
func TestTxRandomCrashes(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			const shards = 3
			te := startEngine(t, shards)
			var products []string
			for s := range shards {
				products = append(products, productsOn(shards, s, 2)...)
			}
			for _, p := range products {
				te.write(add(p, 5))
			}
			for _, j := range te.js {
				j.Fail(shardtest.Fault{After: rng.IntN(30), Err: errInjected, Written: rng.IntN(2) == 0})
			}
			type batch struct {
				keys []string
				err  *Error
			}
			var mu sync.Mutex
			var batches []batch
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(seed, uint64(w)+2))
					for i := range 15 {
						var ops []Op
						for range 2 + r.IntN(3) {
							p := products[r.IntN(len(products))]
							switch r.IntN(3) {
							case 0:
								ops = append(ops, add(p, 1+r.Int64N(3)))
							case 1:
								ops = append(ops, remove(p, 1+r.Int64N(3)))
							default:
								ops = append(ops, reserve(p, fmt.Sprintf("w%d-%d-%d", w, i, len(ops)), 1+r.Int64N(2)))
							}
						}
						_, err := te.Batch(context.Background(), ops, true)
						b := batch{err: err}
						for _, op := range ops {
							b.keys = append(b.keys, op.IdempotencyKey)
						}
						mu.Lock()
						batches = append(batches, b)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			te.restart()
			var keys []string
			for _, b := range batches {
				keys = append(keys, b.keys...)
			}
			in := keysIn(t, te.Engine, products, keys)
			applied := 0
			for _, b := range batches {
				n := 0
				for _, k := range b.keys {
					if in[k] {
						n++
					}
				}
				switch {
				case n != 0 && n != len(b.keys):
					t.Errorf("batch %v half applied: %d of %d ops (answer: %v)", b.keys, n, len(b.keys), b.err)
				case b.err == nil && n == 0:
					t.Errorf("batch %v answered success but is not in the ledger", b.keys)
				case b.err != nil && b.err.Code != CodeUnavailable && n != 0:
					t.Errorf("batch %v refused (%v) but is in the ledger", b.keys, b.err)
				}
				if n > 0 {
					applied++
				}
			}
			if applied == 0 {
				t.Log("no batch applied before the faults")
			}
		})
	}
}

// TestTxRepeatedOp sends an atomic batch that repeats an op (same product,
// key and body) across shards, and one that goes through evaluation only
// (an invalid op after it): the repeat replays the first op's entries, and
// nothing panics. It used to crash the shard: the replay pointed at a
// version that only the batch's dry run had.
func TestTxRepeatedOp(t *testing.T) {
	te := startEngine(t, 2)
	ctx := context.Background()
	a, b := productsOn(2, 0, 1)[0], productsOn(2, 1, 1)[0]
	te.write(add(a, 10))
	te.write(add(b, 10))
	op := remove(a, 1)
	res, err := te.Batch(ctx, []Op{op, op, remove(b, 1)}, true)
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	if res[0].Replayed || !res[1].Replayed || res[1].Entries[0].ID != res[0].Entries[0].ID {
		t.Errorf("the repeat: %+v, want a replay of %+v", res[1], res[0])
	}
	if st := te.stock(a); st.OnHand != 9 || st.Version != 2 {
		t.Errorf("stock of %s: %+v, want one REMOVE", a, st)
	}
	fresh := add("fresh", 1)
	bad := add("x", 1)
	bad.Quantity = 0
	if _, err := te.Batch(ctx, []Op{fresh, fresh, bad}, true); err == nil || err.Code != CodeInvalidRequest || err.OpIndex != 2 {
		t.Errorf("batch with an invalid op after a repeat: %v", err)
	}
	// The process is still up, and the engine serves.
	te.write(add(b, 1))
}
