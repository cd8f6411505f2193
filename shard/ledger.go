package shard

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// ReadLog passes every record of shard i's log to fn, in log order, with
// its locator, as a journal's opening does, but without changing the log:
// the offline tools read a data directory with it (wal.Reader). An error
// from fn must stop it and be returned.
type ReadLog func(shard int, fn func(loc uint64, rec []byte) error) error

// LedgerOptions configure ReplayLedger.
type LedgerOptions struct {
	// Entry, if set, is called with every entry of shard as it is applied:
	// in each shard's log order, shard after shard, except that the entries
	// of a cart left in doubt at the end of the logs follow once every
	// shard is read and the cart is decided, as at start-up. A product's
	// entries thus come in version order. e and its strings are valid only
	// during the call. An error stops the replay and is returned.
	Entry func(shard int, e *Entry) error
	// Parallel replays the shards at once, one goroutine each: Entry is
	// then called concurrently for different shards, still in order within
	// each. The entries of carts left in doubt follow once all are done.
	Parallel bool
	// Snapshots, if set, holds a snapshot (ReadSnapshot) for each shard,
	// nil for none: when the replay of the shard's log has applied the
	// record the snapshot ends with, the state it rebuilt is compared with
	// the snapshot's, and the result is in LedgerShard.Snapshot.
	Snapshots []*SnapshotSummary
}

// Ledger is what ReplayLedger rebuilt from a data directory's logs.
type Ledger struct {
	Shards []LedgerShard
}

// LedgerShard is one shard's part of a Ledger.
type LedgerShard struct {
	// Err is the first problem its log has: unreadable, corrupt, or an
	// entry that breaks an invariant of the ledger (DESIGN.md) or a tx
	// record that breaks the cart protocol. The replay of the shard stopped
	// there; the counts below cover what came before.
	Err error
	// Entries, Products and ActiveHolds count what the replay applied.
	Entries     uint64
	Products    int
	ActiveHolds int
	// InDoubt are the carts this shard's log left prepared without an
	// outcome, as decided from every shard's log (what a start would do).
	InDoubt []TxDecision
	// LastCreatedAt is the largest created_at of its entries, 0 for none.
	LastCreatedAt int64
	// NextDeadline is the earliest expiry of an active hold, 0 for none.
	NextDeadline int64
	// Snapshot is what comparing the shard's snapshot (LedgerOptions.
	// Snapshots) with the replay found: nil when they agree, or when
	// there was none to compare or the replay stopped before its end.
	Snapshot error
}

// TxDecision is the outcome a start gives a cart left in doubt.
type TxDecision struct {
	Tx        uint64
	Committed bool
}

// ReplayLedger rebuilds every shard's state from its log, read through
// read, with the code start-up uses: every entry goes through apply, which
// checks each invariant it must keep (balances that add up, available and
// reserved never below zero, versions without gaps, a reservation reserved
// once and settled once, entries of a product never stamped before the one
// before), and tx records through the cart protocol's replay. Carts left
// in doubt are then decided as a start decides them, and a cart committed
// in one log and aborted in another is reported. Idempotency keys are not
// indexed (a caller that checks them sees them through Entry).
//
// It reads the shards one after the other (or at once, with Parallel)
// and keeps every shard's state
// until it returns: the memory of a service start, about. It returns an
// error only when Entry does; problems in the logs are in the shards' Err.
func ReplayLedger(shards int, read ReadLog, o LedgerOptions) (*Ledger, error) {
	l := &Ledger{Shards: make([]LedgerShard, shards)}
	states := make([]*State, shards)
	stops := make([]error, shards) // from Entry: end everything
	replay := func(i int) {
		st := NewState(i, math.MaxInt64)
		st.beginReplay(math.MaxInt64) // keep no idempotency key
		if o.Entry != nil {
			st.onApply = func(e *Entry) error {
				if err := o.Entry(i, e); err != nil {
					stops[i] = err
					return err
				}
				return nil
			}
		}
		states[i] = st
		apply := replayer(st)
		var snap *SnapshotSummary
		if i < len(o.Snapshots) {
			snap = o.Snapshots[i]
		}
		reached := false
		err := read(i, func(loc uint64, rec []byte) error {
			if err := apply(loc, rec); err != nil {
				return err
			}
			if snap != nil && !reached && loc >= snap.Loc {
				reached = true
				if loc != snap.Loc {
					l.Shards[i].Snapshot = fmt.Errorf("snapshot %s ends with the record at %#x, which the log does not hold", snap.Path, snap.Loc)
				} else {
					l.Shards[i].Snapshot = compareSnapshot(st, snap)
				}
			}
			return nil
		})
		if stops[i] != nil {
			return
		}
		if err == nil {
			err = st.endReplay()
		}
		if err != nil {
			l.Shards[i].Err = fmt.Errorf("shard %d: %w", i, err)
		} else if snap != nil && !reached {
			l.Shards[i].Snapshot = fmt.Errorf("snapshot %s ends with the record at %#x, past the end of the log", snap.Path, snap.Loc)
		}
	}
	if o.Parallel {
		var wg sync.WaitGroup
		for i := range shards {
			wg.Go(func() { replay(i) })
		}
		wg.Wait()
	} else {
		for i := range shards {
			if replay(i); stops[i] != nil {
				break
			}
		}
	}
	if err := errors.Join(stops...); err != nil {
		return nil, err
	}
	if err := checkOutcomes(states); err != nil {
		l.Shards[0].Err = errors.Join(l.Shards[0].Err, err)
	}
	failed := slices.ContainsFunc(l.Shards, func(s LedgerShard) bool { return s.Err != nil })
	if !failed {
		markers, _, _, err := resolveInDoubt(states, slog.New(slog.DiscardHandler))
		if err := errors.Join(stops...); err != nil {
			return nil, err
		}
		if err != nil {
			l.Shards[0].Err = err
		}
		for i := range markers {
			for _, m := range markers[i] {
				l.Shards[i].InDoubt = append(l.Shards[i].InDoubt, TxDecision{Tx: m.tx, Committed: m.kind == txCommit})
			}
		}
	}
	for i, st := range states {
		s := &l.Shards[i]
		s.Entries, s.Products, s.ActiveHolds, s.LastCreatedAt = st.Entries(), st.Products(), st.ActiveHolds(), st.lastAt
		if at, ok := st.NextDeadline(); ok {
			s.NextDeadline = at
		}
	}
	return l, nil
}

// checkOutcomes reports a cart whose COMMIT one shard's log holds and whose
// ABORT another's does: the coordinator commits a cart only when every
// part is durable, and aborts it only when it cannot commit.
func checkOutcomes(states []*State) error {
	committed := make(map[uint64]int)
	for i, st := range states {
		for tx, c := range st.outcomes {
			if c {
				committed[tx] = i
			}
		}
	}
	var errs []error
	for i, st := range states {
		for tx, c := range st.outcomes {
			if j, ok := committed[tx]; ok && !c {
				errs = append(errs, fmt.Errorf("tx %d is committed in shard %d's log and aborted in shard %d's", tx, j, i))
			}
		}
	}
	return errors.Join(errs...)
}

// IsEntryRecord reports whether rec, a record of a shard's log, is a ledger
// entry (DecodeEntry reads it) rather than a record of the cart protocol.
func IsEntryRecord(rec []byte) bool { return !isTxRecord(rec) }

// snapshotDiffsMax bounds the products compareSnapshot names.
const snapshotDiffsMax = 10

// compareSnapshot compares st, replayed up to the last record snap covers,
// with snap: entries applied, every product's balances, version and
// updated_at, active holds and carts prepared and unresolved.
func compareSnapshot(st *State, snap *SnapshotSummary) error {
	var diffs []string
	if st.entries != snap.Entries {
		diffs = append(diffs, fmt.Sprintf("%d entries applied, the log has %d", snap.Entries, st.entries))
	}
	if n := st.ActiveHolds(); n != snap.ActiveHolds {
		diffs = append(diffs, fmt.Sprintf("%d active holds, the log has %d", snap.ActiveHolds, n))
	}
	if n := len(st.txs); n != snap.PendingTxs {
		diffs = append(diffs, fmt.Sprintf("%d carts prepared and unresolved, the log has %d", snap.PendingTxs, n))
	}
	if len(st.products) != len(snap.Products) {
		diffs = append(diffs, fmt.Sprintf("%d products, the log has %d", len(snap.Products), len(st.products)))
	}
	bad := 0
	for _, id := range slices.Sorted(maps.Keys(st.products)) {
		got, ok := snap.Products[id]
		want := st.products[id].stock(id)
		switch {
		case !ok:
			bad++
			if bad <= snapshotDiffsMax {
				diffs = append(diffs, fmt.Sprintf("product %q missing (the log has it at version %d)", id, want.Version))
			}
		case got != want:
			bad++
			if bad <= snapshotDiffsMax {
				diffs = append(diffs, fmt.Sprintf("product %q: on_hand %d reserved %d version %d updated_at %s, the log has %d %d %d %s",
					id, got.OnHand, got.Reserved, got.Version, stamp(got.UpdatedAt), want.OnHand, want.Reserved, want.Version, stamp(want.UpdatedAt)))
			}
		}
	}
	if bad > snapshotDiffsMax {
		diffs = append(diffs, fmt.Sprintf("and %d more products", bad-snapshotDiffsMax))
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("snapshot %s differs from the log: %s", snap.Path, strings.Join(diffs, "; "))
}

// stamp formats Unix nanoseconds for a message.
func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }
