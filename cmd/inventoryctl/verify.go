package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/inventory-ledger/inventory/shard"
)

// verify replays every shard's log from scratch and checks it:
//
//  1. every block and record checksum, block sequence and segment order
//     (wal.Reader);
//  2. every invariant apply checks, entry by entry (shard.ReplayLedger):
//     running balances that add up, on_hand and reserved never below zero
//     nor available, versions 1, 2, 3... without gaps, a reservation
//     reserved once and settled at most once (committed, released or
//     expired) by a COMMIT or RELEASE of what it holds, a partial COMMIT
//     followed by the RELEASE of the rest, created_at never before the
//     product's previous entry;
//  3. the cart protocol: PREPARE records followed by their entries, COMMIT
//     only of a prepared part, no cart both committed and aborted across
//     the logs, and carts left in doubt decided as a start would;
//  4. one idempotency key, per product, applies at most one request
//     within the retention window (--retention, the service's setting);
//  5. each shard's snapshots: every file checks out (a damaged one is a
//     problem, although a start passes it over), and the newest that does
//     equals the state the log rebuilds up to the record it ends with:
//     entries, every product's balances and version, active holds, carts
//     in doubt.
//
// It prints a report and exits 1 on any problem. A torn tail (a block cut
// short by a crash, or being written by a running inventoryd) is reported
// but is not a problem: nothing in it was acknowledged, and the service cuts
// it at its next start.
func verify(args []string, stdout, stderr io.Writer) int {
	var dir, archive string
	var retention time.Duration
	fs := flags("verify", stderr, &dir, &archive)
	fs.DurationVar(&retention, "retention", shard.RetentionDefault, "the service's --retention: a key applied twice on a product within it is a problem")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if retention < time.Second {
		fmt.Fprintf(stderr, "inventoryctl verify: --retention must be at least 1s, got %s\n", retention)
		return exitUsage
	}
	d := openReading("verify", dir, archive, stderr)
	if d == nil {
		return exitProblem
	}
	keys := make([]*keyCheck, d.shards) // one a shard: they run at once
	for i := range keys {
		keys[i] = newKeyCheck(retention)
	}
	snaps, snapErrs := newestSnapshots(d)
	l, err := d.replay(shard.LedgerOptions{Parallel: true, Snapshots: snaps, Entry: func(i int, e *shard.Entry) error {
		keys[i].see(i, e)
		return nil
	}})
	if err != nil { // only from the callback, which never fails
		fmt.Fprintf(stderr, "inventoryctl verify: %v\n", err)
		return exitProblem
	}
	errs := problems(l)
	for _, k := range keys {
		errs = append(errs, k.errs...)
	}
	fmt.Fprintf(stdout, "data directory %s: %d shards\n", d.path, d.shards)
	for i, s := range l.Shards {
		fmt.Fprintf(stdout, "shard %d: %d entries, %d products, %d active holds", i, s.Entries, s.Products, s.ActiveHolds)
		if s.ActiveHolds > 0 && s.NextDeadline <= s.LastCreatedAt {
			fmt.Fprintf(stdout, " (some past their TTL at the last entry: a start releases them)")
		}
		fmt.Fprintln(stdout)
		for _, tx := range s.InDoubt {
			outcome := "aborted"
			if tx.Committed {
				outcome = "committed"
			}
			fmt.Fprintf(stdout, "  cart %d in doubt at the end of the log: a start would mark it %s\n", tx.Tx, outcome)
		}
		if t := d.tails[i]; t.Segment != "" {
			fmt.Fprintf(stdout, "  torn tail: %d bytes at offset %d of %s (%s); not acknowledged, cut at the next start\n", t.Bytes, t.Offset, t.Segment, t.Reason)
		}
		switch snap := snaps[i]; {
		case snap == nil:
			fmt.Fprintln(stdout, "  snapshots: none usable (a start replays the whole log)")
		case s.Snapshot == nil && s.Err == nil:
			fmt.Fprintf(stdout, "  snapshot %s: %d entries, %d products, taken %s: matches the log\n",
				filepath.Base(snap.Path), snap.Entries, len(snap.Products), formatTime(snap.At.UnixNano()))
		case s.Snapshot != nil:
			fmt.Fprintf(stdout, "  PROBLEM: %v\n", s.Snapshot)
			errs = append(errs, s.Snapshot)
		}
		if err := snapErrs[i]; err != nil {
			fmt.Fprintf(stdout, "  PROBLEM: snapshot files that do not check out (a start skips them): %v\n", err)
			errs = append(errs, fmt.Errorf("shard %d: %w", i, err))
		}
		if s.Err != nil {
			fmt.Fprintf(stdout, "  PROBLEM: %v\n", s.Err)
		}
	}
	for _, k := range keys {
		for _, err := range k.errs {
			fmt.Fprintf(stdout, "PROBLEM: %v\n", err)
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(stdout, "verify: %d problems\n", len(errs))
		return exitProblem
	}
	fmt.Fprintln(stdout, "verify: OK")
	return exitOK
}

// keyCheck finds an idempotency key applied twice on one product within
// the retention window. Live, the service forgets a key after the window,
// give or take a 64th of it (the age buckets of its key index), so a key
// used again later than that is a new request; within the window less that
// 64th, a second application breaks invariant 5. It remembers the keys of
// the last window only: entries come in log order, in which created_at
// grows (but for a cart's entries, prepared earlier and applied later).
type keyCheck struct {
	window time.Duration
	shard  int
	last   map[productKey]keyUse
	order  []productKeyAt // keys in the order seen, to forget old ones
	newest int64
	errs   []error
}

type productKey struct{ product, key string }

type keyUse struct {
	at      int64
	version int64
}

type productKeyAt struct {
	k  productKey
	at int64
}

// keyErrorsMax bounds the problems listed: past it they are only counted.
const keyErrorsMax = 20

func newKeyCheck(retention time.Duration) *keyCheck {
	return &keyCheck{window: retention - retention/64, last: make(map[productKey]keyUse)}
}

func (c *keyCheck) see(shard int, e *shard.Entry) {
	if shard != c.shard { // products, and so keys, belong to one shard
		c.shard, c.newest = shard, 0
		clear(c.last)
		c.order = c.order[:0]
	}
	if e.IdempotencyKey == "" {
		return
	}
	c.newest = max(c.newest, e.CreatedAt)
	for len(c.order) > 0 && c.order[0].at < c.newest-int64(c.window) {
		if u, ok := c.last[c.order[0].k]; ok && u.at == c.order[0].at {
			delete(c.last, c.order[0].k)
		}
		c.order = c.order[1:]
	}
	k := productKey{e.ProductID, e.IdempotencyKey}
	if u, ok := c.last[k]; ok && e.CreatedAt-u.at < int64(c.window) {
		if len(c.errs) == keyErrorsMax {
			c.errs = append(c.errs, fmt.Errorf("more idempotency keys applied twice are not listed"))
		}
		if len(c.errs) < keyErrorsMax {
			c.errs = append(c.errs, fmt.Errorf("shard %d: idempotency key %q of product %q applied twice within the retention window: versions %d and %d, %s apart",
				shard, e.IdempotencyKey, e.ProductID, u.version, e.Version, time.Duration(e.CreatedAt-u.at)))
		}
		return
	}
	k = productKey{string([]byte(e.ProductID)), string([]byte(e.IdempotencyKey))} // e's strings view its record
	c.last[k] = keyUse{at: e.CreatedAt, version: e.Version}
	c.order = append(c.order, productKeyAt{k, e.CreatedAt})
}
