package shard

// expiryHeap is a binary min-heap of hold slots ordered by deadline, then by
// slot so that ties break the same way on every run. Each hold records its
// position (heapIdx) so that settling it removes it in O(log n).
type expiryHeap []int32

func (h expiryHeap) less(holds *slab, i, j int) bool {
	a, b := holds.at(h[i]), holds.at(h[j])
	if a.expiresAt != b.expiresAt {
		return a.expiresAt < b.expiresAt
	}
	return h[i] < h[j]
}

func (h expiryHeap) swap(holds *slab, i, j int) {
	h[i], h[j] = h[j], h[i]
	holds.at(h[i]).heapIdx = int32(i)
	holds.at(h[j]).heapIdx = int32(j)
}

func (h *expiryHeap) push(holds *slab, slot int32) {
	*h = append(*h, slot)
	i := len(*h) - 1
	holds.at(slot).heapIdx = int32(i)
	h.up(holds, i)
}

func (h *expiryHeap) remove(holds *slab, i int) {
	n := len(*h) - 1
	if i != n {
		h.swap(holds, i, n)
	}
	*h = (*h)[:n]
	if i != n {
		if !h.down(holds, i) {
			h.up(holds, i)
		}
	}
}

func (h expiryHeap) up(holds *slab, i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(holds, i, parent) {
			break
		}
		h.swap(holds, i, parent)
		i = parent
	}
}

func (h expiryHeap) down(holds *slab, i int) bool {
	start, n := i, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(holds, r, l) {
			m = r
		}
		if !h.less(holds, m, i) {
			break
		}
		h.swap(holds, i, m)
		i = m
	}
	return i > start
}

// idemAges queues idempotency keys in the order they were applied, which is
// created_at order, so the oldest are always at the head. Keys are kept in
// chunks, each spanning at most span nanoseconds of created_at, and a chunk
// is forgotten once its newest key is older than the retention window: a
// key is remembered for at least the window and at most one span longer,
// without a timestamp per key. Each key keeps the version it applied, so
// that forgetting an old use of a key never drops a later use of it.
type idemAges struct {
	chunks []ageChunk
	head   int // keys of chunks[0] already forgotten
	n      int
	span   int64
}

type ageChunk struct {
	keys        []agedKey
	first, last int64 // created_at of the oldest and newest key
}

type agedKey struct {
	k       hkey
	version int64
	// fp, product and key are kept for snapshots, which store the key by
	// name: the hash k is seeded per process.
	fp           uint64
	product, key string
}

// agesChunk bounds the keys of one chunk (96 KiB).
const agesChunk = 4096

func (q *idemAges) push(k agedKey, at int64) {
	last := len(q.chunks) - 1
	if last < 0 || len(q.chunks[last].keys) == agesChunk || at-q.chunks[last].first > q.span {
		// A chunk after a full one is sized for 4096 keys at once; one
		// after a chunk cut short by its span starts at that chunk's size.
		// This spares the copies of growing by appends at high rates,
		// without reserving 96 KiB for every span of an idle shard.
		capacity := 0
		if last >= 0 {
			capacity = len(q.chunks[last].keys)
		}
		q.chunks = append(q.chunks, ageChunk{first: at, keys: make([]agedKey, 0, capacity)})
		last++
	}
	c := &q.chunks[last]
	c.keys = append(c.keys, k)
	// A tx's keys are applied at its commit with the time of its prepare,
	// a little before keys applied since: keep last the newest.
	c.last = max(c.last, at)
	q.n++
}

// popBefore removes up to n keys of chunks whose newest key is older than
// cutoff, calling fn with each, and returns how many it removed.
func (q *idemAges) popBefore(cutoff int64, n int, fn func(agedKey)) int {
	done := 0
	for done < n && len(q.chunks) > 0 && q.chunks[0].last < cutoff {
		c := &q.chunks[0]
		for ; q.head < len(c.keys) && done < n; q.head++ {
			fn(c.keys[q.head])
			done++
		}
		if q.head == len(c.keys) {
			q.chunks[0] = ageChunk{}
			q.chunks = q.chunks[1:]
			q.head = 0
		}
	}
	q.n -= done
	return done
}

func (q *idemAges) len() int { return q.n }

// all returns the queued keys in order (for tests).
func (q *idemAges) all() []agedKey {
	var out []agedKey
	for i, c := range q.chunks {
		k := c.keys
		if i == 0 {
			k = k[q.head:]
		}
		out = append(out, k...)
	}
	return out
}

// slab holds the active holds in fixed chunks: slots never move, and
// growing it never copies.
type slab struct {
	chunks [][]hold
	n      int32
}

const slabChunkBits = 12

func (s *slab) at(i int32) *hold {
	return &s.chunks[i>>slabChunkBits][i&(1<<slabChunkBits-1)]
}

// slabFirstChunk is the first chunk's first size: it doubles up to a full
// chunk. A scratch fork of the state (State.fork), made for a tx's part
// and for some atomic batches, holds a few holds; a full first chunk (4096 holds, 256 KiB) made
// and cleared for each was a third of the CPU of a cart load.
const slabFirstChunk = 8

// grow adds a slot and returns it.
func (s *slab) grow() int32 {
	c, i := int(s.n)>>slabChunkBits, int(s.n)&(1<<slabChunkBits-1)
	switch {
	case c == len(s.chunks) && c == 0:
		s.chunks = append(s.chunks, make([]hold, slabFirstChunk))
	case c == len(s.chunks):
		s.chunks = append(s.chunks, make([]hold, 1<<slabChunkBits))
	case i == len(s.chunks[c]):
		grown := make([]hold, min(2*i, 1<<slabChunkBits))
		copy(grown, s.chunks[c])
		s.chunks[c] = grown
	}
	s.n++
	return s.n - 1
}

// aside keeps items out of their queue while their product is parked by an
// atomic batch (see actor.parked), grouped by product, until the product
// is unparked. Groups are taken out in the order they were first set
// aside, so that nothing depends on map order. The State uses it for due
// holds, out of the expiry heap.
type aside[T any] struct {
	groups map[string][]T
	order  []string // products with a group (maybe emptied by remove), each once
	n      int
}

// add puts x in product's group and returns its place there.
func (a *aside[T]) add(product string, x T) int {
	if a.groups == nil {
		a.groups = make(map[string][]T)
	}
	g, ok := a.groups[product]
	if !ok {
		a.order = append(a.order, product)
	}
	a.groups[product] = append(g, x)
	a.n++
	return len(g)
}

// remove drops the item at place i of product's group, moving the group's
// last item into that place; it returns the moved item, and false if none
// moved.
func (a *aside[T]) remove(product string, i int) (T, bool) {
	g := a.groups[product]
	last := len(g) - 1
	moved, ok := g[last], i != last
	g[i] = moved
	var zero T
	g[last] = zero
	a.groups[product] = g[:last]
	a.n--
	if !ok {
		return zero, false
	}
	return moved, true
}

// take removes the groups of the products that parked does not report, in
// the order they were first set aside, calling fn with each item in its
// group's order.
func (a *aside[T]) take(parked func(product string) bool, fn func(T)) {
	if a.n == 0 && len(a.order) == 0 {
		return
	}
	kept := a.order[:0]
	for _, p := range a.order {
		g := a.groups[p]
		if len(g) > 0 && parked != nil && parked(p) {
			kept = append(kept, p)
			continue
		}
		delete(a.groups, p)
		a.n -= len(g)
		for _, x := range g {
			fn(x)
		}
	}
	clear(a.order[len(kept):])
	a.order = kept
}
