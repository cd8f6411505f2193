package shard

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// randomOp returns an op over a small world (3 products, 6 reservation ids,
// quantities 1-5, reused keys) so that every rule and refusal comes up.
func randomOp(r *rand.Rand, m *machine) Op {
	p := fmt.Sprintf("p%d", r.IntN(3))
	rid := fmt.Sprintf("r%d", r.IntN(6))
	q := int64(1 + r.IntN(5))
	var op Op
	switch n := r.IntN(10); {
	case n < 2:
		op = add(p, q)
	case n < 3:
		op = remove(p, q)
		if r.IntN(2) == 0 {
			op.Type = TypeReturn
		}
	case n < 6:
		op = reserve(p, rid, q)
		op.TTLSeconds = int64(1 + r.IntN(20))
	case n < 8:
		op = commit(p, rid, int64(r.IntN(4)))
	default:
		op = release(p, rid)
	}
	if r.IntN(8) == 0 {
		op.IdempotencyKey = fmt.Sprintf("reused-%d", r.IntN(4)) // replays and 422s
	}
	if r.IntN(6) == 0 {
		op.ExpectedVersion = int64(r.IntN(6))
	}
	if r.IntN(4) == 0 {
		op.Reason = "why"
	}
	return op
}

// runRandom applies n random ops with time passing and holds expiring.
func runRandom(t *testing.T, seed uint64, n int) *machine {
	r := rand.New(rand.NewPCG(seed, 1))
	m := newMachine(t)
	for i := 0; i < n; i++ {
		m.now += int64(r.IntN(3)) * 1e9
		m.expire()
		_, out, err := m.do(randomOp(r, m))
		switch {
		case err != nil:
			m.seen[string(err.Code)]++
		case out.replayOf != 0:
			m.seen["replay"]++
		}
		checkInvariants(t, m.s, m.log)
		if t.Failed() {
			t.Fatalf("seed %d step %d", seed, i)
		}
	}
	return m
}

// checkInvariants checks DESIGN.md's invariants 1, 2, 5 and 6 of state s
// against its full ledger log.
func checkInvariants(t *testing.T, s *State, log []Entry) {
	t.Helper()
	type sums struct{ onHand, reserved, avail, version int64 }
	got := map[string]*sums{}
	keys := map[[2]string]int{}
	settled := map[[2]string]int{}
	held := map[string]int64{}
	for i := range log {
		e := &log[i]
		p := got[e.ProductID]
		if p == nil {
			p = &sums{}
			got[e.ProductID] = p
		}
		var dOn, dRes int64
		switch e.Type {
		case TypeAdd, TypeReturn:
			dOn = e.Quantity
		case TypeRemove:
			dOn = -e.Quantity
		case TypeReserve:
			dRes = e.Quantity
		case TypeCommit:
			dOn, dRes = -e.Quantity, -e.Quantity
		case TypeRelease:
			dRes = -e.Quantity
		}
		p.onHand += dOn
		p.reserved += dRes
		p.avail += e.Delta
		p.version++
		if e.OnHand != p.onHand || e.Reserved != p.reserved || e.Available() != p.avail {
			t.Errorf("entry %d (%s v%d): balances %d/%d/%d, sums %d/%d/%d", i, e.ProductID, e.Version,
				e.OnHand, e.Reserved, e.Available(), p.onHand, p.reserved, p.avail)
		}
		if e.Available() < 0 || e.Reserved < 0 {
			t.Errorf("entry %d: negative balance", i)
		}
		if e.Version != p.version {
			t.Errorf("entry %d: version %d, want %d (invariant 2)", i, e.Version, p.version)
		}
		if e.IdempotencyKey != "" {
			k := [2]string{e.ProductID, e.IdempotencyKey}
			if keys[k]++; keys[k] > 1 {
				t.Errorf("key %q applied twice on %s (invariant 5)", e.IdempotencyKey, e.ProductID)
			}
		}
		rk := [2]string{e.ProductID, e.ReservationID}
		switch {
		case e.Type == TypeReserve:
			held[e.ProductID] += e.Quantity
		case e.Type == TypeCommit || (e.Type == TypeRelease && e.Origin != OriginContinuation):
			if settled[rk]++; settled[rk] > 1 {
				t.Errorf("reservation %v settled twice (invariant 6)", rk)
			}
		}
	}
	for id, sum := range got {
		st, ok := s.Stock(id)
		if !ok || st.OnHand != sum.onHand || st.Reserved != sum.reserved || st.Version != sum.version {
			t.Errorf("product %s: state %+v, sums over entries %+v (invariant 1)", id, st, *sum)
		}
	}
	if len(got) != s.Products() {
		t.Errorf("state has %d products, the log %d", s.Products(), len(got))
	}
	// Reserved equals what the active holds hold.
	active := map[string]int64{}
	for _, slot := range s.heap {
		h := s.holds.at(slot)
		active[h.productID] += h.qty
	}
	for id := range got {
		if st, _ := s.Stock(id); st.Reserved != active[id] {
			t.Errorf("product %s: reserved %d, active holds %d", id, st.Reserved, active[id])
		}
	}
}

// replayLog rebuilds a state from the encoded entries, as start-up does.
func replayLog(t *testing.T, live *State, log []Entry) *State {
	t.Helper()
	s, err := replayEntries(live, log)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// replayEntries is replayLog returning the replay's error.
func replayEntries(live *State, log []Entry) (*State, error) {
	s := newState(live.shard, live.retention, live.seeds)
	s.beginReplay(0)
	d := newDecoder()
	enc := newEncoder()
	var e Entry
	// Like the journal, decode every record from one buffer, and wipe it
	// after apply: the state must keep nothing that points into a record.
	buf := make([]byte, 0, 4096)
	for i := range log {
		buf = append(buf[:0], enc.encode(&log[i])...)
		if err := d.decode(buf, &e, true); err != nil {
			return nil, fmt.Errorf("decode entry %d: %w", i, err)
		}
		if err := s.apply(&e, uint64(i+1)); err != nil {
			return nil, fmt.Errorf("replay entry %d: %w", i, err)
		}
		clear(buf)
	}
	return s, s.endReplay()
}

// applyLog applies log to s as live processing does and returns the first
// error.
func applyLog(s *State, log []Entry) error {
	for i := range log {
		if err := s.apply(&log[i], 0); err != nil {
			return err
		}
	}
	return nil
}

// contents returns what t holds: two tables with the same contents may
// differ in layout (a replay loads the idempotency index in bulk).
func contents[V any](t *table[V]) map[hkey]V {
	m := make(map[hkey]V, t.len())
	t.each(func(k hkey, v V) { m[k] = v })
	return m
}

// sameState reports how two states differ, or "".
func sameState(a, b *State) string {
	if len(a.products) != len(b.products) {
		return fmt.Sprintf("%d products vs %d", len(a.products), len(b.products))
	}
	for id, p := range a.products {
		q := b.products[id]
		if q == nil || p.onHand != q.onHand || p.reserved != q.reserved || p.version != q.version || p.updatedAt != q.updatedAt {
			return fmt.Sprintf("product %s: %+v vs %+v", id, p, q)
		}
	}
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"reservations", contents(&a.resv), contents(&b.resv)}, {"holds", a.holds, b.holds}, {"free slots", a.free, b.free},
		{"expiry heap", a.heap, b.heap}, {"idempotency keys", contents(&a.idem), contents(&b.idem)},
		{"key ages", a.ages.all(), b.ages.all()},
		{"counters", [2]any{a.entries, a.lastAt}, [2]any{b.entries, b.lastAt}},
	} {
		if !reflect.DeepEqual(f.a, f.b) {
			return f.name + " differ"
		}
	}
	return ""
}

func TestReplayEquivalence(t *testing.T) {
	seen := map[string]int{}
	for seed := uint64(1); seed <= 60; seed++ {
		m := runRandom(t, seed, 400)
		for k, n := range m.seen {
			seen[k] += n
		}
		for _, e := range m.log {
			seen[fmt.Sprintf("%s/%d", e.Type, e.Origin)]++
		}
		replayed := replayLog(t, m.s, m.log)
		if diff := sameState(m.s, replayed); diff != "" {
			t.Fatalf("seed %d: live and replayed state differ: %s", seed, diff)
		}
		checkInvariants(t, replayed, m.log)
	}
	// The random world must reach every rule, or the test proves little.
	for _, k := range []string{"ADD/0", "REMOVE/0", "RETURN/0", "RESERVE/0", "COMMIT/0", "RELEASE/0",
		"RELEASE/1", "RELEASE/2", "replay", "insufficient_stock", "reservation_exists",
		"reservation_not_active", "commit_exceeds_hold", "version_conflict", "idempotency_key_reused"} {
		if seen[k] == 0 {
			t.Errorf("random ops never produced %s", k)
		}
	}
}

// TestReplayRejectsReservationReservedTwice: a reservation id reserved again
// after it was settled breaks the log (live, decide refuses it). The replay
// keeps only active reservations in its index and finds the second RESERVE
// at its end; a live apply finds it at once.
func TestReplayRejectsReservationReservedTwice(t *testing.T) {
	s := NewState(0, int64(RetentionDefault))
	var log []Entry
	for _, op := range []Op{add("p", 10), reserve("p", "r1", 1), commit("p", "r1", 0), reserve("p", "r2", 1)} {
		if op.Type == TypeReserve {
			op.TTLSeconds = 900
		}
		out, _, err := s.decide(&op, t0, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range out {
			if err := s.apply(&out[i], 0); err != nil {
				t.Fatal(err)
			}
		}
		log = append(log, out...)
	}
	if _, err := replayEntries(s, log); err != nil {
		t.Fatalf("the valid log: %v", err)
	}
	log[3].ReservationID = "r1" // r1 again, after its COMMIT
	if _, err := replayEntries(s, log); err == nil || !strings.Contains(err.Error(), "versions 2 and 4") {
		t.Errorf("replay of a reservation reserved twice: %v", err)
	}
	if applyLog(newState(0, s.retention, s.seeds), log) == nil {
		t.Error("a live apply accepted a reservation reserved twice")
	}
	// The engine refuses to start on it, and closes the journal.
	js := shardtest.Journals(1)
	for i := range log {
		js[0].Append(EncodeEntry(&log[i]))
	}
	e, oerr := Open(Config{Shards: 1}, shardtest.Opener[Journal](js))
	if oerr != nil {
		t.Fatal(oerr)
	}
	defer e.Close(context.Background())
	if err := e.Wait(context.Background()); err == nil || !strings.Contains(err.Error(), "reserved twice") {
		t.Errorf("engine start on a reservation reserved twice: %v", err)
	}
	if !js[0].Closed() {
		t.Error("the journal of the refused replay was left open")
	}
}

func TestReplayRejectsBrokenLogs(t *testing.T) {
	m := runRandom(t, 7, 200)
	cases := map[string]func(log []Entry) []Entry{
		"version gap":   func(l []Entry) []Entry { return append(l[:3:3], l[4:]...) },
		"bad balance":   func(l []Entry) []Entry { l[5].OnHand++; return l },
		"bad delta":     func(l []Entry) []Entry { l[5].Delta = -l[5].Delta - 1; return l },
		"duplicate key": func(l []Entry) []Entry { return append(l[:10:10], l[9:]...) },
	}
	for name, breakLog := range cases {
		t.Run(name, func(t *testing.T) {
			log := breakLog(append([]Entry(nil), m.log...))
			if applyLog(newState(0, m.s.retention, m.s.seeds), log) == nil {
				t.Errorf("apply accepted a broken log")
			}
		})
	}
}

// TestReplayRejectsCommitWithoutItsRelease: a log that ends with a partial
// COMMIT but not the RELEASE of the rest (written in the same block, so
// only a cut inside a block or corruption leaves one) is refused at
// start-up, naming the shard and the COMMIT's locator. It used to be
// accepted, and the shard's first live entry then failed its check and
// panicked the actor, at every start.
func TestReplayRejectsCommitWithoutItsRelease(t *testing.T) {
	p := productsOn(2, 1, 1)[0]
	s := NewState(1, int64(RetentionDefault))
	var log []Entry
	for _, op := range []Op{add(p, 10), reserve(p, "r", 3), commit(p, "r", 1)} {
		if op.Type == TypeReserve {
			op.TTLSeconds = 900
		}
		out, _, err := s.decide(&op, t0, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range out {
			if err := s.apply(&out[i], 0); err != nil {
				t.Fatal(err)
			}
		}
		log = append(log, out...)
	}
	if len(log) != 4 || log[3].Origin != OriginContinuation {
		t.Fatalf("the partial COMMIT wrote %d entries, want the COMMIT and the RELEASE of the rest", len(log)-2)
	}
	if _, err := replayEntries(s, log); err != nil {
		t.Fatalf("the whole log: %v", err)
	}
	cut := log[:3]
	const reason = "ends with a partial COMMIT (version 3 of product"
	if _, err := replayEntries(s, cut); err == nil || !strings.Contains(err.Error(), reason) {
		t.Errorf("replay of a log ending with a partial COMMIT: %v, want %q", err, reason)
	}

	// The engine refuses to start, names the shard and the record, serves
	// nothing and closes the journal.
	js := shardtest.Journals(2)
	for i := range cut {
		js[1].Append(EncodeEntry(&cut[i]))
	}
	e, oerr := Open(Config{Shards: 2}, shardtest.Opener[Journal](js))
	if oerr != nil {
		t.Fatal(oerr)
	}
	defer e.Close(context.Background())
	err := e.Wait(context.Background())
	want := fmt.Sprintf("replay shard 1: record at 0x3: the log %s %q)", reason, p)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("engine start on a log ending with a partial COMMIT: %v, want %q", err, want)
	}
	if _, serr := e.Stock(context.Background(), p); serr == nil || serr.Code != CodeUnavailable {
		t.Errorf("stock after the refused replay: %v, want unavailable", serr)
	}
	if !js[1].Closed() {
		t.Error("the journal of the refused replay was left open")
	}
}
