package shard

import "math/bits"

// table is a hash table from hkey to V: bucketized cuckoo hashing, 4 slots
// to a bucket and 2 candidate buckets per key, in 256 independently grown
// parts, each grown by a third when 88% full. It replaces Go maps for the shard's two big indexes (reservations
// and idempotency keys) because:
//
//   - keys are already uniform 128-bit hashes, so their bits index buckets
//     directly, with no second hash;
//   - a lookup reads at most 2 buckets, hit or miss, and most lookups on
//     the hot path are misses (new keys, new reservation ids);
//   - parts stay 66-88% full (growing by a third, not doubling), where Go
//     maps measured 40-60% (60-84 bytes per 32-byte entry at 1M entries):
//     this is what keeps a product or a hold under 200 bytes;
//   - a part holds 1/256 of the keys, so growing one copies little and
//     never stalls the actor for long.
//
// The zero key marks an empty slot: State.hash never returns it. Layout
// depends only on the sequence of calls, so two tables fed the same calls
// are equal (the replay tests compare them).
type table[V any] struct {
	parts [tableParts]tablePart[V]
	n     int
}

const (
	tablePartBits  = 8
	tableParts     = 1 << tablePartBits
	tableSlots     = 4  // slots per bucket
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
	buckets []tableBucket[V] // nil while empty
	n       int
}

// The part comes from the top bits of k[0], the first bucket from k[1] and
// the second from the other bits of k[0]: independent bits of a uniform
// hash, mapped onto any bucket count by multiplication.
func (t *table[V]) part(k hkey) *tablePart[V] { return &t.parts[k[0]>>(64-tablePartBits)] }

func (p *tablePart[V]) homes(k hkey) (int, int) {
	n := uint64(len(p.buckets))
	b1, _ := bits.Mul64(k[1], n)
	b2, _ := bits.Mul64(k[0]<<tablePartBits, n)
	return int(b1), int(b2)
}

// slot returns the slot holding k, or nil.
func (p *tablePart[V]) slot(k hkey) *tableSlot[V] {
	if p.buckets == nil {
		return nil
	}
	b1, b2 := p.homes(k)
	for _, b := range [2]int{b1, b2} {
		bk := &p.buckets[b]
		for i := range bk {
			if bk[i].k == k {
				return &bk[i]
			}
		}
	}
	return nil
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
	p := t.part(k)
	if s := p.slot(k); s != nil {
		s.v = v
		return false
	}
	if p.buckets == nil {
		p.buckets = make([]tableBucket[V], tableBucketMin)
	}
	e := tableSlot[V]{k, v}
	if (p.n+1)*100 > len(p.buckets)*tableSlots*tableFillMax {
		p.grow(e)
	} else if e, ok := p.insert(e); !ok {
		p.grow(e)
	}
	p.n++
	t.n++
	return true
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
		victim := &p.buckets[b][kick%tableSlots]
		e, *victim = *victim, e
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

func (p *tablePart[V]) place(b int, e tableSlot[V]) bool {
	bk := &p.buckets[b]
	for i := range bk {
		if bk[i].k == (hkey{}) {
			bk[i] = e
			return true
		}
	}
	return false
}

// grow enlarges the part by a third, more if needed, until every entry
// and extra fit.
func (p *tablePart[V]) grow(extra tableSlot[V]) {
	old := p.buckets
	for size := len(old) + max(1, len(old)/3); ; size += max(1, size/3) {
		p.buckets = make([]tableBucket[V], size)
		ok := true
		for i := range old {
			for _, e := range old[i] {
				if e.k != (hkey{}) {
					if _, ok = p.insert(e); !ok {
						break
					}
				}
			}
			if !ok {
				break
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
	s := t.part(k).slot(k)
	if s == nil {
		return false
	}
	*s = tableSlot[V]{}
	t.part(k).n--
	t.n--
	return true
}

func (t *table[V]) len() int { return t.n }
