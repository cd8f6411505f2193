package shard

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

const t0 = int64(1_700_000_000_000_000_000)

// machine drives a State the way the actor does: validate, decide, apply.
type machine struct {
	t    *testing.T
	s    *State
	now  int64
	log  []Entry
	seen map[string]int // outcomes, for coverage checks
}

func newMachine(t *testing.T) *machine {
	return &machine{t: t, s: NewState(0, int64(RetentionDefault)), now: t0, seen: map[string]int{}}
}

func (m *machine) do(op Op) ([]Entry, outcome, *Error) {
	if err := op.Validate(); err != nil {
		return nil, outcome{}, err
	}
	es, out, err := m.s.decide(&op, m.now, nil)
	if err != nil || out.replayOf != 0 {
		return nil, out, err
	}
	for i := range es {
		if aerr := m.s.apply(&es[i], uint64(len(m.log)+1)); aerr != nil {
			m.t.Fatalf("apply: %v", aerr)
		}
		m.log = append(m.log, es[i])
	}
	return es, out, nil
}

// must runs op and fails the test if it is refused.
func (m *machine) must(op Op) []Entry {
	m.t.Helper()
	es, _, err := m.do(op)
	if err != nil {
		m.t.Fatalf("%s %s: %v", op.Type, op.IdempotencyKey, err)
	}
	return es
}

// expire applies every due expiry at m.now.
func (m *machine) expire() []Entry {
	var all []Entry
	for {
		es, ok := m.s.expire(m.now, nil, nil)
		if !ok {
			return all
		}
		if err := m.s.apply(&es[0], uint64(len(m.log)+1)); err != nil {
			m.t.Fatalf("apply expiry: %v", err)
		}
		m.log = append(m.log, es[0])
		all = append(all, es[0])
	}
}

var keyN atomic.Int64

// key returns a fresh idempotency key.
func key() string {
	return "k" + strconv.FormatInt(keyN.Add(1), 10)
}

func add(p string, q int64) Op {
	return Op{ProductID: p, Type: TypeAdd, Quantity: q, IdempotencyKey: key(), ExpectedVersion: NoVersion}
}
func remove(p string, q int64) Op {
	return Op{ProductID: p, Type: TypeRemove, Quantity: q, IdempotencyKey: key(), ExpectedVersion: NoVersion}
}
func reserve(p, r string, q int64) Op {
	return Op{ProductID: p, Type: TypeReserve, Quantity: q, ReservationID: r, IdempotencyKey: key(), ExpectedVersion: NoVersion}
}
func commit(p, r string, q int64) Op {
	return Op{ProductID: p, Type: TypeCommit, Quantity: q, ReservationID: r, IdempotencyKey: key(), ExpectedVersion: NoVersion}
}
func release(p, r string) Op {
	return Op{ProductID: p, Type: TypeRelease, ReservationID: r, IdempotencyKey: key(), ExpectedVersion: NoVersion}
}

// fillToLimit brings product p to on_hand 10^15 - 1.
func fillToLimit(m *machine) {
	m.must(add("p", 1))
	m.s.products["p"].onHand = StockMax - 1 // a million ADDs would say the same, slowly
}

func TestDecide(t *testing.T) {
	type want struct {
		code      Code
		available int64 // insufficient_stock
		held      int64 // commit_exceeds_hold
		state     ReservationState
		current   int64   // version_conflict
		entries   []Entry // fields checked: Type, Quantity, Delta, OnHand, Reserved, Version, Origin
	}
	cases := []struct {
		name  string
		setup func(m *machine)
		op    func() Op
		want  want
	}{
		{"add to a new product", nil, func() Op { return add("p", 5) },
			want{entries: []Entry{{Type: TypeAdd, Quantity: 5, Delta: 5, OnHand: 5, Version: 1}}}},
		{"return", func(m *machine) { m.must(add("p", 5)) },
			func() Op { o := add("p", 2); o.Type = TypeReturn; return o },
			want{entries: []Entry{{Type: TypeReturn, Quantity: 2, Delta: 2, OnHand: 7, Version: 2}}}},
		{"remove", func(m *machine) { m.must(add("p", 5)) }, func() Op { return remove("p", 5) },
			want{entries: []Entry{{Type: TypeRemove, Quantity: 5, Delta: -5, OnHand: 0, Version: 2}}}},
		{"remove above available", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 2)) },
			func() Op { return remove("p", 4) }, want{code: CodeInsufficientStock, available: 3}},
		{"remove from a product with no entries", nil, func() Op { return remove("p", 1) },
			want{code: CodeInsufficientStock, available: 0}},
		{"reserve", func(m *machine) { m.must(add("p", 5)) }, func() Op { return reserve("p", "r", 2) },
			want{entries: []Entry{{Type: TypeReserve, Quantity: 2, Delta: -2, OnHand: 5, Reserved: 2, Version: 2}}}},
		{"reserve all that is available", func(m *machine) { m.must(add("p", 5)) }, func() Op { return reserve("p", "r", 5) },
			want{entries: []Entry{{Type: TypeReserve, Quantity: 5, Delta: -5, OnHand: 5, Reserved: 5, Version: 2}}}},
		{"reserve above available", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "a", 4)) },
			func() Op { return reserve("p", "b", 2) }, want{code: CodeInsufficientStock, available: 1}},
		{"reserve on a product with no entries", nil, func() Op { return reserve("p", "r", 1) },
			want{code: CodeInsufficientStock}},
		{"reserve an active reservation id again", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 1)) },
			func() Op { return reserve("p", "r", 1) }, want{code: CodeReservationExists}},
		{"reserve a settled reservation id again", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 1)); m.must(release("p", "r")) },
			func() Op { return reserve("p", "r", 1) }, want{code: CodeReservationExists}},
		{"reservation id reused on another product is fine", func(m *machine) { m.must(add("p", 5)); m.must(add("q", 5)); m.must(reserve("p", "r", 1)) },
			func() Op { return reserve("q", "r", 1) },
			want{entries: []Entry{{Type: TypeReserve, Quantity: 1, Delta: -1, OnHand: 5, Reserved: 1, Version: 2}}}},
		{"reservation_exists is checked before stock", func(m *machine) { m.must(add("p", 1)); m.must(reserve("p", "r", 1)) },
			func() Op { return reserve("p", "r", 5) }, want{code: CodeReservationExists}},
		{"commit all held by default", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 3)) },
			func() Op { return commit("p", "r", 0) },
			want{entries: []Entry{{Type: TypeCommit, Quantity: 3, Delta: 0, OnHand: 2, Reserved: 0, Version: 3}}}},
		{"commit part: COMMIT then RELEASE of the rest", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 3)) },
			func() Op { return commit("p", "r", 1) },
			want{entries: []Entry{
				{Type: TypeCommit, Quantity: 1, Delta: 0, OnHand: 4, Reserved: 2, Version: 3},
				{Type: TypeRelease, Quantity: 2, Delta: 2, OnHand: 4, Reserved: 0, Version: 4, Origin: OriginContinuation},
			}}},
		{"commit above the hold", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 3)) },
			func() Op { return commit("p", "r", 4) }, want{code: CodeCommitExceedsHold, held: 3}},
		{"commit an unknown hold", func(m *machine) { m.must(add("p", 5)) },
			func() Op { return commit("p", "r", 0) }, want{code: CodeReservationNotActive, state: StateUnknown}},
		{"commit on a product with no entries", nil,
			func() Op { return commit("p", "r", 0) }, want{code: CodeReservationNotActive, state: StateUnknown}},
		{"commit a committed hold", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 3)); m.must(commit("p", "r", 0)) },
			func() Op { return commit("p", "r", 0) }, want{code: CodeReservationNotActive, state: StateCommitted}},
		{"commit a partially committed hold", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 3)); m.must(commit("p", "r", 1)) },
			func() Op { return commit("p", "r", 1) }, want{code: CodeReservationNotActive, state: StateCommitted}},
		{"commit a released hold", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 3)); m.must(release("p", "r")) },
			func() Op { return commit("p", "r", 0) }, want{code: CodeReservationNotActive, state: StateReleased}},
		{"commit an expired hold", func(m *machine) {
			m.must(add("p", 5))
			o := reserve("p", "r", 3)
			o.TTLSeconds = 1
			m.must(o)
			m.now += 1e9
			m.expire()
		}, func() Op { return commit("p", "r", 0) }, want{code: CodeReservationNotActive, state: StateExpired}},
		{"release", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 3)) },
			func() Op { return release("p", "r") },
			want{entries: []Entry{{Type: TypeRelease, Quantity: 3, Delta: 3, OnHand: 5, Reserved: 0, Version: 3}}}},
		{"release a released hold", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 3)); m.must(release("p", "r")) },
			func() Op { return release("p", "r") }, want{code: CodeReservationNotActive, state: StateReleased}},
		{"release an unknown hold", func(m *machine) { m.must(add("p", 5)) },
			func() Op { return release("p", "r") }, want{code: CodeReservationNotActive, state: StateUnknown}},
		{"add up to the stock limit", fillToLimit, func() Op { return add("p", 1) },
			want{entries: []Entry{{Type: TypeAdd, Quantity: 1, Delta: 1, OnHand: StockMax, Version: 2}}}},
		{"add past the stock limit", fillToLimit, func() Op { return add("p", 2) }, want{code: CodeLimitExceeded}},
		{"return past the stock limit", fillToLimit, func() Op { o := add("p", 2); o.Type = TypeReturn; return o }, want{code: CodeLimitExceeded}},
		{"expected version matches", func(m *machine) { m.must(add("p", 5)) },
			func() Op { o := add("p", 1); o.ExpectedVersion = 1; return o },
			want{entries: []Entry{{Type: TypeAdd, Quantity: 1, Delta: 1, OnHand: 6, Version: 2}}}},
		{"expected version differs", func(m *machine) { m.must(add("p", 5)) },
			func() Op { o := add("p", 1); o.ExpectedVersion = 3; return o }, want{code: CodeVersionConflict, current: 1}},
		{"expected version 0 on a new product", nil,
			func() Op { o := add("p", 1); o.ExpectedVersion = 0; return o },
			want{entries: []Entry{{Type: TypeAdd, Quantity: 1, Delta: 1, OnHand: 1, Version: 1}}}},
		{"expected version 0 on an existing product", func(m *machine) { m.must(add("p", 5)) },
			func() Op { o := add("p", 1); o.ExpectedVersion = 0; return o }, want{code: CodeVersionConflict, current: 1}},
		{"version is checked before reservation identity", func(m *machine) { m.must(add("p", 5)); m.must(reserve("p", "r", 1)) },
			func() Op { o := reserve("p", "r", 1); o.ExpectedVersion = 1; return o }, want{code: CodeVersionConflict, current: 2}},
		{"version is checked before stock", func(m *machine) { m.must(add("p", 5)) },
			func() Op { o := remove("p", 9); o.ExpectedVersion = 7; return o }, want{code: CodeVersionConflict, current: 1}},
		{"key reused for another request", func(m *machine) { o := add("p", 5); o.IdempotencyKey = "dup"; m.must(o) },
			func() Op { o := add("p", 6); o.IdempotencyKey = "dup"; return o }, want{code: CodeIdempotencyKeyReused}},
		{"key reuse is checked before version", func(m *machine) { o := add("p", 5); o.IdempotencyKey = "dup"; m.must(o) },
			func() Op { o := add("p", 6); o.IdempotencyKey = "dup"; o.ExpectedVersion = 9; return o }, want{code: CodeIdempotencyKeyReused}},
		{"same key on another product is another request", func(m *machine) { o := add("p", 5); o.IdempotencyKey = "dup"; m.must(o) },
			func() Op { o := add("q", 6); o.IdempotencyKey = "dup"; return o },
			want{entries: []Entry{{Type: TypeAdd, Quantity: 6, Delta: 6, OnHand: 6, Version: 1}}}},
		{"a refused write's key is not remembered", func(m *machine) {
			o := remove("p", 1)
			o.IdempotencyKey = "again"
			if _, _, err := m.do(o); err == nil || err.Code != CodeInsufficientStock {
				m.t.Fatalf("setup: got %v, want insufficient_stock", err)
			}
			m.must(add("p", 5))
		}, func() Op { o := remove("p", 1); o.IdempotencyKey = "again"; return o },
			want{entries: []Entry{{Type: TypeRemove, Quantity: 1, Delta: -1, OnHand: 4, Version: 2}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t)
			if tc.setup != nil {
				tc.setup(m)
			}
			op := tc.op()
			got, _, err := m.do(op)
			if tc.want.code != "" {
				if err == nil {
					t.Fatalf("got entries %+v, want %s", got, tc.want.code)
				}
				if err.Code != tc.want.code || err.Available != tc.want.available || err.Held != tc.want.held ||
					err.State != tc.want.state || err.CurrentVersion != tc.want.current {
					t.Errorf("got %s (available %d held %d state %s current %d), want %+v",
						err.Code, err.Available, err.Held, err.State, err.CurrentVersion, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want entries", err)
			}
			if len(got) != len(tc.want.entries) {
				t.Fatalf("got %d entries, want %d", len(got), len(tc.want.entries))
			}
			for i, w := range tc.want.entries {
				g := got[i]
				if g.Type != w.Type || g.Quantity != w.Quantity || g.Delta != w.Delta || g.OnHand != w.OnHand ||
					g.Reserved != w.Reserved || g.Version != w.Version || g.Origin != w.Origin {
					t.Errorf("entry %d: got %s q%d d%d oh%d r%d v%d o%d, want %s q%d d%d oh%d r%d v%d o%d", i,
						g.Type, g.Quantity, g.Delta, g.OnHand, g.Reserved, g.Version, g.Origin,
						w.Type, w.Quantity, w.Delta, w.OnHand, w.Reserved, w.Version, w.Origin)
				}
				if g.ProductID != op.ProductID || g.CreatedAt != m.now || g.Reason != op.Reason {
					t.Errorf("entry %d: product %q created_at %d reason %q", i, g.ProductID, g.CreatedAt, g.Reason)
				}
				wantKey := op.IdempotencyKey
				if g.Origin != OriginRequest {
					wantKey = ""
				}
				if g.IdempotencyKey != wantKey {
					t.Errorf("entry %d: idempotency key %q, want %q", i, g.IdempotencyKey, wantKey)
				}
			}
		})
	}
}

func TestReserveStampsExpiry(t *testing.T) {
	m := newMachine(t)
	m.must(add("p", 5))
	got := m.must(reserve("p", "r", 1))[0]
	if want := m.now + TTLSecondsDefault*1e9; got.ExpiresAt != want {
		t.Errorf("default ttl: expires_at %d, want %d", got.ExpiresAt, want)
	}
	o := reserve("p", "r2", 1)
	o.TTLSeconds = 60
	got = m.must(o)[0]
	if want := m.now + 60e9; got.ExpiresAt != want {
		t.Errorf("ttl 60: expires_at %d, want %d", got.ExpiresAt, want)
	}
}

func TestExpiry(t *testing.T) {
	m := newMachine(t)
	m.must(add("p", 5))
	o := reserve("p", "r", 3)
	o.TTLSeconds = 10
	m.must(o)
	m.now += 10e9 - 1
	if es := m.expire(); len(es) != 0 {
		t.Fatalf("expired %d holds before the deadline", len(es))
	}
	m.now++
	es := m.expire()
	if len(es) != 1 {
		t.Fatalf("got %d expiries at the deadline, want 1", len(es))
	}
	e := es[0]
	if e.Type != TypeRelease || e.Quantity != 3 || e.Delta != 3 || e.Reserved != 0 || e.Reason != ReasonExpired ||
		e.CreatedBy != ActorSystem || e.Origin != OriginExpiry || e.IdempotencyKey != "" || e.Version != 3 {
		t.Errorf("expiry entry: %+v", e)
	}
	r, _, _ := m.s.reservation("p", "r")
	if r.state() != StateExpired || r.settle != 3 {
		t.Errorf("reservation: state %s settled at version %d, want expired at 3", r.state(), r.settle)
	}
	if m.s.ActiveHolds() != 0 {
		t.Errorf("%d active holds after expiry", m.s.ActiveHolds())
	}
}

func TestIdempotentReplay(t *testing.T) {
	m := newMachine(t)
	m.must(add("p", 5))
	o := reserve("p", "r", 2)
	first := m.must(o)
	m.must(add("p", 1)) // the product moves on
	_, out, err := m.do(o)
	if err != nil || out.replayOf != first[0].Version {
		t.Fatalf("replay: got %v, replay of %d; want replay of %d", err, out.replayOf, first[0].Version)
	}
	// A retry whose expected version is stale by now still gets its replay.
	o2 := add("p", 2)
	o2.ExpectedVersion = m.s.products["p"].version
	m.must(o2)
	m.must(add("p", 1))
	if _, out, err := m.do(o2); err != nil || out.replayOf != o2.ExpectedVersion+1 {
		t.Errorf("retry with a stale expected version: got %v, replay of %d", err, out.replayOf)
	}
	if got := len(m.log); got != 5 {
		t.Errorf("replays appended entries: %d in the log, want 5", got)
	}
}

func TestForgetAfterRetention(t *testing.T) {
	m := newMachine(t)
	m.s.retention = 60e9
	o := add("p", 1)
	m.must(o)
	m.now += 60e9
	if n := m.s.forget(m.now, 100); n != 0 {
		t.Fatalf("forgot %d keys at exactly the retention window", n)
	}
	m.now++
	if n := m.s.forget(m.now, 100); n != 1 {
		t.Fatalf("forgot %d keys after the window, want 1", n)
	}
	if _, out, err := m.do(o); err != nil || out.replayOf != 0 {
		t.Errorf("after retention the key is new again: got %v replay %d", err, out.replayOf)
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", 129)
	cases := []struct {
		name string
		op   Op
	}{
		{"quantity 0", Op{Type: TypeAdd, Quantity: 0}},
		{"quantity negative", Op{Type: TypeRemove, Quantity: -1}},
		{"quantity too large", Op{Type: TypeAdd, Quantity: QuantityMax + 1}},
		{"reserve quantity 0", Op{Type: TypeReserve, ReservationID: "r"}},
		{"commit quantity too large", Op{Type: TypeCommit, ReservationID: "r", Quantity: QuantityMax + 1}},
		{"quantity on RELEASE", Op{Type: TypeRelease, ReservationID: "r", Quantity: 1}},
		{"reservation_id on ADD", Op{Type: TypeAdd, Quantity: 1, ReservationID: "r"}},
		{"no reservation_id on RESERVE", Op{Type: TypeReserve, Quantity: 1}},
		{"ttl on ADD", Op{Type: TypeAdd, Quantity: 1, TTLSeconds: 5}},
		{"ttl on COMMIT", Op{Type: TypeCommit, ReservationID: "r", TTLSeconds: 5}},
		{"ttl too long", Op{Type: TypeReserve, Quantity: 1, ReservationID: "r", TTLSeconds: TTLSecondsMax + 1}},
		{"ttl negative", Op{Type: TypeReserve, Quantity: 1, ReservationID: "r", TTLSeconds: -1}},
		{"unknown type", Op{Type: typeEnd, Quantity: 1}},
		{"no type", Op{Quantity: 1}},
		{"product id too long", Op{ProductID: long, Type: TypeAdd, Quantity: 1}},
		{"product id empty", Op{ProductID: "-", Type: TypeAdd, Quantity: 1}},
		{"product id with a slash", Op{ProductID: "a/b", Type: TypeAdd, Quantity: 1}},
		{"reservation id with a space", Op{Type: TypeReserve, Quantity: 1, ReservationID: "a b"}},
		{"reason too long", Op{Type: TypeAdd, Quantity: 1, Reason: strings.Repeat("é", 129)}},
		{"reason not UTF-8", Op{Type: TypeAdd, Quantity: 1, Reason: "\xff"}},
		{"no idempotency key", Op{Type: TypeAdd, Quantity: 1, IdempotencyKey: "-"}},
		{"key with a space", Op{Type: TypeAdd, Quantity: 1, IdempotencyKey: "a b"}},
		{"key too long", Op{Type: TypeAdd, Quantity: 1, IdempotencyKey: strings.Repeat("k", 256)}},
		{"actor outside the id charset", Op{Type: TypeAdd, Quantity: 1, Actor: "bob smith"}},
		{"negative expected version", Op{Type: TypeAdd, Quantity: 1, ExpectedVersion: -2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			op := tc.op
			if op.ProductID == "" {
				op.ProductID = "p"
			} else if op.ProductID == "-" {
				op.ProductID = ""
			}
			if op.IdempotencyKey == "" {
				op.IdempotencyKey = "k"
			} else if op.IdempotencyKey == "-" {
				op.IdempotencyKey = ""
			}
			if op.ExpectedVersion == 0 {
				op.ExpectedVersion = NoVersion
			}
			err := op.Validate()
			if err == nil || err.Code != CodeInvalidRequest || err.Detail == "" {
				t.Errorf("got %v, want invalid_request with a detail", err)
			}
		})
	}
	ok := Op{ProductID: strings.Repeat("a", 128), Type: TypeReserve, Quantity: QuantityMax, ReservationID: "A-z.0_~:@",
		IdempotencyKey: strings.Repeat("!", 255), Reason: strings.Repeat("é", 128), ExpectedVersion: NoVersion}
	if err := ok.Validate(); err != nil {
		t.Fatalf("limits themselves: %v", err)
	}
	if ok.TTLSeconds != TTLSecondsDefault || ok.Actor != ActorDefault {
		t.Errorf("defaults: ttl %d actor %q", ok.TTLSeconds, ok.Actor)
	}
}

func TestFingerprintCoversTheRequest(t *testing.T) {
	base := Op{ProductID: "p", Type: TypeReserve, Quantity: 2, ReservationID: "r", TTLSeconds: 60, Reason: "x",
		IdempotencyKey: "k", ExpectedVersion: NoVersion, Actor: "a"}
	variants := map[string]func(*Op){
		"product":  func(o *Op) { o.ProductID = "q" },
		"type":     func(o *Op) { o.Type = TypeCommit },
		"quantity": func(o *Op) { o.Quantity = 3 },
		"resv":     func(o *Op) { o.ReservationID = "s" },
		"ttl":      func(o *Op) { o.TTLSeconds = 61 },
		"reason":   func(o *Op) { o.Reason = "y" },
		"version":  func(o *Op) { o.ExpectedVersion = 0 },
		"split":    func(o *Op) { o.ReservationID, o.Reason = "", "rx" }, // length prefixes keep fields apart
	}
	fp := base.fingerprint()
	for name, change := range variants {
		o := base
		change(&o)
		if o.fingerprint() == fp {
			t.Errorf("%s: same fingerprint", name)
		}
	}
	o := base
	o.Actor, o.IdempotencyKey = "someone-else", "other"
	if o.fingerprint() != fp {
		t.Errorf("actor or key changed the fingerprint")
	}
}

// TestDecideApartMatchesFork runs random carts of different products on a
// State with a random history and checks that deciding them on the live
// state gives exactly what deciding them on a fork gives (entries, ids,
// replays, refusals and the refused op), and that neither moves the state:
// the id counter after each, and all of it against a replay of the log.
func TestDecideApartMatchesFork(t *testing.T) {
	m := newMachine(t)
	a := &actor{state: m.s}
	rng := rand.New(rand.NewPCG(7, 11))
	products := []string{"a", "b", "c", "d", "e", "f"}
	var done []Op // applied ops, replayed now and then
	holds := map[string][]string{}
	pick := func(p string) Op {
		r := "h" + strconv.Itoa(rng.IntN(300))
		switch rng.IntN(9) {
		case 0:
			return add(p, rng.Int64N(5)+1)
		case 1:
			return remove(p, rng.Int64N(8)+1)
		case 2, 3:
			op := reserve(p, r, rng.Int64N(4)+1)
			op.TTLSeconds = int64(rng.IntN(30) + 1)
			return op
		case 4:
			if hs := holds[p]; len(hs) > 0 {
				r = hs[rng.IntN(len(hs))]
			}
			return commit(p, r, rng.Int64N(5)) // 0: the whole hold
		case 5:
			if hs := holds[p]; len(hs) > 0 {
				r = hs[rng.IntN(len(hs))]
			}
			return release(p, r)
		case 6:
			op := add(p, 1)
			op.ExpectedVersion = int64(rng.IntN(4))
			if q := m.s.products[p]; q != nil && rng.IntN(2) == 0 {
				op.ExpectedVersion = q.version
			}
			return op
		default:
			for range 4 {
				if len(done) == 0 {
					break
				}
				if op := done[rng.IntN(len(done))]; op.ProductID == p {
					if rng.IntN(3) == 0 {
						op.Quantity++ // the key reused for another request
					}
					return op
				}
			}
			return add(p, 2)
		}
	}
	outcomes := map[string]int{}
	for round := range 3000 {
		m.now += int64(rng.IntN(400)) * 1e7
		if round%50 == 0 {
			m.expire()
		}
		rng.Shuffle(len(products), func(i, j int) { products[i], products[j] = products[j], products[i] })
		ops := make([]Op, rng.IntN(4)+1)
		for i := range ops {
			ops[i] = pick(products[i])
		}
		if !apart(ops) {
			t.Fatalf("round %d: ops on different products not apart", round)
		}
		if round%100 == 99 {
			if diff := sameState(m.s, replayLog(t, m.s, m.log)); diff != "" {
				t.Fatalf("round %d: the state is not what its log makes: %s", round, diff)
			}
		}
		ids, entries := m.s.ids, m.s.entries
		r1, e1, i1, err1 := a.decideAll(ops, m.now, false)
		r2, e2, i2, err2 := a.decideAll(ops, m.now, true)
		if m.s.ids != ids || m.s.entries != entries {
			t.Fatalf("round %d: a dry run moved the state: ids %d→%d, entries %d→%d", round, ids, m.s.ids, entries, m.s.entries)
		}
		if !reflect.DeepEqual(r1, r2) || !reflect.DeepEqual(e1, e2) || i1 != i2 || !reflect.DeepEqual(err1, err2) {
			t.Fatalf("round %d: ops %+v\nfork:  %+v %+v %d %v\napart: %+v %+v %d %v", round, ops, r1, e1, i1, err1, r2, e2, i2, err2)
		}
		switch {
		case err1 != nil:
			outcomes[string(err1.Code)]++
			continue
		case slices.ContainsFunc(r1, func(r opResult) bool { return r.replayOf != 0 }):
			outcomes["replay"]++
		default:
			outcomes["applied"]++
		}
		if slices.ContainsFunc(e1, func(e Entry) bool { return e.Origin == OriginContinuation }) {
			outcomes["partial commit"]++
		}
		for i := range e1 {
			if err := m.s.apply(&e1[i], uint64(len(m.log)+1)); err != nil {
				t.Fatalf("round %d: apply: %v", round, err)
			}
			m.log = append(m.log, e1[i])
		}
		for i, op := range ops {
			if r1[i].replayOf == 0 {
				done = append(done, op)
				if op.Type == TypeReserve {
					holds[op.ProductID] = append(holds[op.ProductID], op.ReservationID)
				}
			}
		}
	}
	for _, o := range []string{"applied", "replay", "partial commit", string(CodeCommitExceedsHold), string(CodeInsufficientStock), string(CodeVersionConflict),
		string(CodeReservationExists), string(CodeReservationNotActive), string(CodeIdempotencyKeyReused)} {
		if outcomes[o] == 0 {
			t.Errorf("no cart ended %s: %v", o, outcomes)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

func TestApart(t *testing.T) {
	ops := func(products ...string) []Op {
		var out []Op
		for _, p := range products {
			out = append(out, add(p, 1))
		}
		return out
	}
	many := make([]string, apartMax+1)
	for i := range many {
		many[i] = "p" + strconv.Itoa(i)
	}
	for _, c := range []struct {
		ops  []Op
		want bool
	}{
		{ops("a"), true},
		{ops("a", "b", "c"), true},
		{ops("a", "b", "a"), false},
		{ops("a", "a"), false},
		{ops(many[:apartMax]...), true},
		{ops(many...), false}, // all different, but too many to compare
	} {
		if got := apart(c.ops); got != c.want {
			t.Errorf("apart(%d ops) = %v, want %v", len(c.ops), got, c.want)
		}
	}
}
