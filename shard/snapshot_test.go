package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard/shardtest"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// snapshotAt writes a snapshot of s covering the log up to loc into dir,
// and adopts it as the actor does.
func snapshotAt(t *testing.T, s *State, dir string, loc uint64, now int64) {
	t.Helper()
	c := s.capture(loc, now, 1)
	store, _, err := writeSnapshot(dir, c, func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	s.adopt(store, c)
}

// loadAndReplay builds a state as start-up does: the newest valid snapshot
// in dir, then the entries of log after it (entry i has locator i+1).
func loadAndReplay(t *testing.T, dir string, log []Entry) (*State, uint64) {
	t.Helper()
	st := NewState(0, int64(RetentionDefault))
	st.keepFresh = true
	loc, found, skipped, err := LoadSnapshot(dir, 0, 1, st)
	if err != nil || len(skipped) > 0 || !found {
		t.Fatalf("load: found %v, %v %v", found, err, skipped)
	}
	st.beginReplay(0)
	d, enc := newDecoder(), newEncoder()
	var e Entry
	for i := int(loc); i < len(log); i++ {
		if err := d.decode(enc.encode(&log[i]), &e, true); err != nil {
			t.Fatal(err)
		}
		if err := st.apply(&e, uint64(i+1)); err != nil {
			t.Fatalf("replay entry %d after the snapshot at %d: %v", i, loc, err)
		}
	}
	if err := st.endReplay(); err != nil {
		t.Fatal(err)
	}
	if err := st.indexFresh(); err != nil {
		t.Fatal(err)
	}
	return st, loc
}

// sameMeaning reports how two states answer differently, or "": balances,
// versions, locators, active holds, every reservation and idempotency key
// of log, counters. Unlike sameState it does not compare layouts (hash
// seeds, heap order), which a snapshot does not keep.
func sameMeaning(a, b *State, log []Entry) string {
	if len(a.products) != len(b.products) {
		return fmt.Sprintf("%d products vs %d", len(a.products), len(b.products))
	}
	for id, p := range a.products {
		q := b.products[id]
		if q == nil || p.onHand != q.onHand || p.reserved != q.reserved || p.version != q.version ||
			p.updatedAt != q.updatedAt || !slices.Equal(allLocs(a, p), allLocs(b, q)) {
			return fmt.Sprintf("product %s: %+v vs %+v", id, p, q)
		}
	}
	holds := func(s *State) map[[2]string]hold {
		m := map[[2]string]hold{}
		for i := range s.holds.n {
			if h := *s.holds.at(i); h.productID != "" {
				h.heapIdx = 0
				m[[2]string{h.productID, h.id}] = h
			}
		}
		return m
	}
	if ha, hb := holds(a), holds(b); fmt.Sprint(ha) != fmt.Sprint(hb) {
		return fmt.Sprintf("active holds %v vs %v", ha, hb)
	}
	if a.ActiveHolds() != b.ActiveHolds() {
		return fmt.Sprintf("%d active holds vs %d", a.ActiveHolds(), b.ActiveHolds())
	}
	for i := range log {
		e := &log[i]
		if e.ReservationID != "" {
			ra, oka, erra := a.reservation(e.ProductID, e.ReservationID)
			rb, okb, errb := b.reservation(e.ProductID, e.ReservationID)
			if erra != nil || errb != nil {
				return fmt.Sprintf("reservation read: %v %v", erra, errb)
			}
			if oka != okb || ra.meta != rb.meta || (ra.state() != StateActive && ra.settle != rb.settle) {
				return fmt.Sprintf("reservation %s/%s: %v %+v vs %v %+v", e.ProductID, e.ReservationID, oka, ra, okb, rb)
			}
		}
		if e.IdempotencyKey != "" {
			ra, oka := a.idem.get(a.hash(e.ProductID, e.IdempotencyKey))
			rb, okb := b.idem.get(b.hash(e.ProductID, e.IdempotencyKey))
			if oka != okb || ra != rb {
				return fmt.Sprintf("key %s/%s: %v %+v vs %v %+v", e.ProductID, e.IdempotencyKey, oka, ra, okb, rb)
			}
		}
	}
	if a.entries != b.entries || a.ids != b.ids || a.lastAt != b.lastAt {
		return fmt.Sprintf("counters %d/%d/%d vs %d/%d/%d", a.entries, a.ids, a.lastAt, b.entries, b.ids, b.lastAt)
	}
	return ""
}

// TestSnapshotPlusTailEqualsFullReplay: for random logs and random
// snapshot points (one to three per log, each merging the settled
// reservations of the one before), the newest snapshot plus the log after
// it gives the state a full replay gives, and the live state.
func TestSnapshotPlusTailEqualsFullReplay(t *testing.T) {
	defer func(n int) { productsInParallel = n }(productsInParallel)
	for seed := uint64(1); seed <= 40; seed++ {
		// Odd seeds load their products on two goroutines.
		productsInParallel = 1 << 16
		if seed%2 == 1 {
			productsInParallel = 1
		}
		r := rand.New(rand.NewPCG(seed, 7))
		m := newMachine(t)
		m.s.keepFresh = true
		dir := t.TempDir()
		n := 300 + r.IntN(300)
		points := map[int]bool{}
		for range 1 + r.IntN(3) {
			points[r.IntN(n)] = true
		}
		for i := 0; i < n; i++ {
			m.now += int64(r.IntN(3)) * 1e9
			m.expire()
			op := randomOp(r, m)
			// Many reservation ids, so that settled ones pile up.
			op.ReservationID = fmt.Sprintf("%s-%d", op.ReservationID, r.IntN(40))
			if op.Type != TypeReserve && op.Type != TypeCommit && op.Type != TypeRelease {
				op.ReservationID = ""
			}
			m.do(op)
			if points[i] {
				snapshotAt(t, m.s, dir, uint64(len(m.log)), m.now)
			}
		}
		full := replayLog(t, m.s, m.log)
		loaded, loc := loadAndReplay(t, dir, m.log)
		if diff := sameMeaning(full, loaded, m.log); diff != "" {
			t.Fatalf("seed %d, snapshot at %d of %d entries: full replay and snapshot+tail differ: %s", seed, loc, len(m.log), diff)
		}
		if diff := sameMeaning(m.s, loaded, m.log); diff != "" {
			t.Fatalf("seed %d, snapshot at %d: live and snapshot+tail differ: %s", seed, loc, diff)
		}
		checkInvariants(t, loaded, m.log)
		loaded.store.close()
		m.s.store.close()
	}
}

// TestSettledReservationsLeaveRAM: after a snapshot, settled reservations
// are out of the in-memory index, and still refuse their id and answer
// reads, from the live state and from a reload.
func TestSettledReservationsLeaveRAM(t *testing.T) {
	m := newMachine(t)
	m.s.keepFresh = true
	for i := range 200 {
		p := fmt.Sprintf("p%d", i%5)
		m.must(add(p, 2))
		id := fmt.Sprintf("r%d", i)
		m.must(reserve(p, id, 1))
		if i%2 == 0 {
			m.must(commit(p, id, 0))
		} else {
			m.must(release(p, id))
		}
	}
	m.must(reserve("p0", "active", 1))
	dir := t.TempDir()
	snapshotAt(t, m.s, dir, uint64(len(m.log)), m.now)
	if got := m.s.resv.len(); got != 1 {
		t.Errorf("in-memory reservation index holds %d after the snapshot, want 1 (the active hold)", got)
	}
	if len(m.s.fresh) != 0 {
		t.Errorf("%d settled reservations still listed in RAM", len(m.s.fresh))
	}
	loaded, _ := loadAndReplay(t, dir, m.log)
	for _, s := range []*State{m.s, loaded} {
		for i := range 200 {
			p, id := fmt.Sprintf("p%d", i%5), fmt.Sprintf("r%d", i)
			want := StateCommitted
			if i%2 == 1 {
				want = StateReleased
			}
			r, ok, err := s.reservation(p, id)
			if err != nil || !ok || r.state() != want {
				t.Fatalf("reservation %s/%s: %v %v %v, want %v", p, id, r.state(), ok, err, want)
			}
			op := reserve(p, id, 1)
			if _, _, err := s.decide(&op, m.now, nil); err == nil || err.Code != CodeReservationExists {
				t.Errorf("reused id %s/%s: %v, want %s", p, id, err, CodeReservationExists)
			}
			op = commit(p, id, 0)
			if _, _, err := s.decide(&op, m.now, nil); err == nil || err.Code != CodeReservationNotActive || err.State != want {
				t.Errorf("commit of settled %s/%s: %v, want %s (%v)", p, id, err, CodeReservationNotActive, want)
			}
		}
		if _, ok, _ := s.reservation("p0", "never"); ok {
			t.Error("a reservation never made was found")
		}
	}
	loaded.store.close()
	m.s.store.close()
}

// rewriteSnapshot changes the bytes of the snapshot at path with fn and,
// if fix, recomputes its checksum, so that only the change is wrong.
func rewriteSnapshot(t *testing.T, path string, fix bool, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = fn(b)
	if fix {
		n := len(b) - snapTrailerBytes
		binary.LittleEndian.PutUint32(b[n:], crc32.Checksum(b[:n], crcTable))
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedSnapshotFallsBack damages the newest of two snapshots in every
// way: each is skipped, with a reason, for the older one; with both
// damaged, none is trusted.
func TestDamagedSnapshotFallsBack(t *testing.T) {
	damages := []struct {
		name string
		fix  bool
		fn   func([]byte) []byte
	}{
		{"empty", false, func(b []byte) []byte { return b[:0] }},
		{"torn in the header", false, func(b []byte) []byte { return b[:10] }},
		{"torn in the body", false, func(b []byte) []byte { return b[:len(b)/2] }},
		{"torn before the end marker", false, func(b []byte) []byte { return b[:len(b)-1] }},
		{"zeros appended", false, func(b []byte) []byte { return append(b, 0, 0, 0, 0) }},
		{"bit flip in the body", false, func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }},
		{"bit flip in the header", false, func(b []byte) []byte { b[21] ^= 1; return b }},
		{"bad checksum", false, func(b []byte) []byte { b[len(b)-snapTrailerBytes] ^= 0xff; return b }},
		{"bad magic", true, func(b []byte) []byte { b[0] = 'X'; return b }},
		{"wrong version", true, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], snapVersion+1); return b }},
		{"wrong shard", true, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 3); return b }},
		{"wrong shard count", true, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 2); return b }},
		{"body cut, checksum right", true, func(b []byte) []byte {
			return append(b[:snapHeaderBytes+3:snapHeaderBytes+3], b[len(b)-snapTrailerBytes:]...)
		}},
		{"random bytes", false, func(b []byte) []byte {
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			m := newMachine(t)
			m.s.keepFresh = true
			dir := t.TempDir()
			m.must(add("p", 5))
			m.must(reserve("p", "r1", 2))
			m.must(commit("p", "r1", 0))
			snapshotAt(t, m.s, dir, uint64(len(m.log)), m.now)
			older := len(m.log)
			m.must(reserve("p", "r2", 1))
			m.must(release("p", "r2"))
			snapshotAt(t, m.s, dir, uint64(len(m.log)), m.now)
			infos, err := ListSnapshots(dir)
			if err != nil || len(infos) != 2 {
				t.Fatalf("snapshots %v %v", infos, err)
			}
			rewriteSnapshot(t, infos[0].Path, d.fix, d.fn)
			st := NewState(0, int64(RetentionDefault))
			loc, found, skipped, err := LoadSnapshot(dir, 0, 1, st)
			if err != nil || !found || loc != uint64(older) || len(skipped) != 1 {
				t.Fatalf("load: loc %d found %v skipped %v err %v; want the older snapshot at %d, one skipped", loc, found, skipped, err, older)
			}
			t.Logf("skipped: %v", skipped[0])
			if s, _ := st.Stock("p"); s.Version != 3 || s.OnHand != 3 {
				t.Errorf("state of the older snapshot: %+v", s)
			}
			st.store.close()
			rewriteSnapshot(t, infos[1].Path, d.fix, d.fn)
			st = NewState(0, int64(RetentionDefault))
			_, found, skipped, _ = LoadSnapshot(dir, 0, 1, st)
			if found || len(skipped) != 2 || st.Products() != 0 || st.Entries() != 0 {
				t.Errorf("both damaged: found %v, skipped %d, %d products left in the state", found, len(skipped), st.Products())
			}
			m.s.store.close()
		})
	}
}

// snapEngine is a test engine with snapshots every few entries.
func snapEngine(t *testing.T, shards int, every int) *testEngine {
	t.Helper()
	te := &testEngine{t: t, js: shardtest.Journals(shards), clock: newFakeClock()}
	dir := t.TempDir()
	te.cfg = Config{Shards: shards, Clock: te.clock.now, SnapshotEntries: every,
		SnapshotDir: func(i int) string { return SnapshotDir(dir, i) }}
	te.open()
	return te
}

// ledger is what a client can read of a set of products and reservations.
func (te *testEngine) ledger(products []string, resvs [][2]string) string {
	te.t.Helper()
	ctx := context.Background()
	out := ""
	for _, p := range products {
		for after := int64(0); ; {
			page, err := te.History(ctx, p, after, 7)
			if err != nil {
				te.t.Fatalf("history %s: %v", p, err)
			}
			out += fmt.Sprintf("%s@%d:%v\n", p, after, page.Entries)
			if page.Next == 0 {
				break
			}
			after = page.Next
		}
		out += fmt.Sprintf("%+v\n", te.stock(p))
	}
	for _, r := range resvs {
		res, err := te.Reservation(ctx, r[0], r[1])
		if err != nil {
			te.t.Fatalf("reservation %v: %v", r, err)
		}
		out += fmt.Sprintf("%+v\n", res)
	}
	return out
}

// workload writes adds, reservations settled every way, idempotent
// writes and carts across shards, and returns the products and
// reservations it touched.
func (te *testEngine) workload(run string, n int) ([]string, [][2]string) {
	te.t.Helper()
	ctx := context.Background()
	var products []string
	var resvs [][2]string
	for i := range 8 {
		products = append(products, fmt.Sprintf("p%d", i))
	}
	for i := range n {
		p := products[i%len(products)]
		a := add(p, 3)
		a.IdempotencyKey = fmt.Sprintf("%sk%d", run, i)
		te.write(a)
		id := fmt.Sprintf("%sr%d", run, i)
		te.write(reserve(p, id, 2))
		resvs = append(resvs, [2]string{p, id})
		switch i % 3 {
		case 0:
			te.write(commit(p, id, 1)) // partial: a RELEASE of the rest follows
		case 1:
			te.write(release(p, id))
		}
		if i%5 == 0 {
			q := products[(i+3)%len(products)]
			te.write(add(q, 1))
			cart := []Op{reserve(p, "cart"+id, 1), reserve(q, "cart"+id, 1)}
			if _, err := te.Batch(ctx, cart, true); err != nil {
				te.t.Fatalf("cart: %v", err)
			}
			resvs = append(resvs, [2]string{p, "cart" + id}, [2]string{q, "cart" + id})
		}
	}
	return products, resvs
}

func snapshotCount(t *testing.T, dir string, shards int) int {
	t.Helper()
	n := 0
	for i := range shards {
		infos, err := ListSnapshots(SnapshotDir(dir, i))
		if err != nil {
			t.Fatal(err)
		}
		n += len(infos)
	}
	return n
}

// TestSnapshotRestartKeepsEverything: with snapshots every 20 entries,
// history pages, stock and reservation reads after a graceful restart and
// after a crash (no final snapshot) equal those before, idempotent writes
// replay, and reused reservation ids are refused; the restart replays
// only the tail, and old snapshots are pruned to two a shard.
func TestSnapshotRestartKeepsEverything(t *testing.T) {
	te := snapEngine(t, 2, 20)
	products, resvs := te.workload("a", 60)
	before := te.ledger(products, resvs)
	te.restart()
	if after := te.ledger(products, resvs); after != before {
		t.Fatalf("after a restart from snapshots:\n%s\nwant\n%s", after, before)
	}
	if got := counterValue(t, te.m.replayed); got != 0 {
		t.Errorf("a restart right after the final snapshots replayed %v entries, want 0", got)
	}
	dir := filepath.Dir(filepath.Dir(te.cfg.SnapshotDir(0)))
	if n := snapshotCount(t, dir, 2); n != 4 {
		t.Errorf("%d snapshots kept, want %d", n, 2*SnapshotsKept)
	}
	ctx := context.Background()
	for i, r := range resvs {
		if _, err := te.Write(ctx, reserve(r[0], r[1], 1)); err == nil || err.Code != CodeReservationExists {
			t.Fatalf("reservation %d %v reused after restart: %v", i, r, err)
		}
	}
	a := add("p1", 3)
	a.IdempotencyKey = "ak1"
	if res := te.write(a); !res.Replayed {
		t.Error("an idempotency key was forgotten across the snapshot")
	}
	// A crash: the journals keep every block, no final snapshot.
	_, more := te.workload("b", 10)
	resvs = append(resvs, more...)
	before = te.ledger(products, resvs)
	crashed := te.Engine
	te.open()
	if after := te.ledger(products, resvs); after != before {
		t.Fatalf("after a crash:\n%s\nwant\n%s", after, before)
	}
	_ = crashed // closed by its cleanup
}

// TestSnapshotCrashAtEachStep crashes a snapshot write before each of its
// steps: a restart loses nothing, whatever the crash left.
func TestSnapshotCrashAtEachStep(t *testing.T) {
	for _, step := range []string{stepCreate, stepWrite, stepSync, stepWait, stepRename, stepDir, stepPrune} {
		t.Run(step, func(t *testing.T) {
			errCrash := errors.New("crash")
			crashes := make(chan struct{}, 100)
			fault := func(s string) error {
				if s == step {
					crashes <- struct{}{}
					return errCrash
				}
				return nil
			}
			te := snapEngine(t, 1, 10)
			te.workload("a", 5) // some snapshots first, then the crashing ones
			snapFaults.Store(&fault)
			defer snapFaults.Store(nil)
			products, resvs := te.workload("b", 10)
			deadline := time.Now().Add(5 * time.Second)
			for len(crashes) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no snapshot reached the step")
				}
				te.write(add("p0", 1))
				time.Sleep(time.Millisecond)
			}
			before := te.ledger(products, resvs)
			snapFaults.Store(nil)
			te.open() // the crashed engine stays idle until its cleanup
			if after := te.ledger(products, resvs); after != before {
				t.Fatalf("after a crash at %s:\n%s\nwant\n%s", step, after, before)
			}
			ents, _ := os.ReadDir(te.cfg.SnapshotDir(0))
			for _, e := range ents {
				if filepath.Ext(e.Name()) == snapTmpSuffix {
					t.Errorf("temporary file %s left after the restart", e.Name())
				}
			}
		})
	}
}

// BenchmarkSnapshotCapture measures the actor's pause for a snapshot of a
// shard with 100k products and 10k active holds.
func BenchmarkSnapshotCapture(b *testing.B) {
	s := NewState(0, int64(RetentionDefault))
	var log []Entry
	for i := range 100_000 {
		op := add(fmt.Sprintf("product-%d", i), 5)
		es, _, err := s.decide(&op, t0, nil)
		if err != nil {
			b.Fatal(err)
		}
		for j := range es {
			s.apply(&es[j], uint64(len(log)+1))
			log = append(log, es[j])
		}
		if i%10 == 0 {
			op := reserve(fmt.Sprintf("product-%d", i), "r", 1)
			es, _, _ := s.decide(&op, t0, nil)
			s.apply(&es[0], uint64(len(log)+1))
			log = append(log, es[0])
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c := s.capture(uint64(len(log)), t0, 1)
		if len(c.products) != 100_000 {
			b.Fatal("capture lost products")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/110_000, "ns/product+hold")
}

// TestLongReplayWritesSnapshot: a start with snapshots on a log that has
// none settles more reservations in its replay than it indexes in RAM, so
// it writes a snapshot before it is ready; reads and refusals are those of
// the log, and so are those of a start with the in-memory index.
func TestLongReplayWritesSnapshot(t *testing.T) {
	te := startEngine(t, 1)
	products, resvs := te.workload("a", 30)
	before := te.ledger(products, resvs)
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func(a, b int) { freshIndexMax, freshReplayMax = a, b }(freshIndexMax, freshReplayMax)
	for _, limit := range []int{5, 1 << 16} {
		freshIndexMax, freshReplayMax = limit, limit+3
		dir := t.TempDir()
		te.cfg.SnapshotDir = func(i int) string { return SnapshotDir(dir, i) }
		te.open()
		infos, _ := ListSnapshots(te.cfg.SnapshotDir(0))
		if want := limit == 5; (len(infos) > 0) != want {
			t.Errorf("limit %d: %d snapshots after the replay", limit, len(infos))
		}
		if after := te.ledger(products, resvs); after != before {
			t.Fatalf("limit %d:\n%s\nwant\n%s", limit, after, before)
		}
		if limit == 5 && len(infos) != 1 {
			t.Errorf("limit %d: %d snapshots after the replay, want one, at its end", limit, len(infos))
		}
		for _, r := range resvs {
			if _, err := te.Write(context.Background(), reserve(r[0], r[1], 1)); err == nil || err.Code != CodeReservationExists {
				t.Fatalf("limit %d: reservation %v reused: %v", limit, r, err)
			}
		}
		te.cfg.SnapshotDir = nil // the next start replays the whole log again
		if err := te.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func allLocs(s *State, p *product) []uint64 {
	locs, err := s.locRange(p, 0, p.version)
	if err != nil {
		panic(err)
	}
	return locs
}

// TestLongReplaySnapshotFails: when the snapshot that ends a long replay
// cannot be written, the reservations the replay spilled come back to RAM:
// reads and refusals are those of the log, and the next start (the disk
// mended) writes the snapshot.
func TestLongReplaySnapshotFails(t *testing.T) {
	te, products, resvs, before, dir := startLongReplay(t, stepRename)
	if n := snapshotCount(t, dir, 1); n != 0 {
		t.Fatalf("%d snapshots after a failed write", n)
	}
	checkLongReplay(t, te, products, resvs, before, "after a failed snapshot")
	te.restart()
	if n := snapshotCount(t, dir, 1); n == 0 {
		t.Error("no snapshot after a start that could write one")
	}
	if after := te.ledger(products, resvs); after != before {
		t.Fatalf("after the next start:\n%s\nwant\n%s", after, before)
	}
	te.cfg.SnapshotDir = nil
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// startLongReplay writes a workload to one shard, then starts it again
// with limits that make its replay long, so that it ends with a snapshot
// in dir, whose write fails at step. It returns the engine, the workload
// and the ledger it left.
func startLongReplay(t *testing.T, step string) (te *testEngine, products []string, resvs [][2]string, before, dir string) {
	te = startEngine(t, 1)
	products, resvs = te.workload("a", 30)
	before = te.ledger(products, resvs)
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := freshIndexMax, freshReplayMax
	t.Cleanup(func() { freshIndexMax, freshReplayMax = a, b })
	freshIndexMax, freshReplayMax = 5, 8
	dir = t.TempDir()
	te.cfg.SnapshotDir = func(i int) string { return SnapshotDir(dir, i) }
	fail := func(s string) error {
		if s == step {
			return errors.New("disk gone")
		}
		return nil
	}
	snapFaults.Store(&fail)
	te.open()
	snapFaults.Store(nil)
	return te, products, resvs, before, dir
}

// checkLongReplay checks that reads and refusals after a long replay are
// those of the log.
func checkLongReplay(t *testing.T, te *testEngine, products []string, resvs [][2]string, before, when string) {
	t.Helper()
	if after := te.ledger(products, resvs); after != before {
		t.Fatalf("%s:\n%s\nwant\n%s", when, after, before)
	}
	for _, r := range resvs {
		if _, err := te.Write(context.Background(), reserve(r[0], r[1], 1)); err == nil || err.Code != CodeReservationExists {
			t.Fatalf("%s: reservation %v reused: %v", when, r, err)
		}
	}
}

// TestLongReplaySnapshotPruneFails: when only the pruning after the
// snapshot that ends a long replay fails, the snapshot is durable and is
// taken up, as the live path takes it up: its file stays open for lookups
// until the engine closes, and no descriptor of it outlives the engine.
func TestLongReplaySnapshotPruneFails(t *testing.T) {
	if _, err := os.ReadDir("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd to count open files")
	}
	te, products, resvs, before, dir := startLongReplay(t, stepPrune)
	if n := snapshotCount(t, dir, 1); n != 1 {
		t.Fatalf("%d snapshots after a write whose prune failed, want 1", n)
	}
	if n := openFilesUnder(t, dir); n != 1 {
		t.Errorf("%d open files of the snapshot after the start, want 1 (the run taken up)", n)
	}
	checkLongReplay(t, te, products, resvs, before, "after the start")
	te.cfg.SnapshotDir = nil
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := openFilesUnder(t, dir); n != 0 {
		t.Errorf("%d files of the snapshot still open after the engine closed", n)
	}
}

// openFilesUnder counts this process's open files under dir.
func openFilesUnder(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			n++
		}
	}
	return n
}

// TestSpilledRunsMerge: the run of the previous snapshot, reservations
// spilled in several runs, and those settled since merge into one
// snapshot run that answers every one of them; unspilled, they come back
// to RAM whole.
func TestSpilledRunsMerge(t *testing.T) {
	for _, back := range []bool{false, true} {
		m := newMachine(t)
		m.s.keepFresh = true
		dir := t.TempDir()
		for i := range 90 {
			p, id := fmt.Sprintf("p%d", i%4), fmt.Sprintf("r%d", i)
			m.must(add(p, 1))
			m.must(reserve(p, id, 1))
			m.must(commit(p, id, 0))
			if i == 9 && !back {
				snapshotAt(t, m.s, dir, uint64(len(m.log)), m.now)
			}
			if i%30 == 29 && i < 89 {
				if err := m.s.spill(dir); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(m.s.spills) != 2 || len(m.s.fresh) != 30 {
			t.Fatalf("%d spills, %d fresh; want 2 and 30", len(m.s.spills), len(m.s.fresh))
		}
		if infos, _ := ListSnapshots(dir); len(infos) > 1 {
			t.Errorf("spills made snapshots: %v", infos)
		}
		if ents, _ := os.ReadDir(dir); len(ents) > 1 {
			t.Errorf("spill files are named: %v", ents)
		}
		if back {
			if err := m.s.unspill(); err != nil {
				t.Fatal(err)
			}
			if len(m.s.fresh) != 90 || len(m.s.spills) != 0 {
				t.Fatalf("unspilled: %d fresh, %d spills", len(m.s.fresh), len(m.s.spills))
			}
			m.s.store.close()
			continue
		}
		snapshotAt(t, m.s, dir, uint64(len(m.log)), m.now)
		if len(m.s.spills) != 0 {
			t.Error("spills kept after the snapshot merged them")
		}
		loaded, _ := loadAndReplay(t, dir, m.log)
		for i := range 90 {
			p, id := fmt.Sprintf("p%d", i%4), fmt.Sprintf("r%d", i)
			if r, ok, err := loaded.reservation(p, id); err != nil || !ok || r.state() != StateCommitted {
				t.Fatalf("reservation %s/%s after the load: %v %v %v", p, id, r.state(), ok, err)
			}
		}
		if loaded.store.n != 90 {
			t.Errorf("run of %d, want 90", loaded.store.n)
		}
		loaded.store.close()
		m.s.store.close()
	}
}

// TestSnapshotSectionsChecked: a snapshot whose checksum is right but whose
// product ids, Bloom filter or sparse index do not fit is refused with a
// reason, and so is a file of format version 1.
func TestSnapshotSectionsChecked(t *testing.T) {
	damages := []struct {
		name, want string
		fn         func([]byte) []byte
	}{
		{"ids out of order", "after", func(b []byte) []byte {
			i := bytes.Index(b, []byte("prod-oneprod-two"))
			copy(b[i:], "prod-twoprod-one")
			return b
		}},
		{"index point off", "index point 0", func(b []byte) []byte { b[len(b)-snapTrailerBytes-8] ^= 1; return b }},
		{"index count", "index of", func(b []byte) []byte { b[len(b)-snapTrailerBytes-17]++; return b }},
		{"Bloom blocks", "Bloom filter of", func(b []byte) []byte { b[len(b)-snapTrailerBytes-17-64-1]++; return b }},
		{"version 1", "format version 1", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 1); return b }},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			m := newMachine(t)
			m.s.keepFresh = true
			dir := t.TempDir()
			m.must(add("prod-one", 5))
			m.must(add("prod-two", 5))
			m.must(reserve("prod-one", "r1", 2))
			m.must(commit("prod-one", "r1", 0))
			m.must(reserve("prod-two", "r2", 1))
			m.must(release("prod-two", "r2"))
			snapshotAt(t, m.s, dir, uint64(len(m.log)), m.now)
			m.s.store.close()
			infos, _ := ListSnapshots(dir)
			rewriteSnapshot(t, infos[0].Path, true, d.fn)
			st := NewState(0, int64(RetentionDefault))
			_, found, skipped, err := LoadSnapshot(dir, 0, 1, st)
			if err != nil || found || len(skipped) != 1 || !strings.Contains(skipped[0].Error(), d.want) {
				t.Fatalf("found %v, skipped %v, err %v; want it skipped for %q", found, skipped, err, d.want)
			}
			if st.Products() != 0 {
				t.Errorf("%d products left in the state", st.Products())
			}
		})
	}
}

// TestRunOrder: the radix order of a run is that of compareSettled, below
// and above the radix threshold, also with hashes made equal (collisions).
func TestRunOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 100, 5000} {
		for _, collide := range []bool{false, true} {
			rs := make([]settledRec, n)
			keys := make([]hashIdx, n)
			for i := range rs {
				rs[i] = settledRec{productID: fmt.Sprintf("p%d", r.IntN(50)), id: fmt.Sprintf("r%d", i)}
				rs[i].hash = stableHash(rs[i].productID, rs[i].id)
				if collide && i%3 == 0 {
					rs[i].hash = uint64(i % 7)
				}
				keys[i] = hashIdx{rs[i].hash, int32(i)}
			}
			sortRun(rs, keys)
			want := slices.Clone(rs)
			slices.SortFunc(want, func(a, b settledRec) int { return compareSettled(&a, &b) })
			for i, k := range keys {
				if got := rs[k.i]; got.hash != want[i].hash || got.productID != want[i].productID || got.id != want[i].id {
					t.Fatalf("n %d, collisions %v: record %d is %+v, want %+v", n, collide, i, got, want[i])
				}
			}
		}
	}
}

// TestSettledTwiceRefused: a reservation both in a spilled run and among
// those settled since (a corrupt log) fails the snapshot, which names it.
func TestSettledTwiceRefused(t *testing.T) {
	m := newMachine(t)
	m.s.keepFresh = true
	dir := t.TempDir()
	for i := range 5 {
		id := fmt.Sprintf("r%d", i)
		m.must(add("p", 1))
		m.must(reserve("p", id, 1))
		m.must(commit("p", id, 0))
	}
	twin := m.s.fresh[2]
	if err := m.s.spill(dir); err != nil {
		t.Fatal(err)
	}
	m.s.fresh = append(m.s.fresh, twin)
	c := m.s.capture(uint64(len(m.log)), m.now, 1)
	_, _, err := writeSnapshot(dir, c, func() bool { return true })
	if err == nil || !strings.Contains(err.Error(), `"r2" of product "p" settled twice`) {
		t.Fatalf("snapshot with a twin: %v", err)
	}
	m.s.adopt(nil, nil)
	m.s.closeSpills()
	if infos, _ := ListSnapshots(dir); len(infos) != 0 {
		t.Errorf("a snapshot was written: %v", infos)
	}
}

// TestPauseGCRestores: overlapping pauses of the collector (two shards
// loading at once) leave it off until the last ends, with a memory limit,
// then restore the settings found.
func TestPauseGCRestores(t *testing.T) {
	percent := debug.SetGCPercent(150)
	limit := debug.SetMemoryLimit(1 << 40)
	defer func() { debug.SetGCPercent(percent); debug.SetMemoryLimit(limit) }()
	a := pauseGC(64 << 20)
	b := pauseGC(64 << 20)
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("GC percent %d during two loads, want off", p)
	}
	if l := debug.SetMemoryLimit(-1); l >= 1<<40 {
		t.Errorf("memory limit %d during the loads, want one below the one set before", l)
	}
	a()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("GC percent %d with one load left, want off", p)
	}
	b()
	if p := debug.SetGCPercent(-1); p != 150 {
		t.Errorf("GC percent %d after the loads, want 150", p)
	}
	debug.SetGCPercent(150)
	if l := debug.SetMemoryLimit(-1); l != 1<<40 {
		t.Errorf("memory limit %d after the loads, want %d", l, int64(1<<40))
	}
}

// FuzzLoadSnapshot feeds any body, between a right header and a trailer
// whose checksum matches (so that the parser, not the checksum, has to
// refuse it), to the load: it must never panic, and a body it refuses
// leaves nothing behind it reports as loaded.
func FuzzLoadSnapshot(f *testing.F) {
	dir := f.TempDir()
	m := newMachine(new(testing.T))
	m.s.keepFresh = true
	for i := range 70 {
		p, id := fmt.Sprintf("p%d", i%3), fmt.Sprintf("r%d", i)
		m.must(add(p, 2))
		m.must(reserve(p, id, 1))
		if i%2 == 0 {
			m.must(commit(p, id, 0))
		}
	}
	c := m.s.capture(uint64(len(m.log)), m.now, 1)
	store, info, err := writeSnapshot(dir, c, func() bool { return true })
	if err != nil {
		f.Fatal(err)
	}
	store.close()
	b, err := os.ReadFile(info.Path)
	if err != nil {
		f.Fatal(err)
	}
	head := b[:snapHeaderBytes]
	f.Add(b[snapHeaderBytes : len(b)-snapTrailerBytes])
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, body []byte) {
		file := append(append(slices.Clone(head), body...), make([]byte, snapTrailerBytes)...)
		n := len(file) - snapTrailerBytes
		binary.LittleEndian.PutUint32(file[n:], crc32.Checksum(file[:n], crcTable))
		copy(file[n+4:], snapEnd)
		path := filepath.Join(t.TempDir(), snapName(1))
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		st := NewState(0, int64(RetentionDefault))
		if _, err := loadSnapshot(path, 0, 1, st, 0); err == nil {
			// Accepted: every settled reservation it claims reads back.
			err := st.store.each(func(*settledRec) error { return nil })
			st.store.close()
			if err != nil {
				t.Fatalf("accepted a run that does not read: %v", err)
			}
		}
	})
}

// TestSnapshotAheadOfJournalSetAside: a snapshot covering records the
// journal does not hold (a start-up snapshot of a tail a power cut took)
// is set aside, not only skipped: once the journal grows past its locator
// with other records, the next start still replays the journal, and does
// not take the old state for the new one.
func TestSnapshotAheadOfJournalSetAside(t *testing.T) {
	te := snapEngine(t, 1, 1000)
	te.workload("a", 20)
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := te.cfg.SnapshotDir(0)
	infos, _ := ListSnapshots(dir)
	if len(infos) != 1 {
		t.Fatalf("%d snapshots after a graceful stop", len(infos))
	}
	te.js = shardtest.Journals(1) // the journal lost everything
	te.open()
	if s, err := te.Stock(context.Background(), "p0"); err == nil {
		t.Fatalf("p0 %+v from a journal that holds nothing", s)
	}
	if _, err := os.Stat(infos[0].Path + snapAheadSuffix); err != nil {
		t.Fatalf("snapshot not set aside: %v", err)
	}
	products, resvs := te.workload("b", 40) // past the old snapshot's locator
	before := te.ledger(products, resvs)
	if n := snapshotCount(t, filepath.Dir(filepath.Dir(dir)), 1); n != 0 {
		t.Fatalf("%d snapshots written since", n)
	}
	te.open() // a crash: no final snapshot
	if after := te.ledger(products, resvs); after != before {
		t.Fatalf("after a crash:\n%s\nwant\n%s", after, before)
	}
}

// TestSnapshotsAheadOfJournalAllSetAside: both kept snapshots are ahead of
// the journal (it lost what both cover); a start sets both aside, not
// only the newest, so that a later start trusts neither once the journal
// has grown past their locators.
func TestSnapshotsAheadOfJournalAllSetAside(t *testing.T) {
	te := snapEngine(t, 1, 1000)
	te.workload("a", 10)
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	te.open()
	te.workload("c", 10)
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if infos, _ := ListSnapshots(te.cfg.SnapshotDir(0)); len(infos) != 2 {
		t.Fatalf("%d snapshots, want 2", len(infos))
	}
	te.js = shardtest.Journals(1) // the journal lost what both cover
	te.open()
	if infos, _ := ListSnapshots(te.cfg.SnapshotDir(0)); len(infos) != 0 {
		t.Fatalf("snapshots %v left in place ahead of the journal", infos)
	}
	products, resvs := te.workload("b", 40)
	before := te.ledger(products, resvs)
	te.open() // a crash and a restart
	if after := te.ledger(products, resvs); after != before {
		t.Fatalf("after a crash:\n%s\nwant\n%s", after, before)
	}
}

// TestSnapshotAheadNotSetAsideStopsTheStart: when the snapshot ahead of the
// journal cannot be set aside (here a directory holds its .ahead name), the
// start fails and says what to move, rather than serve and trust it at the
// next start; once it is moved, the start goes on.
func TestSnapshotAheadNotSetAsideStopsTheStart(t *testing.T) {
	te := snapEngine(t, 1, 1000)
	te.workload("a", 20)
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	infos, _ := ListSnapshots(te.cfg.SnapshotDir(0))
	if len(infos) != 1 {
		t.Fatalf("%d snapshots", len(infos))
	}
	block := infos[0].Path + snapAheadSuffix
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	te.js = shardtest.Journals(1) // the journal lost its tail (here: all of it)
	e, err := Open(te.cfg, shardtest.Opener[Journal](te.js))
	if err == nil {
		err = e.Wait(context.Background())
		e.Close(context.Background())
	}
	if err == nil || !strings.Contains(err.Error(), "could not be set aside") || !strings.Contains(err.Error(), infos[0].Path) {
		t.Fatalf("start with a snapshot ahead that cannot be set aside: %v", err)
	}
	if err := os.RemoveAll(block); err != nil {
		t.Fatal(err)
	}
	te.open()
	products, resvs := te.workload("b", 40)
	before := te.ledger(products, resvs)
	te.open()
	if after := te.ledger(products, resvs); after != before {
		t.Fatalf("after a crash:\n%s\nwant\n%s", after, before)
	}
}

// TestReplayedCountAfterEndSnapshot: a first start that replays the whole
// log and writes a snapshot at its end counts every entry it replayed.
func TestReplayedCountAfterEndSnapshot(t *testing.T) {
	te := startEngine(t, 1)
	te.workload("a", 30)
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func(a, b int) { freshIndexMax, freshReplayMax = a, b }(freshIndexMax, freshReplayMax)
	freshIndexMax, freshReplayMax = 5, 8
	dir := t.TempDir()
	te.cfg.SnapshotDir = func(i int) string { return SnapshotDir(dir, i) }
	te.open()
	if n := snapshotCount(t, dir, 1); n != 1 {
		t.Fatalf("%d snapshots", n)
	}
	if got, want := counterValue(t, te.m.replayed), float64(te.actors[0].state.Entries()); got != want {
		t.Errorf("replayed entries counted: %v, want %v", got, want)
	}
}
