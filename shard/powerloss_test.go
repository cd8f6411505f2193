package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/wal"
)

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
		n, w := binary.Uvarint(data[off:])
		if w <= 0 || off+w+int(n) > len(data) {
			break
		}
		off += w + int(n)
		ends = append(ends, int64(off))
	}
	return ends
}

// snapJournal copies its shard's directory right before its n-th Write:
// the disk as a power cut at that moment leaves it, except that the block
// being written may be partly there. Writes are sequential, so at that
// moment exactly the blocks before it are acknowledged.
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
		if err := PrepareDir(dir, 1); err != nil {
			t.Fatal(err)
		}
		copyDirFiles(dir, crash)
		snap := &snapJournal{dir: ShardDir(dir, 0), to: ShardDir(crash, 0), n: 5 + r.IntN(100), taken: make(chan struct{})}
		e := mustOpen(t, Config{Shards: 1}, func(i int, fn func(uint64, []byte) error) (Journal, error) {
			l, _, err := wal.Open(ShardDir(dir, i), wal.Options{}, fn)
			snap.Log = l
			return snap, err
		})
		stop := make(chan struct{})
		wait := load(t, e, 8, stop)
		<-snap.taken
		close(stop)
		all, at := wait()
		e.Close(context.Background())

		segs := segments(t, ShardDir(crash, 0))
		last := segs[len(segs)-1]
		data, _ := os.ReadFile(last)
		switch p := snap.partial; r.IntN(4) {
		case 1: // a prefix of the block reached the disk
			data = append(data, p[:r.IntN(len(p))]...)
		case 2: // the file grew, its data did not arrive
			data = append(data, make([]byte, 1+r.IntN(len(p)))...)
		case 3: // a frame that promises more than is there
			data = binary.AppendUvarint(data, uint64(len(p)+100))
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
		if _, err := e.Write(context.Background(), add("p", 1)); err != nil {
			t.Fatal(err)
		}
	}
	e.Close(context.Background())
	seg := segments(t, ShardDir(dir, 0))[0]
	data, _ := os.ReadFile(seg)
	ends := blockEnds(data)
	at := ends[10] + 20 // inside block 12 of 51
	data[at] ^= 0x40
	os.WriteFile(seg, data, 0o640)

	e2, err := Open(Config{Shards: 1}, openWAL(dir))
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
