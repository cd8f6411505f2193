package shard

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"slices"
)

// Settled reservations leave RAM at each snapshot: reservation ids are never
// reused, so every reservation ever made must still refuse its id and answer
// a read, but only the active ones are live state. A snapshot file ends with
// a run of every reservation settled in the covered prefix of the log,
// sorted by a stable hash of (product, reservation id); RAM keeps a Bloom
// filter over it (settledBloomBits per reservation) and a sparse index (the
// hash and offset of every settledIndexEvery-th record). A lookup that the
// filter passes reads one stretch of the run with one pread. Reservations
// settled since the snapshot stay in State.resv, with their ids in
// State.fresh for the next snapshot, which merges them into a new run.

const (
	// settledBloomBits is the Bloom filter's size per settled reservation:
	// with settledBloomHashes hash functions its false positive rate is
	// about 0.9% (0.94% measured over 225,000 reservations; each costs
	// one pread of a few KiB from the page cache).
	settledBloomBits   = 10
	settledBloomHashes = 7
	// settledIndexEvery records of the run share one sparse index point
	// (16 bytes): a quarter byte per reservation; a lookup reads at most
	// this many records, a few KiB.
	settledIndexEvery = 64
)

// settledRec is one settled reservation, as the run stores it.
type settledRec struct {
	hash      uint64
	productID string
	id        string
	meta      uint64 // as resvRecord.meta
	settle    int64  // version of the settling entry
}

func (r *settledRec) record() resvRecord { return resvRecord{meta: r.meta, settle: r.settle} }

// compareSettled orders a run: by hash, then by the ids.
func compareSettled(a, b *settledRec) int {
	if c := cmp.Compare(a.hash, b.hash); c != 0 {
		return c
	}
	if c := cmp.Compare(a.productID, b.productID); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// stableHash hashes a (product, reservation id) pair the same way in every
// process (FNV-1a over both, a zero byte between, then MurmurHash3's
// finalizer). Unlike State.hash it is not seeded: a client that makes
// collisions only costs itself preads, since a lookup compares the ids.
func stableHash(productID, id string) uint64 {
	h := fnv1a(fnvOffset, productID) * fnvPrime // the zero byte between
	return mix64(fnv1a(h, id))
}

// bloom is a blocked Bloom filter over stable hashes: a key's
// settledBloomHashes bits all lie in one 512-bit block, one cache line, so
// that adding or probing a key costs one cache miss, not one per bit
// (which made the filter 40% of a snapshot's load). For the same size its
// false positive rate is a little higher than a classic filter's.
type bloom struct {
	words  []uint64
	blocks uint64
}

const bloomBlockWords = 8 // 512 bits

func newBloom(n int) bloom {
	blocks := newBloomBlocks(n)
	return bloom{words: make([]uint64, blocks*bloomBlockWords), blocks: blocks}
}

// newBloomBlocks is the size in blocks of the filter over n hashes.
func newBloomBlocks(n int) uint64 { return uint64(max(1, (n*settledBloomBits+511)/512)) }

// probes calls fn with the word index and bit mask of each of h's bits, as
// long as fn returns true.
func (b *bloom) probes(h uint64, fn func(w int, mask uint64) bool) bool {
	blk, _ := bits.Mul64(h, b.blocks)
	base := int(blk) * bloomBlockWords
	h2 := bits.RotateLeft64(h, 29) * 0x9e3779b97f4a7c15
	for i := 0; i < settledBloomHashes; i++ {
		bit := h2 >> (9 * i) & 511
		if !fn(base+int(bit>>6), 1<<(bit&63)) {
			return false
		}
	}
	return true
}

func (b *bloom) add(h uint64) {
	b.probes(h, func(w int, mask uint64) bool { b.words[w] |= mask; return true })
}

func (b *bloom) mayHave(h uint64) bool {
	if b.blocks == 0 {
		return false
	}
	return b.probes(h, func(w int, mask uint64) bool { return b.words[w]&mask != 0 })
}

// settledStore is the run of settled reservations of one snapshot file,
// read with ReadAt: it is immutable, safe for concurrent use, and shared by
// the State (lookups, on the actor goroutine) and the snapshot writer (the
// next merge). The file stays open while a State uses it, also after the
// snapshot is pruned.
type settledStore struct {
	f          *os.File
	start, end int64 // the run's records, in the file
	n          int
	filter     bloom
	index      []settledPoint
}

type settledPoint struct {
	hash uint64
	off  int64 // of the record, from start
}

// get returns the record of a settled reservation, and false if the run
// does not hold it. An error is a read or format failure of the file.
func (st *settledStore) get(productID, id string) (resvRecord, bool, error) {
	if st == nil || st.n == 0 {
		return resvRecord{}, false, nil
	}
	h := stableHash(productID, id)
	if !st.filter.mayHave(h) {
		return resvRecord{}, false, nil
	}
	// The records with hash h lie after the last index point below h and
	// before the first point above it.
	i, _ := slices.BinarySearchFunc(st.index, h, func(p settledPoint, h uint64) int { return cmp.Compare(p.hash, h) })
	from := int64(0)
	if i > 0 {
		from = st.index[i-1].off
	}
	j := i
	for j < len(st.index) && st.index[j].hash <= h {
		j++
	}
	to := st.end - st.start
	if j < len(st.index) {
		to = st.index[j].off
	}
	buf := make([]byte, to-from)
	if _, err := st.f.ReadAt(buf, st.start+from); err != nil {
		return resvRecord{}, false, fmt.Errorf("read settled reservations of %s: %w", st.f.Name(), err)
	}
	d := snapDecoder{b: buf}
	for len(d.b) > 0 {
		var r settledRec
		if err := d.settled(&r); err != nil {
			return resvRecord{}, false, fmt.Errorf("settled reservations of %s: %w", st.f.Name(), err)
		}
		if r.hash == h && r.productID == productID && r.id == id {
			return r.record(), true, nil
		}
		if r.hash > h {
			break
		}
	}
	return resvRecord{}, false, nil
}

// each calls fn with every record of the run, in order.
func (st *settledStore) each(fn func(*settledRec) error) error {
	if st == nil || st.n == 0 {
		return nil
	}
	r := newSnapReader(st.f, st.start, st.end)
	for range st.n {
		var rec settledRec
		if r.settled(&rec); r.err != nil {
			return fmt.Errorf("settled reservations of %s: %w", st.f.Name(), r.err)
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
	return nil
}

func (st *settledStore) close() {
	if st != nil && st.f != nil {
		st.f.Close()
	}
}

// snapDecoder reads the records of a run from memory.
type snapDecoder struct{ b []byte }

var errSnapShort = errors.New("record cut short")

func (d *snapDecoder) settled(r *settledRec) error {
	if len(d.b) < 8 {
		return errSnapShort
	}
	r.hash = binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	var ok bool
	if r.productID, ok = d.str(); !ok {
		return errSnapShort
	}
	if r.id, ok = d.str(); !ok {
		return errSnapShort
	}
	m, n := binary.Uvarint(d.b)
	if n <= 0 {
		return errSnapShort
	}
	d.b = d.b[n:]
	v, n := binary.Varint(d.b)
	if n <= 0 {
		return errSnapShort
	}
	d.b = d.b[n:]
	r.meta, r.settle = m, v
	return nil
}

func (d *snapDecoder) str() (string, bool) {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		return "", false
	}
	s := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return s, true
}
