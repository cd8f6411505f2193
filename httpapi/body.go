package httpapi

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/inventory-ledger/inventory/shard"
)

// Request bodies are read into buffers that grow with the bytes that
// actually arrive, never sized from Content-Length: a client that announces
// 4 MiB and sends one byte holds one bodyBufBytesMin buffer. The buffers
// come from pools by power-of-two size class (bodyPools), so a steady
// stream of large batches reuses them, and no buffer grows past the
// endpoint's limit. Their capacity counts against one budget for the whole
// server (bodyBudget) from the moment a request takes a buffer until its
// body is decoded; a request whose next buffer would not fit is refused at
// once with 503 overloaded.
const (
	// bodyBufBytesMin is the first buffer of every body: a single write is
	// a few hundred bytes, so most bodies never grow.
	bodyBufBytesMin = 1 << 10
	// bodyClasses is the number of buffer sizes, bodyBufBytesMin << 0 ..
	// << 12: 1 KiB to 4 MiB, the batch limit.
	bodyClasses = 13

	// BodyBytesInflightDefault is the default Config.BodyBytesInflightMax.
	// 64 MiB is 16 batches of the full 4 MiB, or tens of thousands of
	// single writes, being read and decoded at once: far more than 2 cores
	// decode in the second a client waits before retrying, and small next
	// to the memory the engine needs. What it costs: past it, a burst of
	// large batches gets 503 overloaded (Retry-After: 1) instead of taking
	// the heap up with it.
	BodyBytesInflightDefault = 64 << 20
	// BodyBytesInflightMin is the smallest Config.BodyBytesInflightMax:
	// one batch of the full limit must fit, or it could never be served.
	BodyBytesInflightMin = batchBytesMax
)

// The largest buffer class holds a whole batch (this fails to compile
// otherwise: a negative constant does not convert to uint).
const _ = uint(bodyBufBytesMin<<(bodyClasses-1) - batchBytesMax)

// bodyPools holds the body buffers of each size class, as *[]byte (a
// slice in an interface would allocate on every Put).
var bodyPools [bodyClasses]sync.Pool

func init() {
	for i := range bodyPools {
		size := bodyBufBytesMin << i
		bodyPools[i].New = func() any {
			b := make([]byte, size)
			return &b
		}
	}
}

// bodyBudget counts the bytes of body buffers that requests hold, against
// max. Every method is safe for concurrent use.
type bodyBudget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes, or reports false, reserving nothing, if they would
// pass max.
func (b *bodyBudget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// give returns n bytes that take reserved.
func (b *bodyBudget) give(n int64) { b.used.Add(-n) }

// bodyBuf is one request's body: the bytes read so far in a pooled buffer,
// and the share of the budget that buffer holds. Owned by one handler.
type bodyBuf struct {
	b      []byte  // the bytes read; cap(b) is at most the endpoint's limit
	buf    *[]byte // the pooled buffer under b, or nil
	class  int     // size class of buf
	budget *bodyBudget
	probe  [1]byte // reads one byte past the limit without a buffer of its own
}

// read reads r's body, refusing it with 413 once it passes limit and with
// 503 overloaded when its next buffer would not fit in budget.
func (bd *bodyBuf) read(r io.Reader, limit int64, budget *bodyBudget) *shard.Error {
	bd.release()
	bd.budget = budget
	for {
		if len(bd.b) == cap(bd.b) {
			if int64(len(bd.b)) >= limit {
				n, err := r.Read(bd.probe[:])
				switch {
				case n > 0:
					return tooLarge(limit)
				case err == io.EOF:
					return nil
				case err != nil:
					return readError(err)
				}
				continue
			}
			if err := bd.grow(limit); err != nil {
				return err
			}
		}
		n, err := r.Read(bd.b[len(bd.b):cap(bd.b)])
		bd.b = bd.b[:len(bd.b)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return readError(err)
		}
	}
}

// grow moves the body to a buffer of the next size class, capped at limit,
// once the budget has room for the difference.
func (bd *bodyBuf) grow(limit int64) *shard.Error {
	class, add := 0, classBytes(0)
	if bd.buf != nil {
		class = bd.class + 1
		add = classBytes(class) - classBytes(bd.class)
	}
	if class >= bodyClasses {
		panic("httpapi: a body grew past the largest buffer class")
	}
	if !bd.budget.take(add) {
		return newError(shard.CodeOverloaded, "the server holds as many request bodies as it takes at once; retry shortly")
	}
	next := bodyPools[class].Get().(*[]byte)
	b := append((*next)[:0:min(classBytes(class), limit)], bd.b...)
	if bd.buf != nil {
		bodyPools[bd.class].Put(bd.buf)
	}
	bd.b, bd.buf, bd.class = b, next, class
	return nil
}

// release gives the buffer back to its pool and its bytes back to the
// budget. The body is empty afterwards; nothing may still read it.
func (bd *bodyBuf) release() {
	if bd.buf != nil {
		bd.budget.give(classBytes(bd.class))
		bodyPools[bd.class].Put(bd.buf)
	}
	bd.b, bd.buf, bd.budget = nil, nil, nil
}

// classBytes is the size of the buffers of class c.
func classBytes(c int) int64 { return bodyBufBytesMin << c }

func readError(err error) *shard.Error { return invalid("reading the body: " + err.Error()) }
