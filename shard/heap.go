package shard

// expiryHeap is a binary min-heap of hold slots ordered by deadline, then by
// slot so that ties break the same way on every run. Each hold records its
// position (heapIdx) so that settling it removes it in O(log n).
type expiryHeap []int32

func (h expiryHeap) less(holds []hold, i, j int) bool {
	a, b := &holds[h[i]], &holds[h[j]]
	if a.expiresAt != b.expiresAt {
		return a.expiresAt < b.expiresAt
	}
	return h[i] < h[j]
}

func (h expiryHeap) swap(holds []hold, i, j int) {
	h[i], h[j] = h[j], h[i]
	holds[h[i]].heapIdx = int32(i)
	holds[h[j]].heapIdx = int32(j)
}

func (h *expiryHeap) push(holds []hold, slot int32) {
	*h = append(*h, slot)
	i := len(*h) - 1
	holds[slot].heapIdx = int32(i)
	h.up(holds, i)
}

func (h *expiryHeap) remove(holds []hold, i int) {
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

func (h expiryHeap) up(holds []hold, i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(holds, i, parent) {
			break
		}
		h.swap(holds, i, parent)
		i = parent
	}
}

func (h expiryHeap) down(holds []hold, i int) bool {
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
// forgetting expired keys costs O(1) each.
type idemAges struct {
	items []idemAge
	head  int
}

func (q *idemAges) push(a idemAge) {
	if q.head > 0 && q.head >= len(q.items)/2 && len(q.items) == cap(q.items) {
		// Reuse the consumed front instead of growing.
		n := copy(q.items, q.items[q.head:])
		q.items = q.items[:n]
		q.head = 0
	}
	q.items = append(q.items, a)
}

func (q *idemAges) peek() (idemAge, bool) {
	if q.head == len(q.items) {
		return idemAge{}, false
	}
	return q.items[q.head], true
}

func (q *idemAges) pop() {
	q.items[q.head] = idemAge{}
	q.head++
	if q.head == len(q.items) {
		q.items = q.items[:0]
		q.head = 0
	}
}

func (q *idemAges) len() int { return len(q.items) - q.head }
