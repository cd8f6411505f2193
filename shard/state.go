package shard

import (
	"fmt"
	"hash/maphash"
	"strings"
	"unsafe"
)

// State is the in-memory state of one shard: the balances of its products,
// its reservations and its idempotency keys. It is derived entirely from the
// shard's ledger entries: apply is the only method that changes it (decide
// only fills caches: the product and the keys it looked up last; expire and
// nextExpiry only move the due holds of parked products out of the expiry
// heap and back), and live processing and WAL replay both go through apply.
//
// State does no I/O and reads no clock: callers pass time in. It is owned by
// one goroutine (the shard actor, or the replay before the actor starts).
type State struct {
	shard     int
	retention int64 // idempotency retention window, ns
	seeds     [2]maphash.Seed

	products map[string]*product
	// resv indexes every reservation ever made in the shard, by
	// (product, reservation id): reservation ids are never reused. While
	// the log is replayed it holds the active ones only (see settled).
	resv  table[resvRecord]
	holds slab    // active holds, indexed by resvRecord.settle
	free  []int32 // free slab slots
	heap  expiryHeap
	// asideHolds holds the due holds of parked products, out of the heap
	// until their product is unparked (see sortDue). A hold there has
	// heapIdx -1-i, i its place in its product's group.
	asideHolds aside[int32]
	idem       table[idemRecord]
	ages       idemAges

	entries uint64 // entries applied
	// ids is the counter in entry ids: entries applied, plus the entries of
	// every tx part prepared (counted again when committed), so that an id
	// is never given twice and replay gives the same ones.
	ids    uint64
	lastAt int64 // largest created_at applied or prepared

	// txs are the parts of cross-shard atomic batches prepared here and not
	// yet resolved (tx.go); parked maps each of their products to its part.
	txs    map[uint64]*txPart
	parked map[string]*txPart
	// committing is set while commitTx applies a part's entries: they were
	// written when prepared, so they are checked against their product's
	// time, not the shard's.
	committing bool
	// collect is the part whose entries the replay is reading; outcomes are
	// the txs the replayed log resolved (true: committed), and maxTx the
	// largest tx it names: the engine resolves what is left in doubt.
	collect  *txPart
	outcomes map[uint64]bool
	maxTx    uint64
	cont     continuation
	// keysFrom is the oldest created_at whose idempotency key apply keeps:
	// replay sets it to the start of the retention window, so that keys
	// already out of it cost neither time nor memory; live it is 0.
	keysFrom int64
	// replaying is set while the log is replayed. A key can then appear
	// twice: forgotten after the window, then used again (live, decide
	// refuses a key it remembers). With the wall clock stepped back, both
	// uses may fall inside the window computed at start-up; the later wins.
	replaying bool
	// loading collects the idempotency keys of the replay, in log order,
	// for endReplay to index in bulk: nothing reads the index while the log
	// is replayed, and one bulk load costs a fraction of the same inserts
	// spread over the replay (see table.load).
	loading tableBatch[idemRecord]
	// settled collects the reservations the replay settles, for endReplay
	// to index in bulk with the active ones: while replaying, resv holds
	// only the active reservations, which is all a valid log reads (a COMMIT
	// or RELEASE settles an active one), so it stays small and in cache.
	settled tableBatch[resvRecord]
	// onApply, if set, sees every entry apply added, right after: the
	// offline ledger readers (ledger.go) use it; the service never sets it.
	onApply func(e *Entry) error
	// store holds the reservations settled before the snapshot this state
	// was loaded from or last wrote (settled.go); nil when none. It is
	// immutable: reads of it are deterministic, like those of a map.
	store *settledStore
	// fresh lists the reservations settled since store was written, with
	// their ids, for the next snapshot to move out of RAM; kept only when
	// keepFresh (snapshots are on).
	fresh     []settledRec
	sent      []settledRec // fresh when the snapshot being written was captured
	keepFresh bool
	// spills are runs of reservations a long replay settled, moved from
	// fresh to unnamed files (State.spill) until the snapshot at its end
	// merges them.
	spills []*settledStore
	// recentTx are the outcomes of the last txs resolved here, a ring from
	// recentNext (snapshot.go); snapMaxTx is the largest tx named by the
	// snapshot this state was loaded from.
	recentTx   []txOutcome
	recentNext int
	snapMaxTx  uint64
	// warm receives the loads of table.touch, so that they are not
	// optimized away; its value means nothing.
	warm uint64
	// last is the product looked up last: runs of entries of one product
	// are the common case (a hot product live, a product's history in a
	// replay), and apply looks up again what decide just did.
	last struct {
		id  string // views buf
		p   *product
		buf []byte
	}
	// decided holds the keys decide hashed last, so that apply of the
	// entry decided does not hash them again. It keeps one request's
	// strings alive until the next decide.
	decided struct {
		product, idem, resv string
		ik, rk              hkey
	}
}

// product holds the balances of one product. Its id is the key of
// State.products (and is kept by its holds), so it is not stored again.
type product struct {
	id       string // its key in State.products
	onHand   int64
	reserved int64
	// version equals snapLocs+len(locs) on the live state; it is kept
	// apart because a fork (State.fork) copies a product without its
	// locators, which a hot product has millions of.
	version   int64
	updatedAt int64
	// The journal locators of the product's entries: the per-product index
	// that lets history and idempotent replays read entries without
	// scanning the log. Those of versions 1..snapLocs are in the snapshot
	// file of State.store, 8 bytes each from offset locOff (read with one
	// pread per page); locs[i] is that of version snapLocs+1+i, in RAM
	// until the next snapshot.
	snapLocs int64
	locOff   int64
	locs     []uint64
}

func (p *product) stock(id string) Stock {
	return Stock{ProductID: id, OnHand: p.onHand, Reserved: p.reserved, Version: p.version, UpdatedAt: p.updatedAt}
}

// hkey is a 128-bit hash of a (product id, other id) pair from two
// independently seeded hashes: with random per-process seeds a collision is
// out of reach of any client, and the maps hold no pointers for the GC to scan.
//
// It is a struct, not an array: Go passes structs of this size in registers
// and arrays through memory, which cost every table call a stack round trip.
type hkey struct{ h0, h1 uint64 }

// resvRecord is the index entry of one reservation (16 bytes).
type resvRecord struct {
	meta   uint64 // version of the RESERVE entry << 3 | ReservationState
	settle int64  // active: slot in State.holds; settled: version of the settling entry
}

func (r resvRecord) state() ReservationState { return ReservationState(r.meta & 7) }
func (r resvRecord) reserveVersion() int64   { return int64(r.meta >> 3) }

// hold is an active reservation.
type hold struct {
	productID string
	id        string
	qty       int64
	expiresAt int64
	version   int64 // of its RESERVE entry, for snapshots
	heapIdx   int32 // place in State.heap; -1-i when set aside (State.asideHolds)
}

// idemRecord remembers the request an idempotency key applied (16 bytes).
type idemRecord struct {
	fp      uint64
	version int64 // version of the request's first entry
}

// continuation is what a partial COMMIT leaves for the RELEASE that must
// follow it at once.
type continuation struct {
	pending bool
	version int64
	rest    int64
	loc     uint64 // the COMMIT's journal locator, for a replay that ends before the RELEASE
}

// NewState returns the empty state of shard number shard, remembering
// idempotency keys for retention nanoseconds.
func NewState(shard int, retention int64) *State {
	s := newState(shard, retention, [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()})
	s.txs = make(map[uint64]*txPart)
	s.parked = make(map[string]*txPart)
	s.outcomes = make(map[uint64]bool)
	return s
}

func newState(shard int, retention int64, seeds [2]maphash.Seed) *State {
	return newStateParts(shard, retention, seeds, tablePartBits)
}

// newStateParts returns an empty state whose indexes have 2^partBits parts.
func newStateParts(shard int, retention int64, seeds [2]maphash.Seed, partBits int) *State {
	return &State{
		shard:     shard,
		retention: retention,
		seeds:     seeds,
		ages:      idemAges{span: retention / 64},
		products:  make(map[string]*product),
		resv:      newTable[resvRecord](partBits),
		idem:      newTable[idemRecord](partBits),
	}
}

// idPair is what hash hashes: the pair, not a concatenation, so that no two
// pairs share an input.
type idPair struct{ a, b string }

func (s *State) hash(a, b string) hkey {
	p := idPair{a, b}
	// The low bit set keeps the zero key free to mark empty table slots.
	return hkey{maphash.Comparable(s.seeds[0], p) | 1, maphash.Comparable(s.seeds[1], p)}
}

// Stock returns the balances of a product, and false if it has no entries.
func (s *State) Stock(productID string) (Stock, bool) {
	p := s.products[productID]
	if p == nil {
		return Stock{}, false
	}
	return p.stock(productID), true
}

// Products returns how many products have entries.
func (s *State) Products() int { return len(s.products) }

// ActiveHolds returns how many reservations are active.
func (s *State) ActiveHolds() int { return len(s.heap) + s.asideHolds.n }

// Entries returns how many entries have been applied.
func (s *State) Entries() uint64 { return s.entries }

// outcome is what decide found for one op that is not refused.
type outcome struct {
	// replayOf is the first version of the original entries when the op is
	// an idempotent replay; 0 for a new request.
	replayOf int64
}

// decide computes the entries that op appends at time now, appending them to
// out, or the coded refusal. It does not change s, but for its caches of
// what it looked up last. Checks run in API.md's order: idempotency,
// expected version, reservation identity, stock. op must have passed
// Validate.
func (s *State) decide(op *Op, now int64, out []Entry) ([]Entry, outcome, *Error) {
	fp := op.fingerprint()
	ik := s.hash(op.ProductID, op.IdempotencyKey)
	var rk hkey
	if op.ReservationID != "" {
		// Both lookups are likely cache misses: start the second before
		// the first is done.
		rk = s.hash(op.ProductID, op.ReservationID)
		s.warm += s.resv.touch(rk)
	}
	d := &s.decided
	d.product, d.idem, d.resv, d.ik, d.rk = op.ProductID, op.IdempotencyKey, op.ReservationID, ik, rk
	if r, ok := s.idem.get(ik); ok {
		if r.fp != fp {
			return out, outcome{}, errorf(CodeIdempotencyKeyReused,
				"idempotency key %q was used for a different request on this product", op.IdempotencyKey)
		}
		return out, outcome{replayOf: r.version}, nil
	}

	var onHand, reserved, version int64
	if p := s.product(op.ProductID); p != nil {
		onHand, reserved, version = p.onHand, p.reserved, p.version
	}
	if op.ExpectedVersion != NoVersion && op.ExpectedVersion != version {
		e := errorf(CodeVersionConflict, "expected version %d, product is at version %d", op.ExpectedVersion, version)
		e.CurrentVersion = version
		return out, outcome{}, e
	}

	var h *hold
	switch op.Type {
	case TypeReserve:
		_, ok := s.resv.get(rk)
		if !ok {
			var err *Error
			if _, ok, err = s.storedResv(op.ProductID, op.ReservationID); err != nil {
				return out, outcome{}, err
			}
		}
		if ok {
			return out, outcome{}, errorf(CodeReservationExists,
				"reservation %q already exists on this product", op.ReservationID)
		}
	case TypeCommit, TypeRelease:
		r, ok := s.resv.get(rk)
		if !ok {
			var err *Error
			if r, ok, err = s.storedResv(op.ProductID, op.ReservationID); err != nil {
				return out, outcome{}, err
			}
		}
		st := r.state()
		if !ok {
			st = StateUnknown
		}
		if st != StateActive {
			e := errorf(CodeReservationNotActive, "reservation %q is %s", op.ReservationID, st)
			e.State = st
			return out, outcome{}, e
		}
		h = s.holds.at(int32(r.settle))
	}

	available := onHand - reserved
	q := op.Quantity
	switch op.Type {
	case TypeAdd, TypeReturn:
		if onHand+q > StockMax {
			return out, outcome{}, errorf(CodeLimitExceeded,
				"on_hand would be %d, above the limit of %d", onHand+q, int64(StockMax))
		}
	case TypeRemove, TypeReserve:
		if available < q && !skipStockCheck {
			e := errorf(CodeInsufficientStock, "requested %d, available %d", q, available)
			e.Available = available
			return out, outcome{}, e
		}
	case TypeCommit:
		if q == 0 {
			q = h.qty
		}
		if q > h.qty {
			e := errorf(CodeCommitExceedsHold, "commit of %d exceeds the %d held", q, h.qty)
			e.Held = h.qty
			return out, outcome{}, e
		}
	case TypeRelease:
		q = h.qty
	}

	e := Entry{
		ProductID:      op.ProductID,
		Type:           op.Type,
		Quantity:       q,
		OnHand:         onHand,
		Reserved:       reserved,
		Version:        version + 1,
		ReservationID:  op.ReservationID,
		Reason:         op.Reason,
		CreatedBy:      op.Actor,
		CreatedAt:      now,
		IdempotencyKey: op.IdempotencyKey,
		Fingerprint:    fp,
	}
	e.Delta, e.OnHand, e.Reserved = effect(op.Type, q, onHand, reserved)
	if op.Type == TypeReserve {
		e.ExpiresAt = now + op.TTLSeconds*1e9
	}
	e.ID = makeID(now, s.shard, s.ids)
	out = append(out, e)
	if op.Type == TypeCommit && q < h.qty {
		rest := Entry{
			ProductID:     op.ProductID,
			Type:          TypeRelease,
			Quantity:      h.qty - q,
			Version:       version + 2,
			ReservationID: op.ReservationID,
			Reason:        op.Reason,
			CreatedBy:     op.Actor,
			CreatedAt:     now,
			Origin:        OriginContinuation,
		}
		rest.Delta, rest.OnHand, rest.Reserved = effect(TypeRelease, rest.Quantity, e.OnHand, e.Reserved)
		rest.ID = makeID(now, s.shard, s.ids+1)
		out = append(out, rest)
	}
	return out, outcome{}, nil
}

// idemKey and resvKey return the index keys of e's idempotency key and
// reservation, taken from decide when its strings are e's. Those strings
// come from requests and never change: decide does not run during a
// replay, whose entries view reused records.
func (s *State) idemKey(e *Entry) hkey {
	if d := &s.decided; !s.replaying && d.idem == e.IdempotencyKey && d.product == e.ProductID {
		return d.ik
	}
	return s.hash(e.ProductID, e.IdempotencyKey)
}

func (s *State) resvKey(e *Entry) hkey {
	if d := &s.decided; !s.replaying && d.resv == e.ReservationID && d.product == e.ProductID && d.resv != "" {
		return d.rk
	}
	return s.hash(e.ProductID, e.ReservationID)
}

// product returns the product with id, or nil.
func (s *State) product(id string) *product {
	if s.last.p != nil && s.last.id == id {
		return s.last.p
	}
	p := s.products[id]
	if p != nil {
		s.remember(id, p)
	}
	return p
}

// remember makes p the last product looked up. Its id is copied into a
// buffer of s, since id may view a record that the replay reuses; the copy
// is overwritten only here, when nothing refers to it any more.
func (s *State) remember(id string, p *product) {
	s.last.buf = append(s.last.buf[:0], id...)
	s.last.id, s.last.p = unsafe.String(unsafe.SliceData(s.last.buf), len(s.last.buf)), p
}

// effect returns an entry's delta on available and the balances after it.
func effect(t Type, q, onHand, reserved int64) (delta, onHandAfter, reservedAfter int64) {
	switch t {
	case TypeAdd, TypeReturn:
		return q, onHand + q, reserved
	case TypeRemove:
		return -q, onHand - q, reserved
	case TypeReserve:
		return -q, onHand, reserved + q
	case TypeCommit:
		return 0, onHand - q, reserved - q
	case TypeRelease:
		return q, onHand, reserved - q
	}
	panic(fmt.Sprintf("shard: effect of unknown type %d", t))
}

// expire computes the RELEASE of the earliest active hold that is due (its
// deadline at or before now) and whose product skip does not report,
// appending it to out; ok is false when there is none. skip reports the
// products whose holds must wait (an atomic batch parked them): their due
// holds are set aside, out of the heap, and expire in deadline order with
// the others once skip no longer reports their product (see sortDue).
func (s *State) expire(now int64, skip func(productID string) bool, out []Entry) ([]Entry, bool) {
	s.sortDue(now, skip)
	if len(s.heap) == 0 {
		return out, false
	}
	h := s.holds.at(s.heap[0])
	if h.expiresAt > now {
		return out, false
	}
	p := s.products[h.productID]
	e := Entry{
		ProductID:     h.productID,
		Type:          TypeRelease,
		Quantity:      h.qty,
		Version:       p.version + 1,
		ReservationID: h.id,
		Reason:        ReasonExpired,
		CreatedBy:     ActorSystem,
		CreatedAt:     now,
		Origin:        OriginExpiry,
	}
	e.Delta, e.OnHand, e.Reserved = effect(TypeRelease, h.qty, p.onHand, p.reserved)
	e.ID = makeID(now, s.shard, s.ids)
	return append(out, e), true
}

// sortDue readies the heap for expire at now: it puts back the holds set
// aside for products that skip no longer reports, then sets aside every
// due hold on top of the heap whose product skip reports, so that the top
// of the heap is the earliest hold that expire may release. Each hold of a
// parked product is set aside and put back at most once per parking, in
// O(log n) each; skip is called once per group set aside and per due hold
// set aside. It moves holds between the heap and asideHolds, which changes
// no state that entries derive.
func (s *State) sortDue(now int64, skip func(productID string) bool) {
	s.asideHolds.take(skip, func(slot int32) { s.heap.push(&s.holds, slot) })
	if skip == nil {
		return
	}
	for len(s.heap) > 0 {
		slot := s.heap[0]
		h := s.holds.at(slot)
		if h.expiresAt > now || !skip(h.productID) {
			return
		}
		s.heap.remove(&s.holds, 0)
		h.heapIdx = int32(-1 - s.asideHolds.add(h.productID, slot))
	}
}

// NextDeadline returns the earliest expiry of an active hold, and false if
// there is none.
func (s *State) NextDeadline() (int64, bool) {
	at, ok := int64(0), false
	if len(s.heap) > 0 {
		at, ok = s.holds.at(s.heap[0]).expiresAt, true
	}
	for _, g := range s.asideHolds.groups {
		for _, slot := range g {
			if h := s.holds.at(slot); !ok || h.expiresAt < at {
				at, ok = h.expiresAt, true
			}
		}
	}
	return at, ok
}

// nextExpiry returns the deadline of the earliest active hold that expire
// may release at now or later, given the products skip reports (see
// sortDue): due holds of those products do not count, since they wait for
// their product, not for time.
func (s *State) nextExpiry(now int64, skip func(productID string) bool) (int64, bool) {
	s.sortDue(now, skip)
	if len(s.heap) == 0 {
		return 0, false
	}
	return s.holds.at(s.heap[0]).expiresAt, true
}

// apply adds one entry to the state; loc is where the journal stores it. It
// is the only mutation of State. It checks every invariant the entry must
// keep and returns an error when one fails: corrupt input during replay, a
// bug during live processing. After an error the State must be discarded
// (the map checks are made by inserting, to spare a lookup on the hot path).
func (s *State) apply(e *Entry, loc uint64) error {
	p := s.product(e.ProductID)
	k, r, err := s.check(e, p)
	if err != nil {
		return fmt.Errorf("entry %s of product %q version %d: %w", e.ID, e.ProductID, e.Version, err)
	}
	if s.replaying {
		// The replay decodes entries in place: copy the strings kept (the
		// id of a new product, the ids of a hold).
		if p == nil {
			e.ProductID = strings.Clone(e.ProductID)
		}
		if e.Type == TypeReserve {
			e.ReservationID = strings.Clone(e.ReservationID)
		}
	}
	switch e.Type {
	case TypeReserve:
		pid := e.ProductID
		if p != nil {
			pid = p.id // one copy of the id for all the product's holds
		}
		slot := s.allocHold(hold{productID: pid, id: e.ReservationID, qty: e.Quantity, expiresAt: e.ExpiresAt, version: e.Version})
		if !s.resv.put(k, resvRecord{meta: uint64(e.Version)<<3 | uint64(StateActive), settle: int64(slot)}) {
			return fmt.Errorf("entry %s: reservation %q reserved twice", e.ID, e.ReservationID)
		}
	case TypeCommit:
		if rest := s.holds.at(int32(r.settle)).qty - e.Quantity; rest > 0 {
			s.cont = continuation{pending: true, version: e.Version + 1, rest: rest, loc: loc}
		}
		s.settle(k, r, StateCommitted, e.Version)
	case TypeRelease:
		switch e.Origin {
		case OriginContinuation:
			s.cont = continuation{}
		case OriginExpiry:
			s.settle(k, r, StateExpired, e.Version)
		default:
			s.settle(k, r, StateReleased, e.Version)
		}
	}
	if e.IdempotencyKey != "" && e.CreatedAt >= s.keysFrom {
		ik := s.idemKey(e)
		rec := idemRecord{fp: e.Fingerprint, version: e.Version}
		if s.replaying {
			s.loading.add(ik, rec)
		} else if !s.idem.put(ik, rec) {
			return fmt.Errorf("entry %s: idempotency key %q applied twice", e.ID, e.IdempotencyKey)
		}
		k := agedKey{k: ik, version: e.Version, fp: e.Fingerprint, product: e.ProductID, key: e.IdempotencyKey}
		if s.replaying {
			k.product, k.key = strings.Clone(k.product), strings.Clone(k.key)
		}
		s.ages.push(k, e.CreatedAt)
	}
	if p == nil {
		p = &product{id: e.ProductID}
		s.products[e.ProductID] = p
		s.remember(e.ProductID, p)
	}
	p.onHand, p.reserved, p.version, p.updatedAt = e.OnHand, e.Reserved, e.Version, e.CreatedAt
	p.locs = append(p.locs, loc)
	s.entries++
	s.ids++
	s.lastAt = max(s.lastAt, e.CreatedAt)
	if s.onApply != nil {
		return s.onApply(e)
	}
	return nil
}

// beginReplay readies s for its log, applied from the first entry. Until
// endReplay, apply copies the strings it keeps, so that entries may point
// into a buffer reused after the call; idempotency keys applied before
// keysFrom (the start of the retention window) are not kept, and the others
// are indexed by endReplay, as are the reservations settled.
func (s *State) beginReplay(keysFrom int64) {
	s.keysFrom, s.replaying = keysFrom, true
}

// endReplay indexes the idempotency keys the replay kept and every
// reservation, and readies s for live requests. Two corruptions are found
// only here, and are errors: a log that ends with a partial COMMIT without
// the RELEASE of the rest (the two are written in one block, so no crash
// leaves one without the other; live, the next entry would fail check), and
// a reservation id reserved twice (settled, then reserved again).
func (s *State) endReplay() error {
	if s.collect != nil {
		return fmt.Errorf("the log ends inside the entries prepared by tx %d", s.collect.tx)
	}
	if c := &s.cont; c.pending {
		return fmt.Errorf("record at %#x: the log ends with a partial COMMIT (version %d of product %q) "+
			"without the RELEASE of the %d it leaves held, which is written in the same block: "+
			"the log was cut inside a block or is corrupt", c.loc, c.version-1, s.productAt(c.version-1, c.loc), c.rest)
	}
	s.idem.load(&s.loading, nil)
	if s.keepFresh {
		// The reservations the replay settled are in s.fresh: the caller
		// moves them to a snapshot or indexes them (indexFresh).
		s.keysFrom, s.replaying = 0, false
		return nil
	}
	s.resv.each(func(k hkey, r resvRecord) { s.settled.add(k, r) })
	s.resv = newTable[resvRecord](tablePartBits)
	var err error
	s.resv.load(&s.settled, func(_ hkey, old, new resvRecord) {
		if err == nil {
			err = fmt.Errorf("one reservation reserved twice on a product, by its entries of versions %d and %d",
				old.reserveVersion(), new.reserveVersion())
		}
	})
	s.keysFrom, s.replaying = 0, false
	return err
}

// productAt returns the id of the product whose entry of version v is at
// journal locator loc, or "" (for an error message: it scans every product).
func (s *State) productAt(v int64, loc uint64) string {
	for id, p := range s.products {
		if l, err := s.locAt(p, v); p.version >= v && v >= 1 && err == nil && l == loc {
			return id
		}
	}
	return ""
}

// check returns why e cannot follow the current state of its product p, or
// nil; for a RESERVE, COMMIT or RELEASE it also returns the reservation's key
// and, for the last two, its record.
func (s *State) check(e *Entry, p *product) (hkey, resvRecord, error) {
	var k hkey
	var r resvRecord
	if e.Type == 0 || e.Type >= typeEnd || e.Origin >= originEnd {
		return k, r, fmt.Errorf("unknown type %d or origin %d", e.Type, e.Origin)
	}
	if e.Quantity < 1 || e.Quantity > StockMax {
		return k, r, fmt.Errorf("quantity %d out of range", e.Quantity)
	}
	if s.cont.pending != (e.Origin == OriginContinuation) {
		return k, r, fmt.Errorf("partial COMMIT and its RELEASE are not adjacent")
	}
	var onHand, reserved, version int64
	if p != nil {
		onHand, reserved, version = p.onHand, p.reserved, p.version
	}
	if e.Version != version+1 {
		return k, r, fmt.Errorf("version gap: product is at version %d", version)
	}
	delta, wantOnHand, wantReserved := effect(e.Type, e.Quantity, onHand, reserved)
	if e.Delta != delta || e.OnHand != wantOnHand || e.Reserved != wantReserved {
		return k, r, fmt.Errorf("balances do not add up: got delta %d on_hand %d reserved %d, want %d %d %d",
			e.Delta, e.OnHand, e.Reserved, delta, wantOnHand, wantReserved)
	}
	if e.Reserved < 0 || (e.OnHand-e.Reserved < 0 && !skipStockCheck) || e.OnHand > StockMax {
		return k, r, fmt.Errorf("balance out of range: on_hand %d reserved %d", e.OnHand, e.Reserved)
	}
	switch {
	case s.committing:
		// Written when prepared, before entries applied since.
		if p != nil && e.CreatedAt < p.updatedAt {
			return k, r, fmt.Errorf("created_at %d before the product's last %d", e.CreatedAt, p.updatedAt)
		}
	case e.CreatedAt < s.lastAt:
		return k, r, fmt.Errorf("created_at %d before the shard's last %d", e.CreatedAt, s.lastAt)
	case s.isParked(e.ProductID):
		return k, r, fmt.Errorf("the product is held by tx %d, which is not resolved", s.parked[e.ProductID].tx)
	}
	if e.IdempotencyKey != "" && (e.Origin != OriginRequest || e.Fingerprint == 0) {
		return k, r, fmt.Errorf("idempotency key on an entry the service wrote")
	}
	switch e.Type {
	case TypeReserve:
		if e.ExpiresAt <= e.CreatedAt {
			return k, r, fmt.Errorf("hold expires at %d, not after its creation", e.ExpiresAt)
		}
		k = s.resvKey(e)
	case TypeCommit, TypeRelease:
		if e.Origin == OriginContinuation {
			if e.Type != TypeRelease || e.Version != s.cont.version || e.Quantity != s.cont.rest {
				return k, r, fmt.Errorf("RELEASE after a partial COMMIT does not release the rest")
			}
			break
		}
		if e.Type == TypeCommit && e.Origin != OriginRequest {
			return k, r, fmt.Errorf("COMMIT with origin %d", e.Origin)
		}
		k = s.resvKey(e)
		var ok bool
		if r, ok = s.resv.get(k); !ok || r.state() != StateActive {
			return k, r, fmt.Errorf("%s of reservation %q that is not active", e.Type, e.ReservationID)
		}
		held := s.holds.at(int32(r.settle)).qty
		if e.Quantity > held || (e.Type == TypeRelease && e.Quantity != held) {
			return k, r, fmt.Errorf("%s of %d from a hold of %d", e.Type, e.Quantity, held)
		}
	}
	return k, r, nil
}

func (s *State) allocHold(h hold) int32 {
	var slot int32
	if n := len(s.free); n > 0 {
		slot = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		slot = s.holds.grow()
	}
	*s.holds.at(slot) = h
	s.heap.push(&s.holds, slot)
	return slot
}

// settle ends the active hold of record r under key k.
func (s *State) settle(k hkey, r resvRecord, st ReservationState, version int64) {
	slot := int32(r.settle)
	if h := s.holds.at(slot); s.keepFresh {
		s.fresh = append(s.fresh, settledRec{productID: h.productID, id: h.id,
			meta: uint64(r.reserveVersion())<<3 | uint64(st), settle: version})
	}
	if h := s.holds.at(slot); h.heapIdx >= 0 {
		s.heap.remove(&s.holds, int(h.heapIdx))
	} else {
		// Set aside: an atomic batch that parked the product settles it.
		i := int(-1 - h.heapIdx)
		if moved, ok := s.asideHolds.remove(h.productID, i); ok {
			s.holds.at(moved).heapIdx = int32(-1 - i)
		}
	}
	*s.holds.at(slot) = hold{}
	s.free = append(s.free, slot)
	rec := resvRecord{meta: uint64(r.reserveVersion())<<3 | uint64(st), settle: version}
	if s.replaying {
		s.resv.del(k)
		if !s.keepFresh { // else indexed from fresh, or moved to a snapshot
			s.settled.add(k, rec)
		}
		return
	}
	s.resv.put(k, rec)
}

// forget drops idempotency keys applied before now minus the retention
// window (give or take a 64th of it, see idemAges), at most n of them; it
// returns how many it dropped.
func (s *State) forget(now int64, n int) int {
	return s.ages.popBefore(now-s.retention, n, func(a agedKey) {
		if r, ok := s.idem.get(a.k); ok && r.version == a.version {
			s.idem.del(a.k)
		}
	})
}

// reservation returns the index record of a reservation.
func (s *State) reservation(productID, reservationID string) (resvRecord, bool, *Error) {
	if r, ok := s.resv.get(s.hash(productID, reservationID)); ok {
		return r, true, nil
	}
	return s.storedResv(productID, reservationID)
}

// storedResv looks a reservation up among those settled before the last
// snapshot (settled.go). A failed read of the snapshot file answers
// unavailable: it is the disk's fault, not the request's.
func (s *State) storedResv(productID, reservationID string) (resvRecord, bool, *Error) {
	r, ok, err := s.store.get(productID, reservationID)
	if err != nil {
		return r, false, errorf(CodeUnavailable, "read settled reservations: %v", err)
	}
	return r, ok, nil
}

// fork returns a scratch copy of the part of s that ops read, so that an
// atomic group can be decided and applied in full before the real state is
// touched. Journal locators are not copied.
func (s *State) fork(ops []Op) *State {
	f := newStateParts(s.shard, s.retention, s.seeds, 0)
	f.entries, f.ids, f.lastAt = s.entries, s.ids, s.lastAt
	f.store = s.store
	for i := range ops {
		op := &ops[i]
		if p := s.products[op.ProductID]; p != nil && f.products[op.ProductID] == nil {
			c := *p
			c.locs = nil
			f.products[op.ProductID] = &c
		}
		if op.ReservationID != "" {
			k := s.hash(op.ProductID, op.ReservationID)
			if r, ok := s.resv.get(k); ok {
				if _, done := f.resv.get(k); !done {
					if r.state() == StateActive {
						r.settle = int64(f.allocHold(*s.holds.at(int32(r.settle))))
					}
					f.resv.put(k, r)
				}
			}
		}
		k := s.hash(op.ProductID, op.IdempotencyKey)
		if r, ok := s.idem.get(k); ok {
			f.idem.put(k, r)
		}
	}
	return f
}
