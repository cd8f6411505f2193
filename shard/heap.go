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

// idemAge records when an idempotency key was applied, in apply order.
type idemAge struct {
	key hkey
	at  int64
}

// idemAges is a FIFO of idempotency keys in the order they were applied,
// which is created_at order: the oldest key is always at the head, so
// forgetting expired keys costs O(1) each. It is stored in fixed chunks, so
// growing it never copies what it holds.
type idemAges struct {
	chunks [][]idemAge
	head   int // next to pop, in chunks[0]
	n      int
}

const agesChunk = 4096

func (q *idemAges) push(a idemAge) {
	last := len(q.chunks) - 1
	if last < 0 || len(q.chunks[last]) == agesChunk {
		q.chunks = append(q.chunks, make([]idemAge, 0, agesChunk))
		last++
	}
	q.chunks[last] = append(q.chunks[last], a)
	q.n++
}

func (q *idemAges) peek() (idemAge, bool) {
	if q.n == 0 {
		return idemAge{}, false
	}
	return q.chunks[0][q.head], true
}

func (q *idemAges) pop() {
	q.head++
	q.n--
	if q.head == len(q.chunks[0]) && (q.head == agesChunk || q.n == 0) {
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.head = 0
	}
}

func (q *idemAges) len() int { return q.n }

// all returns the queued ages in order (for tests).
func (q *idemAges) all() []idemAge {
	var out []idemAge
	for i, c := range q.chunks {
		if i == 0 {
			c = c[q.head:]
		}
		out = append(out, c...)
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

// grow adds a slot and returns it.
func (s *slab) grow() int32 {
	if int(s.n)>>slabChunkBits == len(s.chunks) {
		s.chunks = append(s.chunks, make([]hold, 1<<slabChunkBits))
	}
	s.n++
	return s.n - 1
}
