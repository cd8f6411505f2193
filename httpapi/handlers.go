package httpapi

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/inventory-ledger/inventory/httpapi/ui"
	"github.com/inventory-ledger/inventory/shard"
)

// scratch is the per-request working memory of a handler: the body, the
// readers and the response encoders. It is pooled so that decoding and
// encoding allocate nothing of their own on the hot path.
type scratch struct {
	body bodyBuf
	jr   jsonReader
	mr   msgpackReader
	je   jsonEncoder
	me   msgpackEncoder
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{je: jsonEncoder{b: make([]byte, 0, 4096)}}
}}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

// put releases the body (see doneReading) and returns sc to the pool,
// unless a buffer grew past bufBytesMax (a long history page, a large
// batch), which is left to the GC rather than pinned.
func (sc *scratch) put() {
	sc.doneReading()
	if cap(sc.je.b) > bufBytesMax || cap(sc.me.b) > bufBytesMax || cap(sc.jr.scratch) > bufBytesMax {
		return
	}
	scratchPool.Put(sc)
}

// request reads r's body, at most limit bytes, against budget (see
// bodyBuf), and returns a reader of the format its Content-Type names.
func (sc *scratch) request(r *http.Request, limit int64, budget *bodyBudget) (reader, *shard.Error) {
	f, err := bodyFormat(r.Header)
	if err != nil {
		return nil, err
	}
	if err := sc.body.read(r.Body, limit, budget); err != nil {
		return nil, err
	}
	return sc.reader(f)
}

// doneReading gives the body's buffer back once it is decoded: the decoded
// ops hold copies of their strings, so the engine's wait and the answer
// take no body memory.
func (sc *scratch) doneReading() {
	sc.jr.b, sc.mr.b = nil, nil
	sc.body.release()
}

// reader returns a reader of format f over the body, refusing an empty one.
func (sc *scratch) reader(f format) (reader, *shard.Error) {
	if f == formatMsgpack {
		if len(sc.body.b) == 0 {
			return nil, invalid("the request body is empty")
		}
		sc.mr.reset(sc.body.b)
		return &sc.mr, nil
	}
	if isBlank(sc.body.b) {
		return nil, invalid("the request body is empty")
	}
	sc.jr.reset(sc.body.b)
	return &sc.jr, nil
}

// respond encodes a 2xx answer in the format the client accepts and sends
// it with status.
func (s *server) respond(c echo.Context, sc *scratch, status int, fn func(encoder)) error {
	h := c.Response().Header()
	var body []byte
	if responseFormat(c.Request().Header) == formatMsgpack {
		h["Content-Type"] = hdrMsgpack
		sc.me.b = sc.me.b[:0]
		fn(&sc.me)
		body = sc.me.b
	} else {
		h["Content-Type"] = hdrJSON
		sc.je = jsonEncoder{b: sc.je.b[:0]}
		fn(&sc.je)
		body = sc.je.b
	}
	s.write(c, status, body)
	return nil
}

// reply is respond with scratch memory of its own, for handlers that read
// no body.
func (s *server) reply(c echo.Context, status int, fn func(encoder)) error {
	sc := getScratch()
	defer sc.put()
	return s.respond(c, sc, status, fn)
}

func etag(version int64) []string {
	return []string{`"` + strconv.FormatInt(version, 10) + `"`}
}

// postTransaction is POST /v1/products/{product_id}/transactions: one write.
// Steps: size, query and headers, body, engine, answer (201, or 200 with
// Idempotent-Replayed for a replay; shortened under Prefer: return=minimal).
func (s *server) postTransaction(c echo.Context) error {
	r := c.Request()
	if r.ContentLength > writeBytesMax {
		return tooLarge(writeBytesMax)
	}
	if err := noQuery(r); err != nil {
		return err
	}
	op := shard.Op{ProductID: pathID(c.Param("product_id"))}
	var err *shard.Error
	if op.IdempotencyKey, err = idempotencyKey(r.Header); err != nil {
		return err
	}
	if op.ExpectedVersion, err = ifMatch(r.Header); err != nil {
		return err
	}
	if op.Actor, err = actor(r.Header); err != nil {
		return err
	}
	sc := getScratch()
	defer sc.put()
	rd, err := sc.request(r, writeBytesMax, &s.bodies)
	if err != nil {
		return err
	}
	if err := decodeWrite(rd, &op); err != nil {
		return err
	}
	sc.doneReading()
	res, err := s.engine.Write(r.Context(), op)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	status := http.StatusCreated
	if res.Replayed {
		status = http.StatusOK
		h["Idempotent-Replayed"] = hdrTrue
	}
	h["Etag"] = etag(res.Stock.Version)
	ret := preferReturn(r.Header)
	applyReturn(h, ret)
	return s.respond(c, sc, status, func(w encoder) { encodeResult(w, &res, 0, ret) })
}

// postBatch is POST /v1/batch. Under Prefer: return=minimal each applied
// op's result is shortened; refused ops keep their problem.
func (s *server) postBatch(c echo.Context) error {
	r := c.Request()
	if r.ContentLength > batchBytesMax {
		return tooLarge(batchBytesMax)
	}
	if err := noQuery(r); err != nil {
		return err
	}
	if err := rejectIfMatch(r.Header); err != nil {
		return err
	}
	who, err := actor(r.Header)
	if err != nil {
		return err
	}
	sc := getScratch()
	defer sc.put()
	rd, err := sc.request(r, batchBytesMax, &s.bodies)
	if err != nil {
		return err
	}
	var b batchBody
	if err := decodeBatch(rd, who, &b); err != nil {
		return err
	}
	sc.doneReading()
	results, err := s.engine.Batch(r.Context(), b.ops, b.atomic)
	if err != nil {
		return err
	}
	status := http.StatusOK
	for i := range results {
		switch {
		case results[i].Err != nil:
			s.m.rejected(results[i].Err.Code) // a refused op inside the 200
		case b.atomic && !results[i].Replayed:
			status = http.StatusCreated
		}
	}
	ret := preferReturn(r.Header)
	applyReturn(c.Response().Header(), ret)
	return s.respond(c, sc, status, func(w encoder) { encodeBatchResults(w, results, ret) })
}

// getStock is GET /v1/products/{product_id}[?as_of=].
//
// With as_of, the stock right after the product's last entry created at or
// before that time (shard.Engine.StockAsOf), with that entry's version as
// ETag.
func (s *server) getStock(c echo.Context) error {
	r := c.Request()
	var asOf int64
	var ok bool
	var err *shard.Error
	if r.URL.RawQuery != "" {
		if asOf, ok, err = stockQuery(r.URL.RawQuery); err != nil {
			return err
		}
	}
	var st shard.Stock
	if ok {
		st, err = s.engine.StockAsOf(r.Context(), pathID(c.Param("product_id")), asOf)
	} else {
		st, err = s.engine.Stock(r.Context(), pathID(c.Param("product_id")))
	}
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h["Etag"] = etag(st.Version)
	h["Vary"] = hdrVary
	return s.reply(c, http.StatusOK, func(w encoder) { encodeStock(w, &st) })
}

// History paging defaults and parameters.
const historyLimitDefault = 100

var historyParams = []string{"after", "limit"}

// getHistory is GET /v1/products/{product_id}/transactions?after=&limit=.
func (s *server) getHistory(c echo.Context) error {
	r := c.Request()
	vals := [2]int64{0, historyLimitDefault}
	if err := query(r.URL.RawQuery, historyParams, vals[:]); err != nil {
		return err
	}
	limit := vals[1]
	if limit > shard.HistoryLimitMax || limit < 0 {
		limit = 0 // out of range either way; the engine names the range
	}
	p, err := s.engine.History(r.Context(), pathID(c.Param("product_id")), vals[0], int(limit))
	if err != nil {
		return err
	}
	c.Response().Header()["Vary"] = hdrVary
	return s.reply(c, http.StatusOK, func(w encoder) { encodePage(w, &p) })
}

// getReservation is GET /v1/products/{product_id}/reservations/{reservation_id}.
func (s *server) getReservation(c echo.Context) error {
	r := c.Request()
	if err := noQuery(r); err != nil {
		return err
	}
	res, err := s.engine.Reservation(r.Context(), pathID(c.Param("product_id")), pathID(c.Param("reservation_id")))
	if err != nil {
		return err
	}
	c.Response().Header()["Vary"] = hdrVary
	return s.reply(c, http.StatusOK, func(w encoder) { encodeReservation(w, &res) })
}

// healthz answers 200 while the process serves HTTP.
func (s *server) healthz(c echo.Context) error {
	return s.reply(c, http.StatusOK, func(w encoder) {
		w.object(1)
		w.key("status")
		w.str("ok")
		w.end()
	})
}

// readyz answers 200 while every shard has replayed and can write, and 503
// unavailable naming the shards that cannot (replaying, failed or stalled),
// so that a load balancer sends traffic elsewhere.
func (s *server) readyz(c echo.Context) error {
	if err := s.engine.Readiness(); err != nil {
		return err
	}
	return s.reply(c, http.StatusOK, func(w encoder) {
		w.object(1)
		w.key("status")
		w.str("ready")
		w.end()
	})
}

// openAPI serves the embedded OpenAPI document.
func (s *server) openAPI(c echo.Context) error {
	c.Response().Header()["Content-Type"] = hdrJSON
	return c.Blob(http.StatusOK, mediaJSON, openAPI)
}

// console serves the ledger console's files (package ui) under a strict
// Content-Security-Policy; any other name under /ui/ is 404. The files are
// public: the console asks the operator for a token and sends it with its
// API calls, as any client does.
func (s *server) console(c echo.Context) error {
	body, mediaType, ok := ui.File(c.Param("*"))
	if !ok {
		return newError(shard.CodeNotFound, "no console file at this path")
	}
	h := c.Response().Header()
	h["Content-Security-Policy"] = hdrConsoleCSP
	h["X-Content-Type-Options"] = hdrNosniff
	h["Referrer-Policy"] = hdrNoReferrer
	h["Cache-Control"] = hdrNoCache
	return c.Blob(http.StatusOK, mediaType, body)
}

// consoleRoot sends /ui to /ui/.
func (s *server) consoleRoot(c echo.Context) error {
	return c.Redirect(http.StatusMovedPermanently, routeConsoleRoot+"/")
}

var (
	hdrConsoleCSP = []string{ui.ContentSecurityPolicy}
	hdrNosniff    = []string{"nosniff"}
	hdrNoReferrer = []string{"no-referrer"}
	hdrNoCache    = []string{"no-cache"}
)
