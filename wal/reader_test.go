package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// readAll reads what r has not read yet, up to block until, and returns
// copies of the records.
func readNext(t *testing.T, r *Reader, until uint64) ([]rec, error) {
	t.Helper()
	var got []rec
	_, err := r.Next(until, func(loc uint64, data []byte) error {
		got = append(got, rec{loc, bytes.Clone(data)})
		return nil
	})
	return got, err
}

// dirState is every file in dir with its contents, to check that a Reader
// changed nothing.
func dirState(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func equalRecs(a, b []rec) bool {
	return slices.EqualFunc(a, b, func(x, y rec) bool { return x.loc == y.loc && bytes.Equal(x.data, y.data) })
}

// TestReaderFollowsTheLog reads a log of several segments beside its
// writer: the records and locators are those Commit returned, a bound
// stops at a block, later calls pick up what was written since, and the
// files are left as they were.
func TestReaderFollowsTheLog(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10}
	l, _, _ := openLog(t, dir, opts)
	defer l.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	var want []rec
	var blockEnds []int // records in blocks 1..i
	for range 40 {
		want = append(want, commit(t, l, genBlock(rng, 8, 300))...)
		blockEnds = append(blockEnds, len(want))
	}
	if segs, _ := listSegments(dir); len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	before := dirState(t, dir)

	r := NewReader(dir)
	got, err := readNext(t, r, 17)
	if err != nil || !equalRecs(got, want[:blockEnds[16]]) || r.Seq() != 17 {
		t.Fatalf("up to block 17: %d records, seq %d, err %v; want %d records", len(got), r.Seq(), err, blockEnds[16])
	}
	rest, err := readNext(t, r, 0)
	if err != nil || !equalRecs(append(got, rest...), want) || r.Seq() != 40 {
		t.Fatalf("the rest: %d records, seq %d, err %v", len(rest), r.Seq(), err)
	}
	if more, err := readNext(t, r, 0); err != nil || len(more) != 0 || r.Tail().Segment != "" {
		t.Fatalf("at the end: %d records, tail %+v, err %v", len(more), r.Tail(), err)
	}
	if after := dirState(t, dir); !mapsEqual(before, after) {
		t.Fatal("the reader changed the log's files")
	}
	newer := commit(t, l, genBlock(rng, 8, 300))
	if got, err := readNext(t, r, 0); err != nil || !equalRecs(got, newer) {
		t.Fatalf("after one more block: %d records, err %v; want %d", len(got), err, len(newer))
	}
}

func mapsEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestReaderTornTailAndCorruption: a torn tail ends the reading without an
// error and without a repair, and is read once it is complete; a bad byte
// before the tail is a *CorruptError.
func TestReaderTornTailAndCorruption(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10}
	l, _, _ := openLog(t, dir, opts)
	rng := rand.New(rand.NewPCG(3, 4))
	var want []rec
	for range 30 {
		want = append(want, commit(t, l, genBlock(rng, 8, 300))...)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(dir)
	tailPath := segs[len(segs)-1].path
	whole, _ := os.ReadFile(tailPath)
	// Half of a further block, as a writer leaves it mid-write.
	block := appendBlock(nil, 31, genBlock(rng, 4, 100), nil)
	frame := append(appendUvarint(nil, uint64(len(block))), block...)
	if err := os.WriteFile(tailPath, append(bytes.Clone(whole), frame[:len(frame)/2]...), 0o640); err != nil {
		t.Fatal(err)
	}
	r := NewReader(dir)
	got, err := readNext(t, r, 0)
	if err != nil || !equalRecs(got, want) {
		t.Fatalf("torn tail: %d records, err %v; want %d", len(got), err, len(want))
	}
	if tl := r.Tail(); tl.Segment != tailPath || tl.Offset != int64(len(whole)) || tl.Bytes != int64(len(frame)/2) {
		t.Errorf("tail %+v, want %s at %d, %d bytes", tl, tailPath, len(whole), len(frame)/2)
	}
	if b, _ := os.ReadFile(tailPath); len(b) != len(whole)+len(frame)/2 {
		t.Errorf("the reader cut the tail: %d bytes left", len(b))
	}
	// The writer finishes the block.
	if err := os.WriteFile(tailPath, append(bytes.Clone(whole), frame...), 0o640); err != nil {
		t.Fatal(err)
	}
	if got, err := readNext(t, r, 0); err != nil || len(got) == 0 || r.Seq() != 31 {
		t.Fatalf("completed block: %d records, seq %d, err %v", len(got), r.Seq(), err)
	}

	// A flipped byte in the first segment, which is not the last.
	first, _ := os.ReadFile(segs[0].path)
	first[len(first)/2] ^= 0x40
	if err := os.WriteFile(segs[0].path, first, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = readNext(t, NewReader(dir), 0)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Segment != segs[0].path {
		t.Fatalf("corrupt first segment: err %v, want a *CorruptError naming %s", err, segs[0].path)
	}
}

func appendUvarint(b []byte, x uint64) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}
