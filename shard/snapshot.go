package shard

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Snapshots bound the replay at start-up. Every SnapshotEntries entries or
// SnapshotInterval (whichever comes first, if the shard wrote anything), and
// at a graceful stop, the actor captures its state at the end of a flight
// (snapCapture: copies of the small parts, shared immutable views of the
// large ones) and a goroutine writes it (writeSnapshot). Start-up loads the
// newest valid snapshot and replays only the journal after the record it
// covers. The journal is never truncated: it stays the audit trail.
//
// What a capture shares with the live state, and why that is safe: the
// locators of each product (a slice header: the actor only appends past its
// length, and never rewrites a located slot once the flight is sealed); the
// chunks of the idempotency key queue (appended past the captured length,
// popped by moving a head, never rewritten); the settled reservations since
// the last snapshot (State.fresh, handed over whole to the snapshot: the
// actor starts a new list, and reads the old one again only once the
// snapshot is adopted); the tx parts prepared (immutable once located).
// Copied: the balances of each product and the active holds.
//
// Atomic batches across shards: a snapshot includes the tx parts prepared
// and not resolved (their entries and locators) and the outcomes of the
// last txOutcomesKept txs this shard resolved, so that a replay from it
// resolves txs in doubt as a full replay would. A tx in doubt on another
// shard that this shard's snapshot cannot answer (named at or before the
// snapshot's largest tx, and neither among its outcomes nor in the replayed
// tail) makes start-up replay this shard in full: never a guess.

// snapCapture is the state of one shard at the end of a flight.
type snapCapture struct {
	shard, shards int
	loc           uint64 // last journal record covered
	at            int64
	entries, ids  uint64
	lastAt        int64
	maxTx         uint64
	products      []snapProduct
	slabN         int32
	holds         []snapHold
	free          []int32
	ages          []ageChunk
	agesHead      int
	span          int64
	parts         []*txPart
	outcomes      []txOutcome
	store         *settledStore   // the previous run
	spills        []*settledStore // runs the replay spilled since
	fresh         []settledRec    // settled since
}

type snapProduct struct {
	id  string
	p   product  // a copy, with the locators' slice header
	ptr *product // the live one, whose locators adopt moves to the file
	off int64    // where the new snapshot holds its locators
}

type snapHold struct {
	slot int32
	h    hold
}

// txOutcome is the outcome of one tx this shard resolved.
type txOutcome struct {
	tx        uint64
	committed bool
}

// txOutcomesKept bounds the tx outcomes a shard remembers for snapshots
// (16 bytes each): far above the txs that can be in flight at once
// (TxInflightMax) in the time a snapshot waits for its flight.
const txOutcomesKept = 1 << 14

// noteOutcome remembers the outcome of tx.
func (s *State) noteOutcome(tx uint64, committed bool) {
	s.maxTx = max(s.maxTx, tx)
	if len(s.recentTx) < txOutcomesKept {
		s.recentTx = append(s.recentTx, txOutcome{tx, committed})
		return
	}
	s.recentTx[s.recentNext] = txOutcome{tx, committed}
	s.recentNext = (s.recentNext + 1) % txOutcomesKept
}

// snapshotable reports whether s is at a point a snapshot may capture: not
// inside a replayed tx part or between a partial COMMIT and its RELEASE.
func (s *State) snapshotable() bool { return s.collect == nil && !s.cont.pending && !s.replaying }

// capture returns the state for a snapshot covering the records up to loc.
// Called from the actor goroutine; its cost is the pause (O(products +
// active holds)).
func (s *State) capture(loc uint64, at int64, shards int) *snapCapture {
	c := &snapCapture{
		shard: s.shard, shards: shards, loc: loc, at: at,
		entries: s.entries, ids: s.ids, lastAt: s.lastAt, maxTx: s.maxTx,
		products: make([]snapProduct, 0, len(s.products)),
		slabN:    s.holds.n,
		free:     slices.Clone(s.free),
		ages:     slices.Clone(s.ages.chunks),
		agesHead: s.ages.head,
		span:     s.ages.span,
		// Oldest first, so that a restored ring drops the oldest first.
		outcomes: append(slices.Clone(s.recentTx[s.recentNext:]), s.recentTx[:s.recentNext]...),
		store:    s.store,
		spills:   s.spills,
		fresh:    s.fresh,
	}
	s.sent, s.fresh = s.fresh, nil
	for id, p := range s.products {
		c.products = append(c.products, snapProduct{id: id, p: *p, ptr: p})
	}
	for i := range s.holds.n {
		if h := s.holds.at(i); h.productID != "" {
			c.holds = append(c.holds, snapHold{i, *h})
		}
	}
	for _, p := range s.txs {
		c.parts = append(c.parts, p)
	}
	return c
}

// encode writes everything but the settled reservations. Each product's
// locators are 8 bytes each, little-endian, so that the file serves
// history pages after the load (State.locRange): those the previous
// snapshot holds are copied from it, the rest come from RAM.
func (c *snapCapture) encode(w *snapWriter) error {
	w.uvarint(c.entries)
	w.uvarint(c.ids)
	w.varint(c.lastAt)
	w.uvarint(c.maxTx)
	// Sorted, so that two snapshots of one state are the same bytes: by
	// (id, index) pairs, which move faster than the products.
	order := make([]idIdx, len(c.products))
	for i := range c.products {
		order[i] = idIdx{c.products[i].id, int32(i)}
	}
	slices.SortFunc(order, func(a, b idIdx) int { return strings.Compare(a.id, b.id) })
	// The ids first, in one block that the load keeps as one string;
	// then the balances; then every locator, in the same order, so that
	// the load passes over all of them at once.
	w.uvarint(uint64(len(c.products)))
	idBytes := 0
	for _, o := range order {
		idBytes += len(o.id)
	}
	w.uvarint(uint64(idBytes))
	for _, o := range order {
		w.bw.WriteString(o.id)
		w.n += int64(len(o.id))
	}
	for _, o := range order {
		p := &c.products[o.i]
		w.uvarint(uint64(len(p.id)))
		w.varint(p.p.onHand)
		w.varint(p.p.reserved)
		w.varint(p.p.version)
		w.varint(p.p.updatedAt)
	}
	// Those the previous snapshot holds are read from it in one pass: its
	// products are in the same order.
	var old *snapReader
	if c.store != nil {
		old = newSnapReader(c.store.f, 0, c.store.start)
	}
	for _, o := range order {
		p := &c.products[o.i]
		p.off = w.n
		if n := p.p.snapLocs; n > 0 {
			if p.p.locOff < old.pos {
				old = newSnapReader(c.store.f, p.p.locOff, c.store.start)
			}
			old.skip(p.p.locOff - old.pos)
			if err := old.copyTo(w, 8*n); err != nil {
				return fmt.Errorf("copy locators from %s: %w", c.store.f.Name(), err)
			}
		}
		for _, l := range p.p.locs[:p.p.version-p.p.snapLocs] {
			w.Write(binary.LittleEndian.AppendUint64(w.tmp[:0], l))
		}
	}
	w.uvarint(uint64(c.slabN))
	w.uvarint(uint64(len(c.holds)))
	for _, h := range c.holds {
		w.uvarint(uint64(h.slot))
		w.str(h.h.productID)
		w.str(h.h.id)
		w.varint(h.h.qty)
		w.varint(h.h.expiresAt)
		w.varint(h.h.version)
	}
	w.uvarint(uint64(len(c.free)))
	for _, f := range c.free {
		w.uvarint(uint64(f))
	}
	w.varint(c.span)
	w.uvarint(uint64(len(c.ages)))
	for i, ch := range c.ages {
		keys := ch.keys
		if i == 0 {
			keys = keys[c.agesHead:]
		}
		w.varint(ch.first)
		w.varint(ch.last)
		w.uvarint(uint64(len(keys)))
		for _, k := range keys {
			w.str(k.product)
			w.str(k.key)
			w.uvarint(k.fp)
			w.varint(k.version)
		}
	}
	enc := newEncoder()
	slices.SortFunc(c.parts, func(a, b *txPart) int { return cmp.Compare(a.tx, b.tx) })
	w.uvarint(uint64(len(c.parts)))
	for _, p := range c.parts {
		w.uvarint(p.tx)
		w.uvarint(p.prio)
		w.uvarint(uint64(len(p.shards)))
		for _, s := range p.shards {
			w.uvarint(uint64(s))
		}
		w.uvarint(uint64(len(p.entries)))
		for i := range p.entries {
			rec := enc.encode(&p.entries[i])
			w.uvarint(uint64(len(rec)))
			w.Write(rec)
			w.uvarint(p.locs[i])
		}
	}
	w.uvarint(uint64(len(c.outcomes)))
	for _, o := range c.outcomes {
		w.uvarint(o.tx)
		b := uint64(0)
		if o.committed {
			b = 1
		}
		w.uvarint(b)
	}
	return nil
}

// writeSettled writes the run: the previous run, the runs the replay
// spilled and the reservations settled since, merged in order; then the
// Bloom filter and the sparse index over it, so that a load reads those
// and not the run. It returns the run, for lookups once the file is f.
func (c *snapCapture) writeSettled(w *snapWriter) (*settledStore, error) {
	// Hashed in place: the actor reads these slots again only to adopt the
	// snapshot, and appends past them meanwhile.
	fresh := c.fresh
	order := runOrder(fresh)
	n, runBytes := len(fresh), int64(0)
	for i := range fresh {
		runBytes += settledBytes(&fresh[i])
	}
	var srcs []*settledIter
	for _, st := range append([]*settledStore{c.store}, c.spills...) {
		if st != nil && st.n > 0 {
			n += st.n
			runBytes += st.end - st.start
			srcs = append(srcs, st.iter())
		}
	}
	srcs = append(srcs, &settledIter{fresh: fresh, order: order})
	w.uvarint(uint64(n))
	w.uvarint(uint64(runBytes))
	run := &settledStore{start: w.n, n: n, filter: newBloom(n)}
	for _, it := range srcs {
		it.next()
	}
	// Records of runs in files are copied as they are: their ids are
	// decoded only when two hashes tie.
	var prev settledRec
	var prevRaw []byte
	for k := 0; ; k++ {
		var min *settledIter
		for _, it := range srcs {
			switch {
			case it.err != nil:
				return nil, it.err
			case it.cur == nil:
			case min == nil || it.cur.hash < min.cur.hash:
				min = it
			case it.cur.hash == min.cur.hash && compareSettled(it.ids(), min.ids()) < 0:
				min = it
			}
		}
		if min == nil {
			if k != n {
				return nil, fmt.Errorf("merged %d settled reservations, want %d", k, n)
			}
			break
		}
		r := min.cur
		if k > 0 && prev.hash == r.hash {
			if prevRaw != nil {
				d := snapDecoder{b: prevRaw}
				if err := d.settled(&prev); err != nil {
					return nil, err
				}
			}
			if compareSettled(&prev, min.ids()) == 0 {
				return nil, fmt.Errorf("reservation %q of product %q settled twice", r.id, r.productID)
			}
		}
		run.filter.add(r.hash)
		if k%settledIndexEvery == 0 {
			run.index = append(run.index, settledPoint{hash: r.hash, off: w.n - run.start})
		}
		if min.raw != nil {
			w.Write(min.raw)
			prev, prevRaw = settledRec{hash: r.hash}, append(prevRaw[:0], min.raw...)
		} else {
			w.settled(r)
			prev, prevRaw = *r, nil
		}
		min.next()
	}
	run.end = w.n
	if run.end-run.start != runBytes {
		return nil, fmt.Errorf("run of %d bytes, want %d", run.end-run.start, runBytes)
	}
	w.uvarint(run.filter.blocks)
	for _, word := range run.filter.words {
		w.Write(binary.LittleEndian.AppendUint64(w.tmp[:0], word))
	}
	w.uvarint(uint64(len(run.index)))
	for _, p := range run.index {
		w.Write(binary.LittleEndian.AppendUint64(w.tmp[:0], p.hash))
		w.Write(binary.LittleEndian.AppendUint64(w.tmp[:0], uint64(p.off)))
	}
	return run, nil
}

// runOrder hashes each of rs and returns them in run order. It sorts
// hashes and indexes (16 bytes), not the records, by radix; only records
// of equal hashes are compared.
func runOrder(rs []settledRec) []hashIdx {
	keys := make([]hashIdx, len(rs))
	for i := range rs {
		rs[i].hash = stableHash(rs[i].productID, rs[i].id)
		keys[i] = hashIdx{rs[i].hash, int32(i)}
	}
	sortRun(rs, keys)
	return keys
}

// sortRun sorts keys, the hashes and indexes of rs, in run order.
func sortRun(rs []settledRec, keys []hashIdx) {
	radixSortHashes(keys)
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j].hash == keys[i].hash {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(keys[i:j], func(a, b hashIdx) int { return compareSettled(&rs[a.i], &rs[b.i]) })
		}
		i = j
	}
}

// radixSortHashes sorts keys by hash: four passes of 16 bits.
func radixSortHashes(keys []hashIdx) {
	if len(keys) < 1<<12 {
		slices.SortFunc(keys, func(a, b hashIdx) int { return cmp.Compare(a.hash, b.hash) })
		return
	}
	src, dst := keys, make([]hashIdx, len(keys))
	count := make([]int, 1<<16)
	for shift := 0; shift < 64; shift += 16 {
		clear(count)
		for _, k := range src {
			count[k.hash>>shift&0xffff]++
		}
		sum := 0
		for i, c := range count {
			count[i], sum = sum, sum+c
		}
		for _, k := range src {
			d := k.hash >> shift & 0xffff
			dst[count[d]] = k
			count[d]++
		}
		src, dst = dst, src
	}
	// Four passes: the last wrote into keys.
}

type idIdx struct {
	id string
	i  int32
}

type hashIdx struct {
	hash uint64
	i    int32
}

// settledIter walks a run in a file, or a slice in the given order.
type settledIter struct {
	r     *snapReader
	left  int
	fresh []settledRec
	order []hashIdx
	rec   settledRec
	raw   []byte      // rec's bytes in the file, until the next read
	named bool        // rec's ids are decoded
	cur   *settledRec // nil at the end
	err   error
}

func (st *settledStore) iter() *settledIter {
	return &settledIter{r: newSnapReader(st.f, st.start, st.end), left: st.n}
}

func (it *settledIter) next() {
	it.cur, it.raw = nil, nil
	switch {
	case it.err != nil:
	case it.r == nil:
		if len(it.order) > 0 {
			it.cur, it.order = &it.fresh[it.order[0].i], it.order[1:]
		}
	case it.left > 0:
		it.raw = it.r.record()
		if it.err = it.r.err; it.err != nil {
			it.err = fmt.Errorf("settled reservations of %s: %w", it.r.f.(*os.File).Name(), it.err)
			return
		}
		it.rec = settledRec{hash: binary.LittleEndian.Uint64(it.raw)}
		it.named = false
		it.left--
		it.cur = &it.rec
	}
}

// ids returns the current record with its ids, decoding them if it came
// from a file.
func (it *settledIter) ids() *settledRec {
	if it.raw != nil && !it.named {
		d := snapDecoder{b: it.raw}
		if err := d.settled(&it.rec); err != nil && it.err == nil {
			it.err = err
		}
		it.named = true
	}
	return it.cur
}

// settledBytes is the encoded size of r.
func settledBytes(r *settledRec) int64 {
	return int64(8 + uvarintLen(uint64(len(r.productID))) + len(r.productID) +
		uvarintLen(uint64(len(r.id))) + len(r.id) + uvarintLen(r.meta) + uvarintLen(uint64(r.settle<<1^(r.settle>>63))))
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// restore fills the empty state s from a snapshot body, up to the settled
// reservations, dropping idempotency keys of chunks older than keysFrom.
func (s *State) restore(r *snapReader, keysFrom int64) error {
	s.entries = r.uvarint()
	s.ids = r.uvarint()
	s.lastAt = r.varint()
	s.maxTx = r.uvarint()
	s.snapMaxTx = s.maxTx
	if err := s.restoreProducts(r); err != nil {
		return err
	}
	// Counts are bounded by the bytes left (each item takes one at least,
	// a hold slot one in the holds or the free list), so that a body whose
	// checksum is right by chance cannot make the load allocate more than
	// the file holds.
	slabN := r.count(min(1<<31, r.left()))
	nh := r.count(slabN)
	for range slabN {
		s.holds.grow()
	}
	for range nh {
		if r.err != nil {
			break
		}
		slot := r.count(slabN - 1)
		h := hold{productID: r.str(), id: r.str(), qty: r.varint(), expiresAt: r.varint(), version: r.varint()}
		if s.products[h.productID] == nil || h.qty < 1 || h.id == "" {
			return fmt.Errorf("hold %q of product %q is not valid", h.id, h.productID)
		}
		if s.holds.at(int32(slot)).productID != "" {
			return fmt.Errorf("hold slot %d twice", slot)
		}
		*s.holds.at(int32(slot)) = h
		s.heap.push(&s.holds, int32(slot))
		k := s.hash(h.productID, h.id)
		if !s.resv.put(k, resvRecord{meta: uint64(h.version)<<3 | uint64(StateActive), settle: int64(slot)}) {
			return fmt.Errorf("hold %q of product %q twice", h.id, h.productID)
		}
	}
	nf := r.count(slabN)
	for range nf {
		s.free = append(s.free, int32(r.count(slabN-1)))
	}
	s.ages.span = r.varint()
	nc := r.count(r.left())
	for range nc {
		if r.err != nil {
			break
		}
		first, last := r.varint(), r.varint()
		nk := r.count(r.left())
		ch := ageChunk{first: first, last: last, keys: make([]agedKey, 0, nk)}
		for range nk {
			k := agedKey{product: r.str(), key: r.str(), fp: r.uvarint(), version: r.varint()}
			k.k = s.hash(k.product, k.key)
			ch.keys = append(ch.keys, k)
		}
		if last < keysFrom {
			continue // older than the retention window at this start
		}
		for _, k := range ch.keys {
			s.idem.put(k.k, idemRecord{fp: k.fp, version: k.version})
		}
		s.ages.chunks = append(s.ages.chunks, ch)
		s.ages.n += len(ch.keys)
	}
	d := newDecoder()
	nt := r.count(min(1<<30, r.left()))
	for range nt {
		if r.err != nil {
			break
		}
		p := &txPart{tx: r.uvarint(), prio: r.uvarint()}
		ns := r.count(ShardsMax)
		for range ns {
			p.shards = append(p.shards, r.count(ShardsMax-1))
		}
		ne := r.count(2 * BatchRequestOpsMax)
		for range ne {
			rec := r.bytes()
			loc := r.uvarint()
			if r.err != nil {
				break
			}
			var e Entry
			if err := d.decode(rec, &e, false); err != nil {
				return fmt.Errorf("tx %d: %w", p.tx, err)
			}
			p.entries = append(p.entries, e)
			p.locs = append(p.locs, loc)
		}
		if r.err == nil {
			ids := s.ids
			if err := s.prepareTx(p); err != nil {
				return err
			}
			s.ids = ids // counted when it was prepared
		}
	}
	no := r.count(txOutcomesKept)
	for range no {
		tx, c := r.uvarint(), r.uvarint()
		s.outcomes[tx] = c == 1
		s.recentTx = append(s.recentTx, txOutcome{tx, c == 1})
	}
	return r.err
}

// restoreProducts reads the products of a snapshot body into the empty
// state s: one map sized once, one array of products and one string of
// their ids, so that a million products load without a million
// allocations or a growing map. The ids are in order, which rules out
// twins. With many products a second goroutine fills the map (its inserts
// are half the cost) while this one parses.
func (s *State) restoreProducts(r *snapReader) error {
	// Each product takes at least 13 bytes: 5 varints and a locator.
	np := r.count(int(r.end-r.pos) / 13)
	ids := r.block(r.count(int(r.end - r.pos)))
	s.products = make(map[string]*product, np)
	all := make([]product, np)
	parsed := 0
	fill := func(to int) {
		for k := parsed; k < to; k++ {
			s.products[all[k].id] = &all[k]
		}
		parsed = to
	}
	insert := fill
	if np >= productsInParallel {
		ready := make(chan int, 16)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for to := range ready {
				fill(to)
			}
		}()
		defer func() { <-done }()
		defer close(ready)
		insert = func(to int) { ready <- to }
	}
	off, locs := 0, int64(0)
	k := 0
	for ; k < np; k++ {
		if k%4096 == 0 {
			insert(k)
		}
		n := r.count(len(ids) - off)
		if r.err != nil {
			break
		}
		id := ids[off : off+n]
		off += n
		if k > 0 && id <= all[k-1].id {
			return fmt.Errorf("product %q after %q", id, all[k-1].id)
		}
		p := &all[k]
		*p = product{id: id, onHand: r.varint(), reserved: r.varint(), version: r.varint(), updatedAt: r.varint()}
		if r.err == nil && (p.version < 1 || p.version > 1<<40) {
			return fmt.Errorf("product %q at version %d", id, p.version)
		}
		// Relative to the locators block for now.
		p.snapLocs, p.locOff = p.version, locs
		if locs += 8 * p.version; locs > r.end-r.pos {
			return fmt.Errorf("locators past the end of the file")
		}
	}
	insert(k)
	if r.err == nil && off != len(ids) {
		return fmt.Errorf("%d bytes of product ids left", len(ids)-off)
	}
	base := r.pos
	for k := range all {
		all[k].locOff += base
	}
	r.skip(locs)
	return r.err
}

// productsInParallel is the count of products from which a load fills
// the map on a second goroutine.
var productsInParallel = 1 << 16

// resetLoaded empties s after a snapshot failed to load into it.
func (s *State) resetLoaded() {
	fresh := NewState(s.shard, s.retention)
	fresh.seeds = s.seeds
	fresh.keysFrom, fresh.keepFresh = s.keysFrom, s.keepFresh
	*s = *fresh
}

// snapJob is a snapshot on its way to the disk.
type snapJob struct {
	c       *snapCapture
	durable chan bool // the flight holding c.loc: written (true) or failed
}

// snapDone is what a finished snapshot hands back to the actor.
type snapDone struct {
	store *settledStore // nil: not written
	c     *snapCapture
}

// snapper is the actor's snapshot state. Its fields are the actor
// goroutine's, but for done, which the writing goroutine sets.
type snapper struct {
	dir      string
	every    uint64
	interval time.Duration
	last     uint64    // State.entries at the last snapshot
	lastLoc  uint64    // locator of the last record located
	lastAt   time.Time // of the last snapshot (or of the start)
	busy     bool      // a snapshot is being written
	done     atomic.Pointer[snapDone]
	finished chan struct{} // closed when the busy snapshot is done
}

func newSnapper(cfg *Config, i int, entries uint64, loc uint64) *snapper {
	if cfg.SnapshotDir == nil {
		return nil
	}
	return &snapper{dir: cfg.SnapshotDir(i), every: uint64(cfg.SnapshotEntries), interval: cfg.SnapshotInterval,
		last: entries, lastAt: time.Now(), lastLoc: loc}
}

// maybeSnapshot is called as flight f is sealed, its records located: it
// starts a snapshot covering f if one is due and none is being written.
// Called from the actor goroutine.
func (a *actor) maybeSnapshot(f *flight) {
	sn := a.snap
	if sn == nil || len(f.recs) == 0 {
		return
	}
	sn.lastLoc = f.locs[len(f.recs)-1]
	st := a.state
	due := st.entries-sn.last >= sn.every || (st.entries > sn.last && time.Since(sn.lastAt) >= sn.interval)
	if !due || sn.busy || a.failed || !st.snapshotable() {
		return
	}
	t := time.Now()
	c := st.capture(sn.lastLoc, max(a.cfg.Clock(), st.lastAt), a.cfg.Shards)
	a.m.snapshots.pause.Observe(time.Since(t).Seconds())
	job := &snapJob{c: c, durable: make(chan bool, 1)}
	f.snapDurable = job.durable
	sn.busy, sn.last, sn.lastAt = true, st.entries, time.Now()
	sn.finished = make(chan struct{})
	go a.writeSnap(job, sn.finished)
}

// writeSnap writes job's snapshot and hands the result to the actor.
func (a *actor) writeSnap(job *snapJob, finished chan struct{}) {
	defer close(finished)
	t := time.Now()
	store, info, err := writeSnapshot(a.snap.dir, job.c, func() bool { return <-job.durable })
	a.m.snapshots.seconds.Observe(time.Since(t).Seconds())
	if store == nil {
		a.m.snapshots.failures.Inc()
		a.cfg.Logger.Error("snapshot not written; the journal holds everything, the next snapshot retries", "shard", a.id, "err", err)
	} else {
		// Written and durable, even if removing the older ones failed.
		a.m.snapshots.written.Inc()
		if err != nil {
			a.cfg.Logger.Error("snapshot written, but older snapshots not removed; the next snapshot retries", "shard", a.id, "path", info.Path, "err", err)
		} else {
			a.cfg.Logger.Info("snapshot written", "shard", a.id, "path", info.Path, "bytes", info.Bytes,
				"entries", job.c.entries, "duration", time.Since(t).Round(time.Millisecond).String())
		}
		a.archive()
	}
	a.snap.done.Store(&snapDone{store: store, c: job.c})
}

// adoptSnapshot takes up a finished snapshot: its run of settled
// reservations replaces the previous one, and the reservations it holds
// leave RAM. Called from the actor goroutine.
func (a *actor) adoptSnapshot() {
	sn := a.snap
	if sn == nil {
		return
	}
	d := sn.done.Swap(nil)
	if d == nil {
		return
	}
	sn.busy = false
	a.state.adopt(d.store, d.c)
}

// adopt takes up the end of the snapshot last captured: store, its run
// of settled reservations, or nil if it failed. The reservations it
// moved out of RAM leave the in-memory index; after a failure they go
// back to the list for the next snapshot.
func (s *State) adopt(store *settledStore, c *snapCapture) {
	if store == nil {
		s.fresh = append(s.sent, s.fresh...)
		s.sent = nil
		return
	}
	old := s.store
	s.store = store
	s.closeSpills()
	// The locators the snapshot holds leave RAM.
	for i := range c.products {
		cp := &c.products[i]
		p := cp.ptr
		moved := cp.p.version - p.snapLocs
		p.locs = slices.Clone(p.locs[moved:])
		p.snapLocs, p.locOff = cp.p.version, cp.off
	}
	for i := range s.sent {
		r := &s.sent[i]
		s.resv.del(s.hash(r.productID, r.id))
	}
	s.sent = nil
	old.close()
}

// finalSnapshot writes a snapshot at a graceful stop, once every flight is
// written, if the shard wrote anything since the last one. Called from the
// actor goroutine, last.
func (a *actor) finalSnapshot() {
	sn := a.snap
	if sn == nil {
		return
	}
	if sn.busy {
		<-sn.finished
		a.adoptSnapshot()
	}
	st := a.state
	if a.failed || a.writeFailed.Load() || st.entries == sn.last || !st.snapshotable() {
		st.store.close()
		return
	}
	c := st.capture(sn.lastLoc, max(a.cfg.Clock(), st.lastAt), a.cfg.Shards)
	job := &snapJob{c: c, durable: make(chan bool, 1)}
	job.durable <- true // every flight is written
	sn.busy, sn.finished = true, make(chan struct{})
	a.writeSnap(job, sn.finished)
	a.adoptSnapshot()
	st.store.close()
}

// loaded is what start-up built for one shard.
type loaded struct {
	st      *State
	j       Journal
	snapped uint64 // entries the newest snapshot covers (0: none)
	// loadedFrom is the entries the snapshot the load started from
	// covered (0: none): the replay applied the rest.
	loadedFrom uint64
	lastLoc    uint64 // locator of the last record of the journal
}

// loadShard builds shard i's state: from its newest valid snapshot and the
// journal after it, or, when full is set, snapshots are off or none is
// valid, from the whole journal.
func (e *Engine) loadShard(i int, open OpenJournal, full bool) (*loaded, error) {
	keysFrom := e.cfg.Clock() - int64(e.cfg.Retention)
	newState := func() *State {
		st := NewState(i, int64(e.cfg.Retention))
		st.keysFrom, st.keepFresh = keysFrom, e.cfg.SnapshotDir != nil
		return st
	}
	st := newState()
	var after uint64
	found := false
	if e.cfg.SnapshotDir != nil && !full {
		dir := e.cfg.SnapshotDir(i)
		removeTemps(dir)
		loc, ok, skipped, err := LoadSnapshot(dir, i, e.cfg.Shards, st)
		if err != nil {
			return nil, err
		}
		for _, s := range skipped {
			e.m.snapshots.skipped.Inc()
			e.cfg.Logger.Warn("snapshot skipped", "shard", i, "err", s)
		}
		after, found = loc, ok
		if !ok && len(skipped) > 0 {
			e.cfg.Logger.Warn("no valid snapshot: replaying the whole journal", "shard", i)
		}
	}
	ld := &loaded{st: st, snapped: st.entries, loadedFrom: st.entries}
	st.beginReplay(keysFrom)
	seen, spillFailed := false, false
	apply := replayer(st)
	replay := func(loc uint64, rec []byte) error {
		if found && loc <= after {
			seen = seen || loc == after
			return nil
		}
		ld.lastLoc = loc
		if err := apply(loc, rec); err != nil {
			return err
		}
		if len(st.fresh) >= freshReplayMax && !spillFailed && e.cfg.SnapshotDir != nil {
			// A long replay moves what it settled to a file on the way.
			if err := st.spill(e.cfg.SnapshotDir(i)); err != nil {
				spillFailed = true
				e.cfg.Logger.Error("settled reservations not spilled during the replay; they stay in RAM", "shard", i, "err", err)
			}
		}
		return nil
	}
	var j Journal
	var err error
	if found && e.cfg.OpenAfter != nil {
		j, err = e.cfg.OpenAfter(i, after, replay)
	} else {
		j, err = open(i, replay)
	}
	opened := err == nil // on error j may be a typed nil
	if err == nil && found && !seen {
		err = fmt.Errorf("the snapshot covers the journal up to %#x, which the journal does not hold", after)
	}
	if err == nil {
		err = st.endReplay()
	}
	if err != nil {
		if opened {
			j.Close()
		}
		st.store.close()
		st.closeSpills()
		if found && opened && !seen {
			// The snapshot is ahead of the journal: set it aside and try
			// the older ones, which may be ahead too.
			e.m.snapshots.skipped.Inc()
			e.cfg.Logger.Warn("snapshot ahead of the journal: trying an older one", "shard", i, "err", err)
			if err := e.setAside(i, after); err != nil {
				return nil, err
			}
			return e.loadShard(i, open, full)
		}
		if found {
			// The snapshot and the log disagree: trust the log.
			e.m.snapshots.skipped.Inc()
			e.cfg.Logger.Warn("snapshot does not fit the journal: replaying the whole journal", "shard", i, "err", err)
			return e.loadShard(i, open, true)
		}
		return nil, err
	}
	if found && ld.lastLoc == 0 {
		ld.lastLoc = after
	}
	ld.j = j
	if err := e.settleFresh(i, ld); err != nil {
		j.Close()
		st.store.close()
		st.closeSpills()
		return nil, err
	}
	return ld, nil
}

// setAside renames shard i's snapshot covering the journal up to after,
// which the journal does not hold, to <name>.ahead, out of the snapshots
// start-up reads. Such a snapshot covers records that never became
// durable (a start-up snapshot of a tail lost to a power cut): left in
// place, it would be trusted again once the journal grows past its
// locator with other records.
//
// The rename is made durable before the start goes on, and a failure
// stops the start: a snapshot left in place would cost the writes
// acknowledged after it at a later start.
func (e *Engine) setAside(i int, after uint64) error {
	dir := e.cfg.SnapshotDir(i)
	path := filepath.Join(dir, snapName(after))
	err := os.Rename(path, path+snapAheadSuffix)
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("a snapshot ahead of the journal could not be set aside (move %s out of %s, then start again): %w", path, dir, err)
	}
	e.cfg.Logger.Warn("snapshot ahead of the journal set aside", "shard", i, "path", path+snapAheadSuffix)
	return nil
}

// freshIndexMax is the most reservations settled in the replayed log that
// start-up indexes in RAM (16-32 bytes each, plus their ids in
// State.fresh until the next snapshot); past it, it writes a snapshot
// before the shard starts, so that a long log without one (a first start
// with snapshots, or after they were removed) never holds every
// reservation ever made in RAM.
var freshIndexMax = 1 << 16

// freshReplayMax bounds the settled reservations a replay holds in RAM
// with their ids (about 60 B each, 60 MB at most): past it, it sorts them
// into a run in an unnamed file (State.spill) and goes on. The snapshot
// at the end of the replay merges the runs; the replay writes no other.
// An unnamed file needs no cleaning after a crash.
var freshReplayMax = 1 << 20

// spill moves the reservations of fresh, sorted, to a new unnamed file in
// dir, for the next snapshot to merge.
func (s *State) spill(dir string) error {
	if err := MakeDir(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "spill-*"+snapSuffix+snapTmpSuffix)
	if err != nil {
		return err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return err
	}
	w := &snapWriter{bw: bufio.NewWriterSize(f, 256<<10)}
	for _, k := range runOrder(s.fresh) {
		w.settled(&s.fresh[k.i])
	}
	if err := w.bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("spill settled reservations: %w", err)
	}
	s.spills = append(s.spills, &settledStore{f: f, end: w.n, n: len(s.fresh)})
	// The next ones fill the same array.
	clear(s.fresh)
	s.fresh = s.fresh[:0]
	return nil
}

// unspill moves the spilled reservations back to fresh, after the
// snapshot that was to merge them failed.
func (s *State) unspill() error {
	var back []settledRec
	for _, sp := range s.spills {
		if err := sp.each(func(r *settledRec) error { back = append(back, *r); return nil }); err != nil {
			return err
		}
	}
	s.closeSpills()
	s.fresh = append(back, s.fresh...)
	return nil
}

func (s *State) closeSpills() {
	for _, sp := range s.spills {
		sp.close()
	}
	s.spills = nil
}

// snapshotNow writes a snapshot of st, covering the journal up to loc, and
// adopts it; called at the end of the replay. The records it covers were
// read from the journal's files; should they not survive (a tail not yet
// fsynced and a power cut), start-up finds the snapshot ahead of the
// journal and does not trust it.
func (e *Engine) snapshotNow(i int, st *State, loc uint64) error {
	c := st.capture(loc, max(e.cfg.Clock(), st.lastAt), e.cfg.Shards)
	store, info, err := writeSnapshot(e.cfg.SnapshotDir(i), c, func() bool { return true })
	if store == nil {
		st.adopt(nil, nil)
		return fmt.Errorf("snapshot after the replay: %w", err)
	}
	if err != nil {
		// The snapshot is durable: take it up, as the live path does.
		e.cfg.Logger.Error("snapshot written after the replay, but older snapshots not removed; the next snapshot retries", "shard", i, "path", info.Path, "err", err)
	} else {
		e.cfg.Logger.Info("snapshot written after the replay", "shard", i, "path", info.Path, "bytes", info.Bytes)
	}
	st.adopt(store, c)
	return nil
}

// settleFresh makes the reservations the replay of ld settled findable:
// in a snapshot written now if there are many, else in the in-memory index.
func (e *Engine) settleFresh(i int, ld *loaded) error {
	st := ld.st
	if len(st.fresh) > freshIndexMax || len(st.spills) > 0 {
		err := e.snapshotNow(i, st, ld.lastLoc)
		if err == nil {
			ld.snapped = st.entries
			return nil
		}
		e.m.snapshots.failures.Inc()
		e.cfg.Logger.Error("snapshot after the replay not written; its settled reservations stay in RAM", "shard", i, "err", err)
		if err := st.unspill(); err != nil {
			return err
		}
	}
	return st.indexFresh()
}

// indexFresh puts the reservations of fresh into the in-memory index. A
// reservation settled twice, or settled and active, is a corrupt log.
func (s *State) indexFresh() error {
	for i := range s.fresh {
		r := &s.fresh[i]
		if !s.resv.put(s.hash(r.productID, r.id), r.record()) {
			return fmt.Errorf("reservation %q of product %q reserved twice", r.id, r.productID)
		}
	}
	return nil
}

// locAt returns the journal locator of version v (1..p.version) of p.
func (s *State) locAt(p *product, v int64) (uint64, *Error) {
	locs, err := s.locRange(p, v-1, v)
	if err != nil {
		return 0, err
	}
	return locs[0], nil
}

// locRange returns the journal locators of the versions from+1 to to of
// p: from the snapshot file for those it holds (one pread), then from
// RAM. A failed read answers unavailable.
func (s *State) locRange(p *product, from, to int64) ([]uint64, *Error) {
	out := make([]uint64, 0, to-from)
	if from < p.snapLocs {
		end := min(to, p.snapLocs)
		buf := make([]byte, 8*(end-from))
		if _, err := s.store.f.ReadAt(buf, p.locOff+8*from); err != nil {
			return nil, errorf(CodeUnavailable, "read locators from the snapshot: %v", err)
		}
		for i := 0; i < len(buf); i += 8 {
			out = append(out, binary.LittleEndian.Uint64(buf[i:]))
		}
		from = end
	}
	if from < to {
		out = append(out, p.locs[from-p.snapLocs:to-p.snapLocs]...)
	}
	return out, nil
}
