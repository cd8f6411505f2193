package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/inventory-ledger/inventory/shard"
)

// encoder appends one document to a buffer, field by field, without
// reflection. JSON and msgpack responses are written by the same functions
// (encodeEntry, encodeStock, ...), so both formats carry the same fields.
// object and array take the number of members, which msgpack needs up front.
type encoder interface {
	object(n int)
	array(n int)
	end() // closes the innermost object or array
	key(k string)
	str(s string)
	strParts(a, b string) // the string a+b
	int(v int64)
	time(ns int64) // RFC 3339 UTC with exactly nine fractional digits
	null()
	uuid(id *shard.ID) // canonical lower-case form
	// mark returns the current end of the output; called right after a key
	// (where no separator is due), it marks the start of the next value.
	mark() int
	// repeat writes again, as the next value, what was written between two
	// marks.
	repeat(start, end int)
}

// jsonEncoder writes compact JSON. comma is true when the next member or
// element needs a separator; open has a bit per open container, set for an
// array, so that end writes the matching bracket.
type jsonEncoder struct {
	b     []byte
	comma bool
	open  uint64
	depth uint8
}

func (e *jsonEncoder) sep() {
	if e.comma {
		e.b = append(e.b, ',')
	}
	e.comma = true
}

func (e *jsonEncoder) push(array bool, c byte) {
	e.sep()
	e.b = append(e.b, c)
	e.comma = false
	e.open <<= 1
	if array {
		e.open |= 1
	}
	e.depth++
	if e.depth > 64 {
		panic("httpapi: JSON nested deeper than 64")
	}
}

func (e *jsonEncoder) object(int) { e.push(false, '{') }
func (e *jsonEncoder) array(int)  { e.push(true, '[') }

func (e *jsonEncoder) end() {
	if e.open&1 != 0 {
		e.b = append(e.b, ']')
	} else {
		e.b = append(e.b, '}')
	}
	e.open >>= 1
	e.depth--
	e.comma = true
}

// key writes k as is: member names are our constants and need no escaping.
func (e *jsonEncoder) key(k string) {
	e.sep()
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
	e.comma = false
}

func (e *jsonEncoder) str(s string) { e.sep(); e.b = appendJSONString(e.b, s) }

func (e *jsonEncoder) strParts(a, b string) {
	e.sep()
	e.b = append(e.b, '"')
	e.b = appendJSONStringBody(e.b, a)
	e.b = appendJSONStringBody(e.b, b)
	e.b = append(e.b, '"')
}

func (e *jsonEncoder) uuid(id *shard.ID) {
	e.sep()
	e.b = append(e.b, '"')
	e.b = appendUUID(e.b, id)
	e.b = append(e.b, '"')
}

func (e *jsonEncoder) int(v int64) { e.sep(); e.b = strconv.AppendInt(e.b, v, 10) }

func (e *jsonEncoder) time(ns int64) {
	e.sep()
	e.b = append(e.b, '"')
	e.b = appendTime(e.b, ns)
	e.b = append(e.b, '"')
}

func (e *jsonEncoder) mark() int { return len(e.b) }

func (e *jsonEncoder) repeat(start, end int) {
	e.sep()
	e.b = append(e.b, e.b[start:end]...)
}

func (e *jsonEncoder) null() { e.sep(); e.b = append(e.b, "null"...) }

const hexDigits = "0123456789abcdef"

// jsonSafe marks the ASCII bytes that go into a JSON string unescaped.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s quoted. Strings reaching it are valid UTF-8
// (ids and keys are ASCII; the engine refuses a reason that is not UTF-8),
// so only quotes, backslashes and control characters need escaping.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendJSONStringBody(b, s)
	return append(b, '"')
}

// appendJSONStringBody appends s escaped, without quotes.
func appendJSONStringBody(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || jsonSafe[c] {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	return append(b, s[start:]...)
}

// appendTime appends ns (Unix nanoseconds) as RFC 3339 UTC with exactly nine
// fractional digits, e.g. 2025-01-02T03:04:05.000000007Z. It computes the
// civil date directly (H. Hinnant's days_from_civil inverse), several times
// faster than time.Time's Date and Clock. int64 nanoseconds end in 2262;
// times before 1970, which the ledger never has, go through package time.
func appendTime(b []byte, ns int64) []byte {
	const day = 86400 * int64(time.Second)
	if ns < 0 {
		return time.Unix(0, ns).UTC().AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
	}
	days, rem := ns/day, ns%day
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if mp >= 10 {
		m = mp - 9
		y++
	}
	secs, frac := rem/int64(time.Second), rem%int64(time.Second)
	b = append(b, digits2[2*(y/100)], digits2[2*(y/100)+1], digits2[2*(y%100)], digits2[2*(y%100)+1], '-',
		digits2[2*m], digits2[2*m+1], '-', digits2[2*d], digits2[2*d+1], 'T',
		digits2[2*(secs/3600)], digits2[2*(secs/3600)+1], ':',
		digits2[2*(secs/60%60)], digits2[2*(secs/60%60)+1], ':',
		digits2[2*(secs%60)], digits2[2*(secs%60)+1], '.')
	var f [9]byte
	for i := 8; i >= 0; i-- {
		f[i] = byte('0' + frac%10)
		frac /= 10
	}
	b = append(b, f[:]...)
	return append(b, 'Z')
}

// digits2 holds "00" to "99" back to back.
const digits2 = "00010203040506070809" + "10111213141516171819" + "20212223242526272829" +
	"30313233343536373839" + "40414243444546474849" + "50515253545556575859" + "60616263646566676869" +
	"70717273747576777879" + "80818283848586878889" + "90919293949596979899"

// timeBytes is the length of every time appendTime writes: int64
// nanoseconds span the years 1677 to 2262.
const timeBytes = len("2006-01-02T15:04:05.000000000Z")

// msgpackEncoder writes msgpack with the same field names as JSON; times are
// strings, integers take their shortest form.
type msgpackEncoder struct{ b []byte }

func (e *msgpackEncoder) object(n int) {
	switch {
	case n < 16:
		e.b = append(e.b, 0x80|byte(n))
	case n <= math.MaxUint16:
		e.b = append(e.b, 0xde, byte(n>>8), byte(n))
	default:
		e.b = append(e.b, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func (e *msgpackEncoder) array(n int) {
	switch {
	case n < 16:
		e.b = append(e.b, 0x90|byte(n))
	case n <= math.MaxUint16:
		e.b = append(e.b, 0xdc, byte(n>>8), byte(n))
	default:
		e.b = append(e.b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func (e *msgpackEncoder) end()         {}
func (e *msgpackEncoder) key(k string) { e.str(k) }

func (e *msgpackEncoder) strHeader(n int) {
	switch {
	case n < 32:
		e.b = append(e.b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		e.b = append(e.b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		e.b = append(e.b, 0xda, byte(n>>8), byte(n))
	default:
		e.b = append(e.b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func (e *msgpackEncoder) str(s string) {
	e.strHeader(len(s))
	e.b = append(e.b, s...)
}

func (e *msgpackEncoder) strParts(a, b string) {
	e.strHeader(len(a) + len(b))
	e.b = append(append(e.b, a...), b...)
}

func (e *msgpackEncoder) int(v int64) {
	switch {
	case v >= 0 && v < 128:
		e.b = append(e.b, byte(v))
	case v < 0 && v >= -32:
		e.b = append(e.b, byte(v))
	case v >= math.MinInt8 && v <= math.MaxInt8:
		e.b = append(e.b, 0xd0, byte(v))
	case v >= math.MinInt16 && v <= math.MaxInt16:
		e.b = append(e.b, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		e.b = append(e.b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		e.b = append(e.b, 0xd3, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
}

func (e *msgpackEncoder) time(ns int64) {
	e.strHeader(timeBytes)
	e.b = appendTime(e.b, ns)
}

func (e *msgpackEncoder) uuid(id *shard.ID) {
	e.strHeader(36)
	e.b = appendUUID(e.b, id)
}

func (e *msgpackEncoder) mark() int { return len(e.b) }

func (e *msgpackEncoder) repeat(start, end int) { e.b = append(e.b, e.b[start:end]...) }

func (e *msgpackEncoder) null() { e.b = append(e.b, 0xc0) }

// appendUUID appends id in canonical lower-case form.
func appendUUID(b []byte, id *shard.ID) []byte {
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

// encodeEntry writes a ledger entry. reservation_id appears only on the
// types that name a hold, expires_at only on RESERVE, idempotency_key only
// on entries a client asked for.
func encodeEntry(w encoder, e *shard.Entry) {
	hasResv := e.Type == shard.TypeReserve || e.Type == shard.TypeCommit || e.Type == shard.TypeRelease
	hasExpiry := e.Type == shard.TypeReserve
	hasKey := e.IdempotencyKey != ""
	n := 12
	for _, has := range [...]bool{hasResv, hasExpiry, hasKey} {
		if has {
			n++
		}
	}
	w.object(n)
	w.key("id")
	w.uuid(&e.ID)
	w.key("product_id")
	w.str(e.ProductID)
	w.key("type")
	w.str(e.Type.String())
	w.key("quantity")
	w.int(e.Quantity)
	w.key("delta")
	w.int(e.Delta)
	w.key("on_hand")
	w.int(e.OnHand)
	w.key("reserved")
	w.int(e.Reserved)
	w.key("available")
	w.int(e.Available())
	w.key("version")
	w.int(e.Version)
	if hasResv {
		w.key("reservation_id")
		w.str(e.ReservationID)
	}
	if hasExpiry {
		w.key("expires_at")
		w.time(e.ExpiresAt)
	}
	w.key("reason")
	w.str(e.Reason)
	w.key("created_by")
	w.str(e.CreatedBy)
	w.key("created_at")
	w.time(e.CreatedAt)
	if hasKey {
		w.key("idempotency_key")
		w.str(e.IdempotencyKey)
	}
	w.end()
}

// encodeStock writes a product's stock.
func encodeStock(w encoder, s *shard.Stock) {
	w.object(6)
	w.key("product_id")
	w.str(s.ProductID)
	w.key("on_hand")
	w.int(s.OnHand)
	w.key("reserved")
	w.int(s.Reserved)
	w.key("available")
	w.int(s.Available())
	w.key("version")
	w.int(s.Version)
	w.key("updated_at")
	w.time(s.UpdatedAt)
	w.end()
}

// encodeReservation writes a hold; settled_at is null while it is active.
func encodeReservation(w encoder, r *shard.Reservation) {
	w.object(7)
	w.key("reservation_id")
	w.str(r.ReservationID)
	w.key("product_id")
	w.str(r.ProductID)
	w.key("quantity")
	w.int(r.Quantity)
	w.key("state")
	w.str(r.State.String())
	w.key("expires_at")
	w.time(r.ExpiresAt)
	w.key("created_at")
	w.time(r.CreatedAt)
	w.key("settled_at")
	if r.State == shard.StateActive || r.SettledAt == 0 {
		w.null()
	} else {
		w.time(r.SettledAt)
	}
	w.end()
}

// encodeResultBody writes the members of a write's answer: the entry asked
// for, every entry appended, and the stock right after them. status > 0 adds
// the batch result's status member first.
func encodeResultBody(w encoder, res *shard.Result, status int) {
	openResult(w, 3, status)
	w.key("transaction")
	start := w.mark()
	encodeEntry(w, &res.Entries[0])
	end := w.mark()
	w.key("transactions")
	w.array(len(res.Entries))
	w.repeat(start, end) // transactions[0] is transaction
	for i := 1; i < len(res.Entries); i++ {
		encodeEntry(w, &res.Entries[i])
	}
	w.end()
	w.key("stock")
	encodeStock(w, &res.Stock)
	w.end()
}

// openResult opens a write's answer of n members, with a batch result's
// status member first when status > 0.
func openResult(w encoder, n, status int) {
	if status > 0 {
		n++
	}
	w.object(n)
	if status > 0 {
		w.key("status")
		w.int(int64(status))
	}
}

// encodeResult writes a write's answer in the form ret asks for: the full
// body (encodeResultBody) unless the client prefers return=minimal.
func encodeResult(w encoder, res *shard.Result, status int, ret returnPref) {
	if ret == returnMinimal {
		encodeResultMinimal(w, res, status)
		return
	}
	encodeResultBody(w, res, status)
}

// encodeResultMinimal writes the short answer of Prefer: return=minimal:
// the id and version of every entry appended, and the balances and version
// of the stock right after them. status > 0 adds the batch result's status
// member first, as in encodeResultBody.
//
//	{"transactions":[{"id":"…","version":8}],"stock":{"on_hand":10,"reserved":2,"available":8,"version":8}}
func encodeResultMinimal(w encoder, res *shard.Result, status int) {
	openResult(w, 2, status)
	w.key("transactions")
	w.array(len(res.Entries))
	for i := range res.Entries {
		e := &res.Entries[i]
		w.object(2)
		w.key("id")
		w.uuid(&e.ID)
		w.key("version")
		w.int(e.Version)
		w.end()
	}
	w.end()
	w.key("stock")
	w.object(4)
	w.key("on_hand")
	w.int(res.Stock.OnHand)
	w.key("reserved")
	w.int(res.Stock.Reserved)
	w.key("available")
	w.int(res.Stock.Available())
	w.key("version")
	w.int(res.Stock.Version)
	w.end()
	w.end()
}

// encodeBatchResults writes a batch's answer: one result per op, in op
// order, each applied one in the form ret asks for (status 200 for a
// replay), each refused one as its status and problem.
func encodeBatchResults(w encoder, results []shard.Result, ret returnPref) {
	w.object(1)
	w.key("results")
	w.array(len(results))
	for i := range results {
		res := &results[i]
		switch {
		case res.Err != nil:
			w.object(2)
			w.key("status")
			w.int(int64(problemOf(res.Err.Code).status))
			w.key("error")
			encodeProblem(w, res.Err)
			w.end()
		case res.Replayed:
			encodeResult(w, res, http.StatusOK, ret)
		default:
			encodeResult(w, res, http.StatusCreated, ret)
		}
	}
	w.end()
	w.end()
}

// encodePage writes a page of history; next_after only when more exist.
func encodePage(w encoder, p *shard.Page) {
	n := 1
	if p.Next > 0 {
		n++
	}
	w.object(n)
	w.key("transactions")
	w.array(len(p.Entries))
	for i := range p.Entries {
		encodeEntry(w, &p.Entries[i])
	}
	w.end()
	if p.Next > 0 {
		w.key("next_after")
		w.int(p.Next)
	}
	w.end()
}

// bufBytesMax is the largest buffer kept in scratchPool: a long history page
// is left to the GC rather than pinned.
const bufBytesMax = 256 << 10
