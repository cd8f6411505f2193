package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// decodeBlock returns the records of block b, or the reason b is invalid.
func decodeBlock(b []byte, seq uint64) ([][]byte, string) {
	if reason, _ := checkBlock(b, seq); reason != "" {
		return nil, reason
	}
	var recs [][]byte
	for pos := headerBytes; pos < len(b); {
		var r []byte
		r, pos = nextRecord(b, pos)
		recs = append(recs, r)
	}
	return recs, ""
}

func TestBlockRoundTrip(t *testing.T) {
	recs := [][]byte{[]byte("a"), bytes.Repeat([]byte{'b'}, 127), bytes.Repeat([]byte{'c'}, 128), bytes.Repeat([]byte{0}, 300)}
	offs := make([]uint64, len(recs))
	b := appendBlock(nil, 42, recs, offs)
	if len(b) != blockBytes(recs) {
		t.Errorf("block length: got %d, want %d", len(b), blockBytes(recs))
	}
	got, reason := decodeBlock(b, 42)
	if reason != "" || len(got) != len(recs) {
		t.Fatalf("decode: got %d records, %q; want %d", len(got), reason, len(recs))
	}
	for i := range recs {
		if !bytes.Equal(got[i], recs[i]) {
			t.Errorf("record %d: got %q, want %q", i, got[i], recs[i])
		}
		if r, _ := nextRecord(b, int(offs[i])); !bytes.Equal(r, recs[i]) {
			t.Errorf("record %d at offset %d: got %q, want %q", i, offs[i], r, recs[i])
		}
	}
	if _, reason := decodeBlock(b, 43); reason == "" {
		t.Error("decode with the wrong seq: got no error")
	}
}

// FuzzDecodeBlock checks that the block decoder never panics and that every
// block it accepts is exactly the encoding of the records it returns.
func FuzzDecodeBlock(f *testing.F) {
	f.Add(appendBlock(nil, 1, [][]byte{[]byte("x")}, nil), uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, seq uint64) {
		recs, reason := decodeBlock(b, seq)
		if reason != "" {
			return
		}
		if len(recs) == 0 {
			t.Fatal("accepted a block without records")
		}
		if again := appendBlock(nil, seq, recs, nil); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}

// FuzzOpen writes arbitrary bytes as the only segment and checks that Open
// either reports a CorruptError or keeps a stable prefix: reopening after an
// append repairs nothing and replays the same records plus the new ones.
func FuzzOpen(f *testing.F) {
	f.Add(appendFrame(nil, appendBlock(nil, 1, [][]byte{[]byte("x")}, nil)))
	f.Fuzz(func(t *testing.T, seg []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), seg, 0o640); err != nil {
			t.Fatal(err)
		}
		opts := Options{SegmentBytes: 1 << 10, BlockBytesMax: 4 << 10}
		l, rep, got, err := tryOpen(dir, opts)
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open: got %v, want nil or a CorruptError", err)
			}
			return
		}
		if rep.Repaired && rep.RepairOffset+rep.RepairCutBytes != int64(len(seg)) {
			t.Errorf("repair at %d cutting %d bytes of a %d-byte segment", rep.RepairOffset, rep.RepairCutBytes, len(seg))
		}
		readAll(t, l, got)
		want := append(got, commit(t, l, [][]byte{[]byte("appended")})...)
		l.Close()
		l, rep, got = openLog(t, dir, opts)
		defer l.Close()
		if rep.Repaired {
			t.Errorf("reopen repaired again: %+v", rep)
		}
		sameRecs(t, got, want)
	})
}

// appendFrame appends block with tidwall's length prefix, as in a segment file.
func appendFrame(dst, block []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(block))), block...)
}
