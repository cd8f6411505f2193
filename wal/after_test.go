package wal

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestOpenAfter: for every record of a log of many segments, OpenAfter at
// its locator replays exactly that record and those after it, reads none
// of the segments wholly before it, and leaves a log that appends where
// Open's would.
func TestOpenAfter(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1 << 10}
	l, _, _ := openLog(t, dir, opts)
	rng := rand.New(rand.NewPCG(3, 4))
	var all []rec
	for range 60 {
		all = append(all, commit(t, l, genBlock(rng, 4, 100))...)
	}
	l.Close()
	for i := 0; i < len(all); i += 7 {
		after := all[i].loc
		var got []rec
		l, rep, err := OpenAfter(dir, opts, after, func(loc uint64, data []byte) error {
			got = append(got, rec{loc, bytes.Clone(data)})
			return nil
		})
		if err != nil {
			t.Fatalf("OpenAfter %#x: %v", after, err)
		}
		sameRecs(t, got, all[i:])
		seg, _ := splitLoc(after)
		skipped := 0
		for _, s := range mustList(t, dir) {
			if s < seg {
				skipped++
			}
		}
		if rep.Skipped != skipped {
			t.Errorf("OpenAfter %#x skipped %d segments, want %d", after, rep.Skipped, skipped)
		}
		if l.LastSeq() != rep.Blocks || rep.Blocks != 60 {
			t.Errorf("OpenAfter %#x: last seq %d, blocks %d, want 60", after, l.LastSeq(), rep.Blocks)
		}
		l.Close()
	}
}

func mustList(t *testing.T, dir string) []uint64 {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var firsts []uint64
	for _, s := range segs {
		firsts = append(firsts, s.first)
	}
	return firsts
}
