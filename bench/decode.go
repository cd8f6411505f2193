package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"sync/atomic"
)

// The service's answers are decoded by a small hand-written scanner that
// reads only the fields the harness needs and skips the rest without
// building anything. encoding/json spent 85% of the harness's CPU on
// batch answers (about 1 MB each for 1000 ops), and the harness shares
// the machine with the service. Any answer the scanner cannot read is
// decoded again by encoding/json, so it can only be faster, never
// different; decode_test.go checks both agree, and that the scanner, not
// the fallback, read the answers it compares.

var errSyntax = errors.New("json syntax")

// slowDecodes counts the answers the scanner could not read, which
// encoding/json decoded instead. decode_test.go checks that it stays put
// for the answers the service gives: the fallback would otherwise hide a
// scanner that reads nothing.
var slowDecodes atomic.Int64

// decodeSlow decodes b with encoding/json, for an answer the scanner could
// not read.
func decodeSlow(b []byte, v any) error {
	slowDecodes.Add(1)
	return json.Unmarshal(b, v)
}

type scanner struct {
	b   []byte
	i   int
	err error
}

func (s *scanner) fail() {
	if s.err == nil {
		s.err = fmt.Errorf("%w at offset %d", errSyntax, s.i)
	}
	s.i = len(s.b)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) expect(c byte) {
	if s.peek() != c {
		s.fail()
		return
	}
	s.i++
}

// rawString returns the bytes of a string without its quotes, and whether
// it has escapes. An escape's validity is left to str, which unquotes it.
func (s *scanner) rawString() ([]byte, bool) {
	if s.peek() != '"' {
		s.fail()
		return nil, false
	}
	start := s.i + 1
	esc := false
	for i := start; i < len(s.b); {
		i = special(s.b, i)
		if i >= len(s.b) {
			break
		}
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return s.b[start:i], esc
		case c == '\\' && (i+1 == len(s.b) || s.b[i+1] >= 0x20):
			// The escaped byte may be a quote, never a control character.
			esc = true
			i += 2
			continue
		}
		// A control character, bare or escaped.
		s.i = i
		s.fail()
		return nil, false
	}
	s.fail()
	return nil, false
}

// special returns the index of the first quote, backslash or control
// character in b at or after i, or len(b). It tests 8 bytes at a time: the
// byte loop this replaced (after bytes.IndexByte found the closing quote)
// was a fifth of the harness's CPU in a checkout run, and the lowest byte
// the word tests flag is always a true match, since a false one needs a
// borrow from a true one below it.
func special(b []byte, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q, bs := x^(ones*'"'), x^(ones*'\\')
		m := ((x-ones*0x20) & ^x | (q-ones) & ^q | (bs-ones) & ^bs) & highs
		if m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return i
}

// str reads a string (null reads as "").
func (s *scanner) str() string {
	if s.peek() == 'n' {
		s.literal("null")
		return ""
	}
	start := s.i
	raw, esc := s.rawString()
	if !esc {
		return string(raw)
	}
	var v string
	if err := json.Unmarshal(s.b[start:s.i], &v); err != nil {
		s.fail()
	}
	return v
}

func (s *scanner) literal(lit string) {
	s.ws()
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		s.fail()
		return
	}
	s.i += len(lit)
}

// int reads a whole number (null reads as 0).
func (s *scanner) int() int64 {
	if s.peek() == 'n' {
		s.literal("null")
		return 0
	}
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		s.fail()
	}
	return v
}

// skip passes over one value of any kind.
func (s *scanner) skip() {
	switch c := s.peek(); c {
	case '"':
		s.rawString()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				s.rawString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return
				}
			}
			s.i++
		}
		s.fail()
	case 't':
		s.literal("true")
	case 'f':
		s.literal("false")
	case 'n':
		s.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			s.i++
			for s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E' || s.b[s.i] == '+' ||
				s.b[s.i] == '-' || (s.b[s.i] >= '0' && s.b[s.i] <= '9')) {
				s.i++
			}
			return
		}
		s.fail()
	}
}

// object calls field for each key; field must read or skip the value.
// null reads as an empty object.
func (s *scanner) object(field func(key []byte)) {
	if s.peek() == 'n' {
		s.literal("null")
		return
	}
	s.expect('{')
	if s.peek() == '}' {
		s.i++
		return
	}
	for s.err == nil {
		k, esc := s.rawString()
		if esc {
			s.fail() // the service's keys never need escapes
			return
		}
		s.expect(':')
		field(k)
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// array calls elem for each element; null reads as empty.
func (s *scanner) array(elem func()) {
	if s.peek() == 'n' {
		s.literal("null")
		return
	}
	s.expect('[')
	if s.peek() == ']' {
		s.i++
		return
	}
	for s.err == nil {
		elem()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

func (s *scanner) end() error {
	if s.peek() != 0 {
		s.fail()
	}
	return s.err
}

func (s *scanner) entry() Entry {
	var e Entry
	s.object(func(k []byte) {
		switch string(k) {
		case "id":
			e.ID = s.str()
		case "product_id":
			e.ProductID = s.str()
		case "type":
			e.Type = s.entryType()
		case "quantity":
			e.Quantity = s.int()
		case "delta":
			e.Delta = s.int()
		case "on_hand":
			e.OnHand = s.int()
		case "reserved":
			e.Reserved = s.int()
		case "available":
			e.Available = s.int()
		case "version":
			e.Version = s.int()
		case "reservation_id":
			e.ReservationID = s.str()
		case "reason":
			e.Reason = s.str()
		case "created_by":
			e.CreatedBy = s.str()
		case "idempotency_key":
			e.IdempotencyKey = s.str()
		default:
			s.skip()
		}
	})
	return e
}

func (s *scanner) entries() []Entry { return s.list(s.entry) }

// list reads an array of entries with read (null reads as nil).
func (s *scanner) list(read func() Entry) []Entry {
	if s.peek() == 'n' {
		s.literal("null")
		return nil
	}
	es := []Entry{}
	s.array(func() { es = append(es, read()) })
	return es
}

// acks reads the entries of a write's answer, keeping only what the book
// records of an acknowledged write (book.acked): id, product, type and
// version; verification reads every field again from the ledger. Skipping
// the other strings saved about a fifth of the harness's CPU in a checkout
// run, which the service it measures got instead.
func (s *scanner) acks() []Entry { return s.list(s.ack) }

// ack reads an entry's id, product, type and version.
func (s *scanner) ack() Entry {
	var e Entry
	s.object(func(k []byte) {
		switch string(k) {
		case "id":
			e.ID = s.str()
		case "product_id":
			e.ProductID = s.str()
		case "type":
			e.Type = s.entryType()
		case "version":
			e.Version = s.int()
		default:
			s.skip()
		}
	})
	return e
}

// entryTypes are the entry types, so that reading one allocates nothing.
var entryTypes = []string{"ADD", "REMOVE", "RETURN", "RESERVE", "COMMIT", "RELEASE"}

// entryType reads an entry's type.
func (s *scanner) entryType() string {
	start := s.i
	if s.peek() != '"' {
		return s.str()
	}
	if raw, esc := s.rawString(); !esc {
		for _, t := range entryTypes {
			if string(raw) == t {
				return t
			}
		}
	}
	s.i = start
	return s.str()
}

func (s *scanner) stock() Stock {
	var st Stock
	s.object(func(k []byte) {
		switch string(k) {
		case "product_id":
			st.ProductID = s.str()
		case "on_hand":
			st.OnHand = s.int()
		case "reserved":
			st.Reserved = s.int()
		case "available":
			st.Available = s.int()
		case "version":
			st.Version = s.int()
		default:
			s.skip()
		}
	})
	return st
}

func (s *scanner) problem() *Problem {
	p := &Problem{}
	s.object(func(k []byte) {
		switch string(k) {
		case "status":
			p.Status = int(s.int())
		case "code":
			p.Code = s.str()
		case "detail":
			p.Detail = s.str()
		case "available":
			v := s.int()
			p.Available = &v
		case "op_index":
			v := int(s.int())
			p.OpIndex = &v
		default:
			s.skip()
		}
	})
	return p
}

// decodeWrite decodes a single write's 2xx answer.
func decodeWrite(b []byte, w *writeResponse) error {
	s := &scanner{b: b}
	s.object(func(k []byte) {
		switch string(k) {
		case "transactions":
			w.Transactions = s.acks()
		case "stock":
			w.Stock = s.stock()
		default:
			s.skip()
		}
	})
	if s.end() != nil {
		*w = writeResponse{}
		return decodeSlow(b, w)
	}
	return nil
}

// decodeBatch decodes a batch's 2xx answer.
func decodeBatch(b []byte, br *batchResponse) error {
	s := &scanner{b: b}
	s.object(func(k []byte) {
		if string(k) != "results" {
			s.skip()
			return
		}
		s.array(func() {
			var r batchResult
			s.object(func(k []byte) {
				switch string(k) {
				case "status":
					r.Status = int(s.int())
				case "transactions":
					r.Transactions = s.acks()
				case "error":
					r.Error = s.problem()
				default:
					s.skip()
				}
			})
			br.Results = append(br.Results, r)
		})
	})
	if s.end() != nil {
		*br = batchResponse{}
		return decodeSlow(b, br)
	}
	return nil
}

// decodeLedgerPage decodes a page of GET .../transactions.
func decodeLedgerPage(b []byte, p *ledgerPage) error {
	s := &scanner{b: b}
	s.object(func(k []byte) {
		switch string(k) {
		case "transactions":
			p.Transactions = s.entries()
		case "next_after":
			if s.peek() == 'n' {
				s.literal("null")
				return
			}
			v := s.int()
			p.NextAfter = &v
		default:
			s.skip()
		}
	})
	if s.end() != nil {
		*p = ledgerPage{}
		return decodeSlow(b, p)
	}
	return nil
}

// decodeProblem decodes an error answer.
func decodeProblem(b []byte) (*Problem, error) {
	s := &scanner{b: b}
	p := s.problem()
	if s.end() != nil {
		p = &Problem{}
		if err := decodeSlow(b, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendOp appends op as a JSON object, leaving out empty fields; single
// writes leave product_id and idempotency_key empty (they travel in the
// path and the header).
func appendOp(b []byte, op *Op) []byte {
	b = append(b, '{')
	field := func(k string) {
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
	}
	if op.ProductID != "" {
		field("product_id")
		b = appendString(b, op.ProductID)
	}
	field("type")
	b = appendString(b, op.Type)
	if op.Quantity != 0 {
		field("quantity")
		b = strconv.AppendInt(b, op.Quantity, 10)
	}
	if op.ReservationID != "" {
		field("reservation_id")
		b = appendString(b, op.ReservationID)
	}
	if op.TTLSeconds != 0 {
		field("ttl_seconds")
		b = strconv.AppendInt(b, op.TTLSeconds, 10)
	}
	if op.Reason != "" {
		field("reason")
		b = appendString(b, op.Reason)
	}
	if op.IdempotencyKey != "" {
		field("idempotency_key")
		b = appendString(b, op.IdempotencyKey)
	}
	return append(b, '}')
}

// appendBatch appends a batch request body.
func appendBatch(b []byte, atomic bool, ops []Op) []byte {
	b = append(b, `{"atomic":`...)
	b = strconv.AppendBool(b, atomic)
	b = append(b, `,"ops":[`...)
	for i := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOp(b, &ops[i])
	}
	return append(b, "]}"...)
}
