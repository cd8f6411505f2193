package shard

import "math/bits"

// table is a hash table from hkey to V: bucketized cuckoo hashing, 8 slots
// to a bucket and 2 candidate buckets per key, in 256 independently grown
// parts, each grown by a third when 88% full. It replaces Go maps for the
// shard's two big indexes (reservations and idempotency keys) because:
//
//   - keys are already uniform 128-bit hashes, so their bits index buckets
//     directly, with no second hash;
//   - a lookup reads at most 2 buckets, hit or miss, and most lookups on
//     the hot path are misses (new keys, new reservation ids);
//   - each bucket has an 8-byte tag word beside the buckets (one byte of the
//     key per slot, 0 for empty): a miss reads only the two tag words, and
//     the tag words of a million keys (about 1.3 MB) stay in cache far
//     better than the 42 MB of slots. With 8 slots a bucket, cuckoo
//     displacements (each a cache miss) are rare at 88% fill. Placing a key finds its free slot from the
//     tags too, so inserting writes a slot without first reading it;
//   - parts stay 66-88% full (growing by a third, not doubling), where Go
//     maps measured 40-60% (60-84 bytes per 32-byte entry at 1M entries):
//     this is what keeps a product or a hold under 200 bytes;
//   - a part holds 1/256 of the keys, so growing one copies little and
//     never stalls the actor for long.
//
// The zero key marks an empty slot: State.hash never returns it.
type table[V any] struct {
	parts []tablePart[V] // tableParts of them; 1 in a scratch fork
	shift uint8          // 64 - log2(len(parts)): the top bits pick the part
	n     int
}

// newTable returns an empty table of 2^partBits parts. A State's tables have
// tableParts; a scratch fork's (State.fork) have one, since it holds the
// few keys of one batch and is made for many atomic batches: 256 empty parts
// are 14 KiB to clear and for the GC to scan.
func newTable[V any](partBits int) table[V] {
	return table[V]{parts: make([]tablePart[V], 1<<partBits), shift: uint8(64 - partBits)}
}

const (
	tablePartBits  = 8
	tableParts     = 1 << tablePartBits
	tableSlots     = 8  // slots per bucket, one tag byte each in a uint64
	tableKicksMax  = 64 // cuckoo displacements before a part grows
	tableBucketMin = 2
	// tableFillMax is the fill, in percent, at which a part grows before
	// inserting: past ~90% displacement chains (each a cache miss) get long.
	tableFillMax = 88
)

type tableSlot[V any] struct {
	k hkey
	v V
}

type tableBucket[V any] [tableSlots]tableSlot[V]

type tablePart[V any] struct {
	tags    []uint64         // tags[b] holds the tag bytes of buckets[b]
	buckets []tableBucket[V] // nil while empty
	n       int
}

// The part comes from the top bits of k.h0, the first bucket from k.h1, the
// second from the other bits of k.h0 and the tag from the low byte of k.h1,
// which barely moves the product that picks the first bucket: independent
// bits of a uniform hash, mapped onto any bucket count by multiplication.
func (t *table[V]) part(k hkey) *tablePart[V] { return &t.parts[k.h0>>t.shift] }

func (p *tablePart[V]) homes(k hkey) (int, int) {
	n := uint64(len(p.buckets))
	b1, _ := bits.Mul64(k.h1, n)
	b2, _ := bits.Mul64(k.h0<<tablePartBits, n)
	return int(b1), int(b2)
}

// tag returns k's tag byte: never 0, which marks an empty slot.
func tag(k hkey) uint64 {
	if t := k.h1 & 0xff; t != 0 {
		return t
	}
	return 1
}

const (
	bytesLow  = 0x0101010101010101
	bytesHigh = 0x8080808080808080
)

// matches returns a mask with the high bit of each byte of w that equals t
// (the classic zero-byte test on w^t..t). It may also flag a byte above a
// true match, so callers confirm each one against the key.
func matches(w, t uint64) uint64 {
	x := w ^ t*bytesLow
	return (x - bytesLow) &^ x & bytesHigh
}

// locate returns the bucket and the slot in it that hold k.
func (p *tablePart[V]) locate(k hkey) (b, i int, ok bool) {
	if p.buckets == nil {
		return 0, 0, false
	}
	b1, b2 := p.homes(k)
	t := tag(k)
	for _, b := range [2]int{b1, b2} {
		for m := matches(p.tags[b], t); m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m) / 8
			if p.buckets[b][i].k == k {
				return b, i, true
			}
		}
	}
	return 0, 0, false
}

// slot returns the slot holding k, or nil.
func (p *tablePart[V]) slot(k hkey) *tableSlot[V] {
	if b, i, ok := p.locate(k); ok {
		return &p.buckets[b][i]
	}
	return nil
}

// touch loads the tag words of k's buckets so that the cache misses of
// several lookups overlap; the result means nothing.
func (t *table[V]) touch(k hkey) uint64 {
	p := t.part(k)
	if p.buckets == nil {
		return 0
	}
	b1, b2 := p.homes(k)
	return p.tags[b1] + p.tags[b2]
}

func (t *table[V]) get(k hkey) (V, bool) {
	if s := t.part(k).slot(k); s != nil {
		return s.v, true
	}
	var zero V
	return zero, false
}

// put sets k to v and reports whether k is new.
func (t *table[V]) put(k hkey, v V) bool {
	_, had := t.set(k, v)
	return !had
}

// set sets k to v and returns the value it replaces, if any.
func (t *table[V]) set(k hkey, v V) (old V, had bool) {
	p := t.part(k)
	if s := p.slot(k); s != nil {
		old, s.v = s.v, v
		return old, true
	}
	if p.buckets == nil {
		p.buckets = make([]tableBucket[V], tableBucketMin)
		p.tags = make([]uint64, tableBucketMin)
	}
	e := tableSlot[V]{k, v}
	if (p.n+1)*100 > len(p.buckets)*tableSlots*tableFillMax {
		p.grow(e)
	} else if e, ok := p.insert(e); !ok {
		p.grow(e)
	}
	p.n++
	t.n++
	return old, false
}

// insert places e, displacing others cuckoo-style; if it gives up, it
// returns the entry left without a slot.
func (p *tablePart[V]) insert(e tableSlot[V]) (tableSlot[V], bool) {
	b1, b2 := p.homes(e.k)
	if p.place(b1, e) || p.place(b2, e) {
		return e, true
	}
	b := b1
	for kick := 0; kick < tableKicksMax; kick++ {
		i := kick % tableSlots
		victim := &p.buckets[b][i]
		e, *victim = *victim, e
		p.setTag(b, i, tag(victim.k))
		h1, h2 := p.homes(e.k)
		if b == h1 {
			b = h2
		} else {
			b = h1
		}
		if p.place(b, e) {
			return e, true
		}
	}
	return e, false
}

// place puts e in a free slot of bucket b, found from the tags alone.
func (p *tablePart[V]) place(b int, e tableSlot[V]) bool {
	m := matches(p.tags[b], 0)
	if m == 0 {
		return false
	}
	i := bits.TrailingZeros64(m) / 8 // the lowest flagged byte is a true match
	p.buckets[b][i] = e
	p.setTag(b, i, tag(e.k))
	return true
}

func (p *tablePart[V]) setTag(b, i int, t uint64) {
	p.tags[b] = p.tags[b]&^(0xff<<(8*i)) | t<<(8*i)
}

// grow enlarges the part by a third, more if needed, until every entry
// and extra fit.
func (p *tablePart[V]) grow(extra tableSlot[V]) {
	old, oldTags := p.buckets, p.tags
	for size := len(old) + max(1, len(old)/3); ; size += max(1, size/3) {
		p.buckets = make([]tableBucket[V], size)
		p.tags = make([]uint64, size)
		ok := true
		for b := 0; b < len(old) && ok; b++ {
			for i := 0; i < tableSlots && ok; i++ {
				if oldTags[b]>>(8*i)&0xff != 0 {
					_, ok = p.insert(old[b][i])
				}
			}
		}
		if ok {
			if _, ok = p.insert(extra); ok {
				return
			}
		}
	}
}

// del removes k and reports whether it was there.
func (t *table[V]) del(k hkey) bool {
	p := t.part(k)
	b, i, ok := p.locate(k)
	if !ok {
		return false
	}
	p.buckets[b][i] = tableSlot[V]{}
	p.setTag(b, i, 0)
	p.n--
	t.n--
	return true
}

func (t *table[V]) len() int { return t.n }

// tableLoadFill is the fill, in percent, that load sizes empty parts for.
const tableLoadFill = 80

// tableBatch collects slots for table.load, in chunks: collecting millions
// copies none, and takes 32 bytes a slot.
type tableBatch[V any] struct {
	chunks [][]tableSlot[V]
}

const tableBatchChunk = 4096

func (b *tableBatch[V]) add(k hkey, v V) {
	last := len(b.chunks) - 1
	if last < 0 || len(b.chunks[last]) == tableBatchChunk {
		b.chunks = append(b.chunks, make([]tableSlot[V], 0, tableBatchChunk))
		last++
	}
	b.chunks[last] = append(b.chunks[last], tableSlot[V]{k, v})
}

// load puts every slot of b, as put would in the order they were added (a
// later slot with the same key wins, after a call of dup, when not nil,
// with the value it replaces). It is the bulk path of the replay: a
// stable counting sort groups the slots by part, each empty part is sized
// for its share up front, and parts are then filled one at a time, so that
// the inserts of one part hit a few hundred kilobytes that stay in cache
// instead of random lines of the whole table, and no part is grown and
// copied on the way.
func (t *table[V]) load(b *tableBatch[V], dup func(k hkey, old, new V)) {
	counts := make([]int, len(t.parts))
	total := 0
	for _, c := range b.chunks {
		for i := range c {
			counts[c[i].k.h0>>t.shift]++
		}
		total += len(c)
	}
	next := make([]int, len(t.parts))
	sum := 0
	for i, n := range counts {
		next[i] = sum
		sum += n
		if p := &t.parts[i]; p.buckets == nil && n > 0 {
			size := max(tableBucketMin, (n*100+tableSlots*tableLoadFill-1)/(tableSlots*tableLoadFill))
			p.buckets = make([]tableBucket[V], size)
			p.tags = make([]uint64, size)
		}
	}
	sorted := make([]tableSlot[V], total)
	for ci, c := range b.chunks {
		for i := range c {
			part := c[i].k.h0 >> t.shift
			sorted[next[part]] = c[i]
			next[part]++
		}
		b.chunks[ci] = nil // free each chunk once sorted
	}
	b.chunks = nil
	for i := range sorted {
		if old, had := t.set(sorted[i].k, sorted[i].v); had && dup != nil {
			dup(sorted[i].k, old, sorted[i].v)
		}
	}
}

// each calls fn with every key and value, in no particular order.
func (t *table[V]) each(fn func(hkey, V)) {
	for i := range t.parts {
		p := &t.parts[i]
		for b := range p.buckets {
			for s := 0; s < tableSlots; s++ {
				if p.tags[b]>>(8*s)&0xff != 0 {
					fn(p.buckets[b][s].k, p.buckets[b][s].v)
				}
			}
		}
	}
}
