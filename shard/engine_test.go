package shard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// fakeClock is a settable clock for engines under test.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t0)
	return c
}
func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// mustOpen opens an engine, waits for its replay and closes it after the test.
func mustOpen(t *testing.T, cfg Config, open OpenJournal) *Engine {
	t.Helper()
	e, err := Open(cfg, open)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	if err := e.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// errInjected is the journal fault the tests inject.
var errInjected = errors.New("injected journal fault")

// testEngine is an engine on in-memory journals, kept across restarts.
type testEngine struct {
	*Engine
	t     *testing.T
	js    []*shardtest.Journal
	clock *fakeClock
	cfg   Config
}

func startEngine(t *testing.T, shards int) *testEngine {
	t.Helper()
	te := &testEngine{t: t, js: shardtest.Journals(shards), clock: newFakeClock()}
	te.cfg = Config{Shards: shards, Clock: te.clock.now}
	te.open()
	return te
}

func (te *testEngine) open() {
	te.t.Helper()
	te.Engine = mustOpen(te.t, te.cfg, shardtest.Opener[Journal](te.js))
}

// restart closes the engine and opens a new one on the same journals.
func (te *testEngine) restart() {
	te.t.Helper()
	if err := te.Close(context.Background()); err != nil {
		te.t.Fatal(err)
	}
	te.open()
}

func (te *testEngine) write(op Op) Result {
	te.t.Helper()
	res, err := te.Write(context.Background(), op)
	if err != nil {
		te.t.Fatalf("%s %s: %v", op.Type, op.ProductID, err)
	}
	return res
}

func (te *testEngine) stock(p string) Stock {
	te.t.Helper()
	s, err := te.Stock(context.Background(), p)
	if err != nil {
		te.t.Fatalf("stock %s: %v", p, err)
	}
	return s
}

func TestEngineWriteAndRead(t *testing.T) {
	te := startEngine(t, 4)
	ctx := context.Background()
	res := te.write(add("sku", 10))
	if len(res.Entries) != 1 || res.Entries[0].Version != 1 || res.Stock.OnHand != 10 || res.Replayed {
		t.Fatalf("add: %+v", res)
	}
	o := reserve("sku", "order-1", 3)
	res = te.write(o)
	if res.Stock.Reserved != 3 || res.Stock.Available() != 7 || res.Stock.Version != 2 {
		t.Fatalf("reserve: stock %+v", res.Stock)
	}
	te.write(add("sku", 1))
	// The retry gets the original entries and the stock as it was then.
	again := te.write(o)
	if !again.Replayed || again.Entries[0].ID != res.Entries[0].ID || again.Stock != res.Stock {
		t.Errorf("replay: got %+v, want the original %+v", again, res)
	}
	c := commit("sku", "order-1", 1)
	res = te.write(c)
	if len(res.Entries) != 2 || res.Entries[1].Type != TypeRelease || res.Stock.OnHand != 10 || res.Stock.Reserved != 0 {
		t.Fatalf("partial commit: %+v", res)
	}
	again = te.write(c)
	if !again.Replayed || len(again.Entries) != 2 || again.Entries[1].ID != res.Entries[1].ID || again.Stock != res.Stock {
		t.Errorf("partial commit replay: got %+v, want %+v", again, res)
	}
	if _, err := te.Write(ctx, func() Op { x := c; x.Quantity = 2; return x }()); err == nil || err.Code != CodeIdempotencyKeyReused {
		t.Errorf("key reused: got %v", err)
	}

	st := te.stock("sku")
	if st.OnHand != 10 || st.Reserved != 0 || st.Version != 5 || st.UpdatedAt != t0 {
		t.Errorf("stock: %+v", st)
	}
	if _, err := te.Stock(ctx, "nothing"); err == nil || err.Code != CodeNotFound {
		t.Errorf("stock of an unknown product: %v", err)
	}

	page, err := te.History(ctx, "sku", 0, 2)
	if err != nil || len(page.Entries) != 2 || page.Next != 2 || page.Entries[1].Type != TypeReserve {
		t.Fatalf("history page 1: %+v %v", page, err)
	}
	page, err = te.History(ctx, "sku", 2, 100)
	if err != nil || len(page.Entries) != 3 || page.Next != 0 || page.Entries[2].Version != 5 {
		t.Fatalf("history page 2: %+v %v", page, err)
	}
	if page.Entries[1].ID != res.Entries[0].ID || page.Entries[1].IdempotencyKey != c.IdempotencyKey {
		t.Errorf("history entry differs from the write's: %+v", page.Entries[1])
	}
	if page, err := te.History(ctx, "sku", 5, 10); err != nil || len(page.Entries) != 0 || page.Next != 0 {
		t.Errorf("history past the end: %+v %v", page, err)
	}
	for _, bad := range [][2]int64{{-1, 10}, {0, 0}, {0, 1001}} {
		if _, err := te.History(ctx, "sku", bad[0], int(bad[1])); err == nil || err.Code != CodeInvalidRequest {
			t.Errorf("history after=%d limit=%d: %v", bad[0], bad[1], err)
		}
	}
	if _, err := te.History(ctx, "nothing", 0, 10); err == nil || err.Code != CodeNotFound {
		t.Errorf("history of an unknown product: %v", err)
	}

	r, err := te.Reservation(ctx, "sku", "order-1")
	if err != nil || r.State != StateCommitted || r.Quantity != 3 || r.SettledAt != t0 || r.ExpiresAt != t0+TTLSecondsDefault*1e9 {
		t.Errorf("reservation: %+v %v", r, err)
	}
	if _, err := te.Reservation(ctx, "sku", "nope"); err == nil || err.Code != CodeNotFound {
		t.Errorf("unknown reservation: %v", err)
	}
}

func TestEngineRestartKeepsEverything(t *testing.T) {
	te := startEngine(t, 3)
	ctx := context.Background()
	var keep []Result
	var ops []Op
	for i := 0; i < 30; i++ {
		p := fmt.Sprintf("p%d", i%7)
		te.write(add(p, 5))
		o := reserve(p, fmt.Sprintf("r%d", i), 2)
		o.TTLSeconds = int64(10 + i)
		ops = append(ops, o)
		keep = append(keep, te.write(o))
	}
	before := map[string]Stock{}
	for i := 0; i < 7; i++ {
		p := fmt.Sprintf("p%d", i)
		before[p] = te.stock(p)
	}
	te.restart()
	for p, s := range before {
		if got := te.stock(p); got != s {
			t.Errorf("%s after restart: %+v, want %+v", p, got, s)
		}
	}
	for i, o := range ops {
		res := te.write(o)
		if !res.Replayed || res.Entries[0].ID != keep[i].Entries[0].ID {
			t.Errorf("op %d after restart: not replayed (%+v)", i, res)
		}
	}
	// Holds whose TTL passed while down expire right after start.
	te.Close(ctx)
	te.clock.advance(25 * time.Second)
	te.open()
	deadline := time.Now().Add(5 * time.Second)
	for {
		expired := 0
		for i := range ops {
			r, err := te.Reservation(ctx, ops[i].ProductID, ops[i].ReservationID)
			if err != nil {
				t.Fatal(err)
			}
			if r.State == StateExpired {
				expired++
			}
		}
		if expired == 16 { // ttl 10..25s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d holds expired after restart, want 16", expired)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEngineExpiry(t *testing.T) {
	te := startEngine(t, 2)
	ctx := context.Background()
	te.write(add("p", 5))
	o := reserve("p", "r", 2)
	o.TTLSeconds = 30
	te.write(o)
	te.clock.advance(30 * time.Second)
	// Every batch expires due holds before anything else, so the next read sees it.
	st := te.stock("p")
	if st.Reserved != 0 || st.Version != 3 {
		t.Fatalf("stock after the deadline: %+v", st)
	}
	r, err := te.Reservation(ctx, "p", "r")
	if err != nil || r.State != StateExpired || r.SettledAt != t0+30e9 {
		t.Errorf("reservation: %+v %v", r, err)
	}
	if _, err := te.Write(ctx, commit("p", "r", 0)); err == nil || err.Code != CodeReservationNotActive || err.State != StateExpired {
		t.Errorf("commit after expiry: %v", err)
	}
}

func TestFlashSaleExactlyN(t *testing.T) {
	const units, buyers = 500, 64
	te := startEngine(t, 4)
	te.write(add("hot", units))
	var won atomic.Int64
	var wg sync.WaitGroup
	for b := 0; b < buyers; b++ {
		wg.Go(func() {
			for i := 0; ; i++ {
				_, err := te.Write(context.Background(), reserve("hot", fmt.Sprintf("b%d-%d", b, i), 1))
				if err != nil {
					if err.Code != CodeInsufficientStock {
						t.Errorf("buyer %d: %v", b, err)
					}
					return
				}
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if got := won.Load(); got != units {
		t.Errorf("%d reservations succeeded, want exactly %d", got, units)
	}
	if st := te.stock("hot"); st.Reserved != units || st.Available() != 0 || st.Version != units+1 {
		t.Errorf("stock: %+v", st)
	}
}

func TestAtomicBatch(t *testing.T) {
	te := startEngine(t, 4)
	ctx := context.Background()
	// Find products on different shards.
	var prods []string
	seen := map[int]bool{}
	for i := 0; len(prods) < 3; i++ {
		p := fmt.Sprintf("item-%d", i)
		if s := Route(p, 4); !seen[s] {
			seen[s] = true
			prods = append(prods, p)
		}
	}
	a, b, c := prods[0], prods[1], prods[2]
	te.write(add(a, 5))
	te.write(add(b, 5))

	// Later ops see earlier ones, on the same product too.
	ops := []Op{add(c, 2), reserve(c, "cart-1", 2), reserve(a, "cart-1", 1), reserve(b, "cart-1", 1)}
	res, err := te.Batch(ctx, ops, true)
	if err != nil {
		t.Fatalf("atomic batch: %v", err)
	}
	if len(res) != 4 || res[1].Stock.Reserved != 2 || res[1].Stock.Version != 2 {
		t.Fatalf("results: %+v", res)
	}

	// One failing op: nothing applies, the error names the first failure.
	before := []Stock{te.stock(a), te.stock(b), te.stock(c)}
	ops = []Op{reserve(a, "cart-2", 1), reserve(b, "cart-2", 9), reserve(c, "cart-2", 99)}
	_, err = te.Batch(ctx, ops, true)
	if err == nil || err.Code != CodeInsufficientStock || err.OpIndex != 1 || err.Available != 4 {
		t.Fatalf("failing atomic batch: got %+v", err)
	}
	after := []Stock{te.stock(a), te.stock(b), te.stock(c)}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("a refused atomic batch changed stock:\n%v\n%v", before, after)
	}
	// A later invalid op fails the batch after an earlier failure is found.
	bad := reserve(a, "cart-3", 1)
	bad.Quantity = 0
	_, err = te.Batch(ctx, []Op{reserve(b, "cart-3", 99), bad}, true)
	if err == nil || err.Code != CodeInsufficientStock || err.OpIndex != 0 {
		t.Errorf("earlier failure before an invalid op: %+v", err)
	}
	_, err = te.Batch(ctx, []Op{reserve(b, "cart-3", 1), bad}, true)
	if err == nil || err.Code != CodeInvalidRequest || err.OpIndex != 1 {
		t.Errorf("invalid op: %+v", err)
	}
	if st := te.stock(b); st != after[1] {
		t.Errorf("an invalid atomic batch changed stock: %+v", st)
	}

	// Retrying the whole batch replays it.
	res2, err := te.Batch(ctx, []Op{ops[0]}, true)
	if err != nil || res2[0].Replayed {
		t.Fatalf("single op batch: %+v %v", res2, err)
	}
	res3, err := te.Batch(ctx, []Op{ops[0]}, true)
	if err != nil || !res3[0].Replayed || res3[0].Entries[0].ID != res2[0].Entries[0].ID {
		t.Errorf("retry: %+v %v", res3, err)
	}
}

// TestAtomicBatchOnOneShard checks an atomic batch within one shard, whose
// entries are decided on a fork and then applied to the live state: an op
// repeating an earlier op's key in the same batch answers that op's
// entries, a partial COMMIT brings its RELEASE, a retry replays every op
// with the same entries, and a restart rebuilds the same stock.
func TestAtomicBatchOnOneShard(t *testing.T) {
	te := startEngine(t, 1)
	ctx := context.Background()
	twice := add("p", 5)
	partial := commit("p", "r1", 1)
	ops := []Op{twice, twice, reserve("p", "r1", 3), partial, add("q", 1)}
	res, err := te.Batch(ctx, ops, true)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Replayed || !res[1].Replayed || res[1].Entries[0].ID != res[0].Entries[0].ID || res[1].Stock != res[0].Stock {
		t.Errorf("a key repeated in the batch: %+v then %+v", res[0], res[1])
	}
	if es := res[3].Entries; len(es) != 2 || es[1].Type != TypeRelease || es[1].Quantity != 2 || res[3].Stock.Version != 4 {
		t.Errorf("partial commit: %+v", res[3])
	}
	want := Stock{OnHand: 4, Version: 4}
	if st := te.stock("p"); st.OnHand != want.OnHand || st.Reserved != 0 || st.Version != want.Version {
		t.Errorf("stock %+v, want %+v", st, want)
	}
	again, err := te.Batch(ctx, ops, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		if !again[i].Replayed || fmt.Sprint(again[i].Entries) != fmt.Sprint(res[i].Entries) || again[i].Stock != res[i].Stock {
			t.Errorf("retry of op %d:\ngot  %+v\nwant %+v", i, again[i], res[i])
		}
	}
	before := []Stock{te.stock("p"), te.stock("q")}
	te.restart()
	if after := []Stock{te.stock("p"), te.stock("q")}; fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("after a restart %v, before %v", after, before)
	}
}

func TestLooseBatch(t *testing.T) {
	te := startEngine(t, 4)
	bad := add("p", 1)
	bad.Quantity = 0
	ops := []Op{add("p", 3), remove("p", 5), bad, remove("p", 2), add("q", 1)}
	res, err := te.Batch(context.Background(), ops, false)
	if err != nil {
		t.Fatal(err)
	}
	codes := make([]Code, len(res))
	for i, r := range res {
		if r.Err != nil {
			codes[i] = r.Err.Code
			if r.Err.OpIndex != i {
				t.Errorf("op %d: op_index %d", i, r.Err.OpIndex)
			}
		}
	}
	want := []Code{"", CodeInsufficientStock, CodeInvalidRequest, "", ""}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("codes %v, want %v", codes, want)
	}
	if res[3].Stock.OnHand != 1 {
		t.Errorf("ops do not see earlier ones: %+v", res[3].Stock)
	}
	if _, err := te.Batch(context.Background(), nil, false); err == nil || err.Code != CodeInvalidRequest {
		t.Errorf("empty batch: %v", err)
	}
	if _, err := te.Batch(context.Background(), make([]Op, BatchRequestOpsMax+1), true); err == nil || err.Code != CodeInvalidRequest {
		t.Errorf("oversized batch: %v", err)
	}
}

// TestAtomicBatchesConcurrently runs carts across shards against single
// reservations on the same hot products: no deadlock, nothing oversold, and
// every cart applies whole or not at all.
func TestAtomicBatchesConcurrently(t *testing.T) {
	te := startEngine(t, 4)
	ctx := context.Background()
	const products, units = 6, 40
	for i := 0; i < products; i++ {
		te.write(add(fmt.Sprintf("p%d", i), units))
	}
	var wg sync.WaitGroup
	var carts, singles atomic.Int64
	for w := 0; w < 16; w++ {
		wg.Go(func() {
			for i := 0; i < 60; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				if w%2 == 0 {
					ops := []Op{
						reserve(fmt.Sprintf("p%d", (w+i)%products), id, 1),
						reserve(fmt.Sprintf("p%d", (w+i+1)%products), id, 1),
						reserve(fmt.Sprintf("p%d", (w+i+3)%products), id, 1),
					}
					if _, err := te.Batch(ctx, ops, true); err == nil {
						carts.Add(1)
					} else if err.Code != CodeInsufficientStock {
						t.Errorf("cart: %v", err)
					}
				} else if _, err := te.Write(ctx, reserve(fmt.Sprintf("p%d", i%products), id, 1)); err == nil {
					singles.Add(1)
				} else if err.Code != CodeInsufficientStock {
					t.Errorf("single: %v", err)
				}
			}
		})
	}
	wg.Wait()
	var reserved int64
	for i := 0; i < products; i++ {
		st := te.stock(fmt.Sprintf("p%d", i))
		if st.Available() < 0 {
			t.Errorf("p%d oversold: %+v", i, st)
		}
		reserved += st.Reserved
	}
	if want := 3*carts.Load() + singles.Load(); reserved != want {
		t.Errorf("reserved %d in all, want %d (3 per cart + singles): a cart applied in part", reserved, want)
	}
}

func TestJournalFailure(t *testing.T) {
	te := startEngine(t, 2)
	ctx := context.Background()
	onBad, onGood := productsOn(2, 0, 1)[0], productsOn(2, 1, 1)[0]
	acked := te.write(add(onBad, 5))
	te.js[0].Fail(shardtest.Fault{Err: errInjected})
	if _, err := te.Write(ctx, add(onBad, 1)); err == nil || err.Code != CodeUnavailable {
		t.Fatalf("write on a failed journal: %v", err)
	}
	// The shard stays down, for reads too: its memory is ahead of its disk.
	if _, err := te.Stock(ctx, onBad); err == nil || err.Code != CodeUnavailable {
		t.Errorf("read on a failed shard: %v", err)
	}
	// Other shards keep working.
	te.write(add(onGood, 1))

	te.restart() // a restart forgets the failure and replays what was written
	if st := te.stock(onBad); st.OnHand != acked.Stock.OnHand || st.Version != 1 {
		t.Errorf("after restart: %+v, want only the acknowledged entry", st)
	}
}

func TestOverloaded(t *testing.T) {
	js := shardtest.Journals(1)
	e := mustOpen(t, Config{Shards: 1, InboxDepth: 2}, shardtest.Opener[Journal](js))
	started, release := js[0].Hold()
	defer release()
	ctx := context.Background()
	// The writer blocks in its first Write; the actor keeps deciding into
	// the next flight until it is full, then the inbox fills and the next
	// request is refused at once.
	const n = 5000
	results := make(chan *Error, n)
	go func() { _, err := e.Write(ctx, add("p", 1)); results <- err }()
	<-started
	var got []*Error
	sent := 1
	for ; sent < n; sent++ {
		go func() { _, err := e.Write(ctx, add("p", 1)); results <- err }()
		if sent%64 == 0 {
			time.Sleep(5 * time.Millisecond) // let the actor take what it can
		}
		select {
		case err := <-results:
			got = append(got, err)
		default:
		}
		if len(got) > 0 {
			break
		}
	}
	if len(got) == 0 || got[0] == nil || got[0].Code != CodeOverloaded {
		t.Fatalf("with the writer stuck: got %v, want overloaded", got)
	}
	release()
	for len(got) < sent+1 {
		got = append(got, <-results)
	}
	ok := 0
	for _, err := range got {
		switch {
		case err == nil:
			ok++
		case err.Code != CodeOverloaded:
			t.Errorf("queued write: %v", err)
		}
	}
	if st, _ := e.Stock(ctx, "p"); st.OnHand != int64(ok) {
		t.Errorf("on hand %d after %d acknowledged ADDs of 1", st.OnHand, ok)
	}
	e.Close(ctx)
}

func TestNotReadyWhileReplaying(t *testing.T) {
	release := make(chan struct{})
	e, err := Open(Config{Shards: 1}, func(int, func(uint64, []byte) error) (Journal, error) {
		<-release
		return &shardtest.Journal{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Ready() {
		t.Error("ready before the replay ended")
	}
	if _, err := e.Write(context.Background(), add("p", 1)); err == nil || err.Code != CodeUnavailable {
		t.Errorf("write while replaying: %v", err)
	}
	close(release)
	if err := e.Wait(context.Background()); err != nil || !e.Ready() {
		t.Errorf("after replay: ready %v err %v", e.Ready(), err)
	}
	e.Close(context.Background())

	broken := errors.New("corrupt")
	e, _ = Open(Config{Shards: 2}, func(i int, _ func(uint64, []byte) error) (Journal, error) {
		if i == 1 {
			return nil, broken
		}
		return &shardtest.Journal{}, nil
	})
	if err := e.Wait(context.Background()); !errors.Is(err, broken) || e.Ready() {
		t.Errorf("failed replay: ready %v err %v", e.Ready(), err)
	}
}

func TestConfigValidate(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, c := range map[string]Config{
		"no shards left":        {Shards: ShardsMax + 1},
		"batch below a request": {BatchOpsMax: BatchRequestOpsMax - 1},
		"block too small":       {BlockBytesMax: 1 << 20},
		"retention too short":   {Retention: time.Millisecond},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestReplaySkipsKeysOutOfRetention restarts after the retention window has
// passed: the old keys are gone (the same request applies again), while a
// key inside the window still replays.
func TestReplaySkipsKeysOutOfRetention(t *testing.T) {
	te := startEngine(t, 2)
	te.cfg.Retention = time.Hour
	te.restart()
	old := add("p", 1)
	te.write(old)
	te.clock.advance(2 * time.Hour)
	recent := add("p", 2)
	te.write(recent)
	te.restart()
	if res := te.write(recent); !res.Replayed {
		t.Errorf("key inside the window: not replayed")
	}
	if res := te.write(old); res.Replayed || res.Stock.OnHand != 4 {
		t.Errorf("key outside the window: %+v, want a new ADD", res)
	}
}

// TestInFlightDuplicates sends the same request twice at once, many times:
// exactly one applies and both answers carry the same entry.
func TestInFlightDuplicates(t *testing.T) {
	te := startEngine(t, 2)
	te.write(add("p", 1000))
	for i := 0; i < 200; i++ {
		op := reserve("p", fmt.Sprintf("r%d", i), 1)
		var wg sync.WaitGroup
		var res [2]Result
		for j := range res {
			wg.Go(func() {
				var err *Error
				res[j], err = te.Write(context.Background(), op)
				if err != nil {
					t.Errorf("duplicate %d: %v", j, err)
				}
			})
		}
		wg.Wait()
		if res[0].Replayed == res[1].Replayed || res[0].Entries[0].ID != res[1].Entries[0].ID || res[0].Stock != res[1].Stock {
			t.Fatalf("round %d: answers differ: %+v / %+v", i, res[0], res[1])
		}
	}
	if st := te.stock("p"); st.Reserved != 200 || st.Version != 201 {
		t.Errorf("stock %+v, want 200 holds in 201 entries", st)
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	te := &testEngine{t: t, js: shardtest.Journals(2), clock: newFakeClock()}
	te.cfg = Config{Shards: 2, Clock: te.clock.now, Registerer: reg}
	te.open()
	te.write(add("p", 5))
	o := reserve("p", "r", 1)
	o.TTLSeconds = 1
	te.write(o)
	te.write(o)
	te.Write(context.Background(), remove("p", 99))
	te.clock.advance(2 * time.Second)
	te.stock("p")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			got[mf.GetName()] += v
		}
	}
	for name, min := range map[string]float64{
		"inventory_transactions_total": 3, "inventory_idempotent_replays_total": 1,
		"inventory_wal_fsync_duration_seconds": 1, "inventory_wal_batch_entries": 1, "inventory_shard_queue_depth": 0,
		"inventory_reservations_active": 0, "inventory_reservations_expired_total": 1, "inventory_replay_duration_seconds": 0,
	} {
		v, ok := got[name]
		if !ok || v < min {
			t.Errorf("%s: %v (present %v), want at least %v", name, v, ok, min)
		}
	}
}

// TestNotReadyUntilStarted: once every shard has replayed, and before the
// engine has started them and takes requests, Readiness still says not
// ready: a /readyz of 200 must mean that a write is taken.
func TestNotReadyUntilStarted(t *testing.T) {
	e := &Engine{loaded: make([]atomic.Bool, 2), replayed: make(chan struct{})}
	for i := range e.loaded {
		e.loaded[i].Store(true)
	}
	if err := e.enter(); err == nil {
		t.Fatal("a request admitted before the engine is ready")
	}
	err := e.Readiness()
	if err == nil || len(err.Shards) != 2 || !strings.Contains(err.Detail, "starting") {
		t.Fatalf("Readiness with every shard replayed but not started: %v, want not ready", err)
	}
}
