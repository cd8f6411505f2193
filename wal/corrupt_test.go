package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// layout describes a pristine log built by buildLayout.
type layout struct {
	dir    string
	opts   Options
	segs   []segLayout
	blocks [][]rec // blocks[i] holds the records of block seq i+1
}

// segLayout is one segment file of a layout.
type segLayout struct {
	name  string
	first uint64
	size  int
	spans []span
}

// span is a block in a segment file: its tidwall frame starts at off, the
// block ends before end.
type span struct{ off, end int }

// frameBytes returns the size of the tidwall length prefix of the block.
func (s span) frameBytes() int { return uvarintBytes(uint64(s.end - s.off - 1)) }

// buildLayout writes a log of several small segments whose last segment
// holds at least three blocks.
func buildLayout(t *testing.T) *layout {
	t.Helper()
	lay := &layout{dir: t.TempDir(), opts: Options{SegmentBytes: 1 << 10, BlockBytesMax: 4 << 10}}
	l, _, _ := openLog(t, lay.dir, lay.opts)
	defer l.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	for {
		lay.blocks = append(lay.blocks, commit(t, l, genBlock(rng, 4, 80)))
		lay.scan(t)
		if len(lay.segs) >= 4 && len(lay.lastSeg().spans) >= 3 {
			return lay
		}
	}
}

// scan reads the segment layout from the files.
func (lay *layout) scan(t *testing.T) {
	t.Helper()
	lay.segs = nil
	segs, err := listSegments(lay.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		data, err := os.ReadFile(s.path)
		if err != nil {
			t.Fatal(err)
		}
		sl := segLayout{name: filepath.Base(s.path), first: s.first, size: len(data)}
		for pos := 0; pos < len(data); {
			size, vn := binary.Uvarint(data[pos:])
			end := pos + vn + int(size)
			sl.spans = append(sl.spans, span{pos, end})
			pos = end
		}
		lay.segs = append(lay.segs, sl)
	}
}

func (lay *layout) lastSeg() segLayout { return lay.segs[len(lay.segs)-1] }

// lastSpan is the last block of the log.
func (lay *layout) lastSpan() span {
	s := lay.lastSeg().spans
	return s[len(s)-1]
}

// total is the number of blocks in the pristine log.
func (lay *layout) total() int { return len(lay.blocks) }

// outcome is what Open must do with a damaged copy of a layout.
type outcome struct {
	blocks  int    // blocks replayed
	corrupt bool   // Open fails with a *CorruptError
	repair  bool   // Open cuts a torn tail
	seg     string // file name of the corrupt or repaired segment
	off     int    // offset in the CorruptError, or where the repair cut
	cut     int    // bytes the repair cut off
}

func survive(blocks int) outcome { return outcome{blocks: blocks} }

func repaired(blocks int, seg string, off, cut int) outcome {
	return outcome{blocks: blocks, repair: true, seg: seg, off: off, cut: cut}
}

func corruptAt(seg string, off int) outcome { return outcome{corrupt: true, seg: seg, off: off} }

// File mutations, all on segment files of dir.

func truncateFile(t *testing.T, dir, name string, size int) {
	t.Helper()
	if err := os.Truncate(filepath.Join(dir, name), int64(size)); err != nil {
		t.Fatal(err)
	}
}

func editFile(t *testing.T, dir, name string, edit func(b []byte) []byte) {
	t.Helper()
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o640); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, dir, name string, off int) {
	t.Helper()
	editFile(t, dir, name, func(b []byte) []byte { b[off] ^= 0x20; return b })
}

func appendZeros(t *testing.T, dir, name string, n int) {
	t.Helper()
	editFile(t, dir, name, func(b []byte) []byte { return append(b, make([]byte, n)...) })
}

// editHeader changes the header of the block at sp and rewrites its checksum.
func editHeader(t *testing.T, dir, name string, sp span, edit func(h []byte)) {
	t.Helper()
	editFile(t, dir, name, func(b []byte) []byte {
		h := b[sp.off+sp.frameBytes():][:headerBytes]
		edit(h)
		binary.LittleEndian.PutUint32(h[headerCRCOffset:], crc32.Checksum(h[:headerCRCOffset], castagnoli))
		return b
	})
}

// setFrame rewrites the tidwall length prefix of the block at sp to size,
// which must take as many bytes as the old one.
func setFrame(t *testing.T, dir, name string, sp span, size int) {
	t.Helper()
	if uvarintBytes(uint64(size)) != sp.frameBytes() {
		t.Fatalf("frame %d does not fit %d bytes", size, sp.frameBytes())
	}
	editFile(t, dir, name, func(b []byte) []byte {
		binary.PutUvarint(b[sp.off:], uint64(size))
		return b
	})
}

func removeFile(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// corruptCase damages dir, a copy of lay, and returns what Open must do.
type corruptCase struct {
	name   string
	damage func(t *testing.T, lay *layout, dir string) outcome
}

func corruptCases(lay *layout) []corruptCase {
	last := lay.lastSeg()
	lastSp := lay.lastSpan()
	mid := lay.segs[1]
	midBlock := mid.spans[len(mid.spans)/2]
	n := lay.total()
	lastFirst := int(last.first)

	cases := []corruptCase{
		{"clean", func(*testing.T, *layout, string) outcome { return survive(n) }},
		{"bad record crc in last block", func(t *testing.T, lay *layout, dir string) outcome {
			flipByte(t, dir, last.name, lastSp.end-1)
			return repaired(n-1, last.name, lastSp.off, lastSp.end-lastSp.off)
		}},
		{"bad header crc in last block", func(t *testing.T, lay *layout, dir string) outcome {
			flipByte(t, dir, last.name, lastSp.off+lastSp.frameBytes()+3)
			return repaired(n-1, last.name, lastSp.off, lastSp.end-lastSp.off)
		}},
		{"last block zeroed in place", func(t *testing.T, lay *layout, dir string) outcome {
			editFile(t, dir, last.name, func(b []byte) []byte { clear(b[lastSp.off:]); return b })
			return repaired(n-1, last.name, lastSp.off, lastSp.end-lastSp.off)
		}},
		{"last block length one longer", func(t *testing.T, lay *layout, dir string) outcome {
			setFrame(t, dir, last.name, lastSp, lastSp.end-lastSp.off-lastSp.frameBytes()+1)
			return repaired(n-1, last.name, lastSp.off, lastSp.end-lastSp.off)
		}},
		{"last block length one shorter", func(t *testing.T, lay *layout, dir string) outcome {
			setFrame(t, dir, last.name, lastSp, lastSp.end-lastSp.off-lastSp.frameBytes()-1)
			return corruptAt(last.name, lastSp.off)
		}},
		{"last block wrong seq", func(t *testing.T, lay *layout, dir string) outcome {
			editHeader(t, dir, last.name, lastSp, func(h []byte) { h[1]++ })
			return corruptAt(last.name, lastSp.off)
		}},
		{"last block wrong seq and torn", func(t *testing.T, lay *layout, dir string) outcome {
			editHeader(t, dir, last.name, lastSp, func(h []byte) { h[1]++ })
			truncateFile(t, dir, last.name, lastSp.end-1)
			return corruptAt(last.name, lastSp.off)
		}},
		{"last block unknown version", func(t *testing.T, lay *layout, dir string) outcome {
			editHeader(t, dir, last.name, lastSp, func(h []byte) { h[0] = formatVersion + 1 })
			return corruptAt(last.name, lastSp.off)
		}},
		{"last block zero count", func(t *testing.T, lay *layout, dir string) outcome {
			editHeader(t, dir, last.name, lastSp, func(h []byte) { clear(h[9:13]) })
			return corruptAt(last.name, lastSp.off)
		}},
		{"bad header crc mid last segment", func(t *testing.T, lay *layout, dir string) outcome {
			sp := last.spans[0]
			flipByte(t, dir, last.name, sp.off+sp.frameBytes()+3)
			return corruptAt(last.name, sp.off)
		}},
		{"bad record crc mid last segment", func(t *testing.T, lay *layout, dir string) outcome {
			sp := last.spans[1]
			flipByte(t, dir, last.name, sp.end-1)
			return corruptAt(last.name, sp.off)
		}},
		{"length one longer mid last segment", func(t *testing.T, lay *layout, dir string) outcome {
			sp := last.spans[1]
			setFrame(t, dir, last.name, sp, sp.end-sp.off-sp.frameBytes()+1)
			return corruptAt(last.name, sp.off)
		}},
		{"wrong seq mid last segment", func(t *testing.T, lay *layout, dir string) outcome {
			sp := last.spans[1]
			editHeader(t, dir, last.name, sp, func(h []byte) { h[1] += 7 })
			return corruptAt(last.name, sp.off)
		}},
		{"last segment torn in its first block", func(t *testing.T, lay *layout, dir string) outcome {
			truncateFile(t, dir, last.name, 5)
			return repaired(lastFirst-1, last.name, 0, 5)
		}},
		{"empty last segment", func(t *testing.T, lay *layout, dir string) outcome {
			truncateFile(t, dir, last.name, 0)
			return survive(lastFirst - 1)
		}},
		{"missing last segment", func(t *testing.T, lay *layout, dir string) outcome {
			removeFile(t, dir, last.name)
			return survive(lastFirst - 1)
		}},
		{"first segment bad record crc", func(t *testing.T, lay *layout, dir string) outcome {
			sp := lay.segs[0].spans[0]
			flipByte(t, dir, lay.segs[0].name, sp.end-1)
			return corruptAt(lay.segs[0].name, sp.off)
		}},
		{"middle segment bad header crc", func(t *testing.T, lay *layout, dir string) outcome {
			flipByte(t, dir, mid.name, mid.spans[0].frameBytes()+3)
			return corruptAt(mid.name, 0)
		}},
		{"middle segment bad record crc", func(t *testing.T, lay *layout, dir string) outcome {
			flipByte(t, dir, mid.name, midBlock.end-1)
			return corruptAt(mid.name, midBlock.off)
		}},
		{"middle segment torn", func(t *testing.T, lay *layout, dir string) outcome {
			sp := mid.spans[len(mid.spans)-1]
			truncateFile(t, dir, mid.name, sp.end-1)
			return corruptAt(mid.name, sp.off)
		}},
		{"middle segment zero fill", func(t *testing.T, lay *layout, dir string) outcome {
			appendZeros(t, dir, mid.name, 20)
			return corruptAt(mid.name, mid.size)
		}},
		{"middle segment wrong seq", func(t *testing.T, lay *layout, dir string) outcome {
			editHeader(t, dir, mid.name, midBlock, func(h []byte) { h[1]-- })
			return corruptAt(mid.name, midBlock.off)
		}},
		{"middle segment empty", func(t *testing.T, lay *layout, dir string) outcome {
			truncateFile(t, dir, mid.name, 0)
			return corruptAt(lay.segs[2].name, 0)
		}},
		{"gap between segments", func(t *testing.T, lay *layout, dir string) outcome {
			removeFile(t, dir, mid.name)
			return corruptAt(lay.segs[2].name, 0)
		}},
		{"first segment missing", func(t *testing.T, lay *layout, dir string) outcome {
			removeFile(t, dir, lay.segs[0].name)
			return corruptAt(lay.segs[1].name, 0)
		}},
		{"START leftover", func(t *testing.T, lay *layout, dir string) outcome {
			name := mid.name + ".START"
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o640); err != nil {
				t.Fatal(err)
			}
			return corruptAt(name, 0)
		}},
		{"END leftover", func(t *testing.T, lay *layout, dir string) outcome {
			name := last.name + ".END"
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o640); err != nil {
				t.Fatal(err)
			}
			return corruptAt(name, 0)
		}},
	}
	for _, z := range []int{1, 2, 16, 17, 18, 300, 5000} {
		cases = append(cases, corruptCase{fmt.Sprintf("zero fill %d bytes", z), func(t *testing.T, lay *layout, dir string) outcome {
			appendZeros(t, dir, last.name, z)
			return repaired(n, last.name, last.size, z)
		}})
	}
	for k := lastSp.off; k < lastSp.end; k++ {
		cases = append(cases, corruptCase{fmt.Sprintf("torn last block at %d", k-lastSp.off), func(t *testing.T, lay *layout, dir string) outcome {
			truncateFile(t, dir, last.name, k)
			if k == lastSp.off {
				return survive(n - 1) // cut at a block boundary: nothing to repair
			}
			return repaired(n-1, last.name, lastSp.off, k-lastSp.off)
		}})
	}
	return cases
}

func TestCorruption(t *testing.T) {
	lay := buildLayout(t)
	for _, tc := range corruptCases(lay) {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(lay.dir)); err != nil {
				t.Fatal(err)
			}
			want := tc.damage(t, lay, dir)
			checkOutcome(t, lay, dir, want)
		})
	}
}

// checkOutcome opens dir and checks that Open does what want says; after a
// successful Open it appends, reopens and checks that every record is kept.
func checkOutcome(t *testing.T, lay *layout, dir string, want outcome) {
	t.Helper()
	before := snapshot(t, dir)
	l, rep, got, err := tryOpen(dir, lay.opts)
	if want.corrupt {
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Fatalf("Open: got %v, want a CorruptError", err)
		}
		if filepath.Base(ce.Segment) != want.seg || ce.Offset != int64(want.off) {
			t.Errorf("CorruptError: got %s at %d, want %s at %d (%v)", filepath.Base(ce.Segment), ce.Offset, want.seg, want.off, err)
		}
		if after := snapshot(t, dir); !equalSnapshots(before, after) {
			t.Errorf("Open changed the files of a corrupt log")
		}
		return
	}
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var kept []rec
	for _, b := range lay.blocks[:want.blocks] {
		kept = append(kept, b...)
	}
	sameRecs(t, got, kept)
	if rep.Blocks != uint64(want.blocks) || rep.Records != uint64(len(kept)) {
		t.Errorf("Report: got %d blocks, %d records; want %d, %d", rep.Blocks, rep.Records, want.blocks, len(kept))
	}
	if rep.Repaired != want.repair {
		t.Errorf("Report.Repaired: got %v, want %v (%+v)", rep.Repaired, want.repair, rep)
	} else if want.repair && (filepath.Base(rep.RepairSegment) != want.seg || rep.RepairOffset != int64(want.off) ||
		rep.RepairCutBytes != int64(want.cut) || rep.RepairReason == "") {
		t.Errorf("repair: got %s at %d cutting %d (%q), want %s at %d cutting %d",
			filepath.Base(rep.RepairSegment), rep.RepairOffset, rep.RepairCutBytes, rep.RepairReason, want.seg, want.off, want.cut)
	}

	rng := rand.New(rand.NewPCG(8, 8))
	for range 3 {
		kept = append(kept, commit(t, l, genBlock(rng, 4, 80))...)
	}
	readAll(t, l, kept)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, rep, got = openLog(t, dir, lay.opts)
	defer l.Close()
	sameRecs(t, got, kept)
	if rep.Repaired {
		t.Errorf("second reopen repaired again: %+v", rep)
	}
}

// snapshot returns the names and contents of the files in dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func equalSnapshots(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
