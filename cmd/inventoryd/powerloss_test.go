package main

import (
	"context"
	encbin "encoding/binary" // binary is the e2e tests' inventoryd
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// The tests here run the engine in process on the real WAL: what they
// check is what reaches the segment files, which the shard package's tests
// (on an in-memory journal) cannot see.

// openWAL returns an OpenJournal over real WAL directories below dir.
func openWAL(dir string) shard.OpenJournal {
	return func(i int, fn func(uint64, []byte) error) (shard.Journal, error) {
		l, _, err := wal.Open(shard.ShardDir(dir, i), wal.Options{}, fn)
		return l, err
	}
}

// mustOpen opens an engine, waits for its replay and closes it after the test.
func mustOpen(t *testing.T, cfg shard.Config, open shard.OpenJournal) *shard.Engine {
	t.Helper()
	e, err := shard.Open(cfg, open)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	if err := e.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func openWALEngine(t *testing.T, dir string, shards int) *shard.Engine {
	t.Helper()
	if err := shard.PrepareDir(dir, shards); err != nil {
		t.Fatal(err)
	}
	return mustOpen(t, shard.Config{Shards: shards}, openWAL(dir))
}

var opKeys atomic.Int64

// newOp returns an op with a fresh idempotency key.
func newOp(typ shard.Type, product, reservationID string, q int64) shard.Op {
	return shard.Op{ProductID: product, Type: typ, Quantity: q, ReservationID: reservationID,
		IdempotencyKey: "k" + strconv.FormatInt(opKeys.Add(1), 10), ExpectedVersion: shard.NoVersion}
}

// acked is an acknowledged write: what must survive any crash.
type acked struct {
	product string
	entries []shard.Entry
}

// load drives writes of every kind from several goroutines until stop is
// closed, and returns what was acknowledged, in acknowledgement order with
// the time of each acknowledgement.
func load(t *testing.T, e *shard.Engine, workers int, stop <-chan struct{}) func() ([]acked, []time.Time) {
	var mu sync.Mutex
	var got []acked
	var at []time.Time
	record := func(r shard.Result) {
		if r.Err != nil || r.Replayed || len(r.Entries) == 0 { // refused, or failed as a whole
			return
		}
		mu.Lock()
		got = append(got, acked{r.Entries[0].ProductID, r.Entries})
		at = append(at, time.Now())
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("p%d", r.IntN(5))
				rid := fmt.Sprintf("w%d-%d", w, i)
				switch r.IntN(5) {
				case 0:
					res, _ := e.Write(ctx, newOp(shard.TypeAdd, p, "", int64(1+r.IntN(3))))
					record(res)
				case 1, 2:
					res, err := e.Write(ctx, newOp(shard.TypeReserve, p, rid, 1))
					record(res)
					if err == nil && r.IntN(2) == 0 {
						res, _ = e.Write(ctx, newOp(shard.TypeCommit, p, rid, 0))
						record(res)
					}
				case 3:
					ops := []shard.Op{newOp(shard.TypeReserve, p, rid, 1), newOp(shard.TypeReserve, fmt.Sprintf("p%d", r.IntN(5)), rid+"b", 1)}
					rs, _ := e.Batch(ctx, ops, true)
					for _, res := range rs {
						record(res)
					}
				case 4:
					rs, _ := e.Batch(ctx, []shard.Op{newOp(shard.TypeAdd, p, "", 1), newOp(shard.TypeRemove, p, "", 1)}, false)
					for _, res := range rs {
						record(res)
					}
				}
			}
		})
	}
	return func() ([]acked, []time.Time) {
		wg.Wait()
		return got, at
	}
}

// balances returns on hand and reserved after an entry of type typ and
// quantity q: the rules of API.md, written out again as the test's oracle.
func balances(t *testing.T, typ shard.Type, q, onHand, reserved int64) (int64, int64) {
	t.Helper()
	switch typ {
	case shard.TypeAdd, shard.TypeReturn:
		return onHand + q, reserved
	case shard.TypeRemove:
		return onHand - q, reserved
	case shard.TypeReserve:
		return onHand, reserved + q
	case shard.TypeCommit:
		return onHand - q, reserved - q
	case shard.TypeRelease:
		return onHand, reserved - q
	}
	t.Fatalf("entry of unknown type %v", typ)
	return 0, 0
}

// checkSurvived checks that every acknowledged entry is in e's ledger with
// the same id, and that each ledger adds up (versions 1..n, balances = sums).
func checkSurvived(t *testing.T, e *shard.Engine, want []acked) {
	t.Helper()
	ctx := context.Background()
	ledgers := map[string][]shard.Entry{}
	for _, a := range want {
		if _, ok := ledgers[a.product]; ok {
			continue
		}
		var all []shard.Entry
		for after := int64(0); ; {
			page, err := e.History(ctx, a.product, after, shard.HistoryLimitMax)
			if err != nil {
				t.Fatalf("history %s: %v", a.product, err)
			}
			all = append(all, page.Entries...)
			if page.Next == 0 {
				break
			}
			after = page.Next
		}
		ledgers[a.product] = all
		var onHand, reserved int64
		for i, en := range all {
			if en.Version != int64(i+1) {
				t.Fatalf("%s: entry %d has version %d", a.product, i, en.Version)
			}
			onHand, reserved = balances(t, en.Type, en.Quantity, onHand, reserved)
			if en.OnHand != onHand || en.Reserved != reserved || onHand-reserved < 0 {
				t.Fatalf("%s v%d: balances do not add up", a.product, en.Version)
			}
		}
		if st, err := e.Stock(ctx, a.product); err != nil || st.OnHand != onHand || st.Reserved != reserved {
			t.Fatalf("%s: stock %+v %v, sums %d/%d", a.product, st, err, onHand, reserved)
		}
	}
	for _, a := range want {
		for _, en := range a.entries {
			l := ledgers[en.ProductID]
			if en.Version > int64(len(l)) || l[en.Version-1].ID != en.ID {
				t.Errorf("acknowledged entry %s (%s v%d) lost", en.ID, en.ProductID, en.Version)
			}
		}
	}
}

// segments returns the segment files of a shard directory in order.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, strings.Repeat("[0-9]", 20)))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

// blockEnds returns the end offset of every tidwall frame (one WAL block
// each) in a segment file.
func blockEnds(data []byte) []int64 {
	var ends []int64
	for off := 0; off < len(data); {
		n, w := encbin.Uvarint(data[off:])
		if w <= 0 || off+w+int(n) > len(data) {
			break
		}
		off += w + int(n)
		ends = append(ends, int64(off))
	}
	return ends
}

// snapJournal is the real WAL with a camera: it copies its shard's
// directory right before its n-th Write, which is the disk as a power cut
// at that moment leaves it, except that the block being written may be
// partly there. Writes are sequential, so at that moment exactly the blocks
// before it are acknowledged.
type snapJournal struct {
	*wal.Log
	dir, to string
	n       int
	at      time.Time // when the copy was taken
	partial []byte    // the block written right after the copy
	taken   chan struct{}
}

func (j *snapJournal) Write(recs [][]byte) error {
	j.n--
	if j.n != 0 {
		return j.Log.Write(recs)
	}
	segs, _ := filepath.Glob(filepath.Join(j.dir, strings.Repeat("[0-9]", 20)))
	sort.Strings(segs)
	last := segs[len(segs)-1]
	before, _ := os.ReadFile(last)
	j.at = time.Now()
	copyDirFiles(j.dir, j.to)
	err := j.Log.Write(recs)
	after, _ := os.ReadFile(last)
	if len(after) > len(before) {
		j.partial = after[len(before):]
	}
	close(j.taken)
	return err
}

// copyDirFiles copies the files of one flat directory.
func copyDirFiles(from, to string) {
	os.MkdirAll(to, 0o750)
	ents, _ := os.ReadDir(from)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(from, e.Name()))
		os.WriteFile(filepath.Join(to, e.Name()), b, 0o640)
	}
}

// TestPowerLoss cuts the power at a random moment: the log keeps what was
// fsynced, plus any part of the block being written (nothing of it, a
// prefix, zeros where it was, or a frame that promises more than is there).
// After a restart the tail is repaired and every acknowledged write is there.
func TestPowerLoss(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for round := 0; round < 16; round++ {
		dir, crash := t.TempDir(), t.TempDir()
		if err := shard.PrepareDir(dir, 1); err != nil {
			t.Fatal(err)
		}
		copyDirFiles(dir, crash)
		snap := &snapJournal{dir: shard.ShardDir(dir, 0), to: shard.ShardDir(crash, 0), n: 5 + r.IntN(100), taken: make(chan struct{})}
		e := mustOpen(t, shard.Config{Shards: 1}, func(i int, fn func(uint64, []byte) error) (shard.Journal, error) {
			l, _, err := wal.Open(shard.ShardDir(dir, i), wal.Options{}, fn)
			snap.Log = l
			return snap, err
		})
		stop := make(chan struct{})
		wait := load(t, e, 8, stop)
		<-snap.taken
		close(stop)
		all, at := wait()
		e.Close(context.Background())

		segs := segments(t, shard.ShardDir(crash, 0))
		last := segs[len(segs)-1]
		data, _ := os.ReadFile(last)
		switch p := snap.partial; r.IntN(4) {
		case 1: // a prefix of the block reached the disk
			data = append(data, p[:r.IntN(len(p))]...)
		case 2: // the file grew, its data did not arrive
			data = append(data, make([]byte, 1+r.IntN(len(p)))...)
		case 3: // a frame that promises more than is there
			data = encbin.AppendUvarint(data, uint64(len(p)+100))
			data = append(data, p[:min(len(p), 7)]...)
		}
		os.WriteFile(last, data, 0o640)

		var before []acked
		for i, a := range all {
			if at[i].Before(snap.at) {
				before = append(before, a)
			}
		}
		if len(before) == 0 {
			t.Fatalf("round %d: nothing acknowledged before the power cut", round)
		}
		re := openWALEngine(t, crash, 1)
		checkSurvived(t, re, before)
		re.Close(context.Background())
	}
}

// TestCorruptionBeforeTheTailStopsStartup flips a byte inside an early,
// acknowledged block: start-up fails and names the segment and offset.
func TestCorruptionBeforeTheTailStopsStartup(t *testing.T) {
	dir := t.TempDir()
	e := openWALEngine(t, dir, 1)
	for i := 0; i < 50; i++ {
		if _, err := e.Write(context.Background(), newOp(shard.TypeAdd, "p", "", 1)); err != nil {
			t.Fatal(err)
		}
	}
	e.Close(context.Background())
	seg := segments(t, shard.ShardDir(dir, 0))[0]
	data, _ := os.ReadFile(seg)
	ends := blockEnds(data)
	at := ends[10] + 20 // inside block 12 of 51
	data[at] ^= 0x40
	os.WriteFile(seg, data, 0o640)

	e2, err := shard.Open(shard.Config{Shards: 1}, openWAL(dir))
	if err != nil {
		t.Fatal(err)
	}
	err = e2.Wait(context.Background())
	var ce *wal.CorruptError
	if !errors.As(err, &ce) || ce.Segment != seg || ce.Offset != ends[10] {
		t.Fatalf("got %v, want a CorruptError for %s at offset %d", err, seg, ends[10])
	}
	if e2.Ready() {
		t.Error("ready on a corrupt log")
	}
}
