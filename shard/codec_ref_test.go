package shard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// refDecoder is the record decoder as it was before the hand-written one in
// codec.go: msgpack.Decoder over a bytes.Reader. It is kept, unchanged in
// what it accepts, as the oracle of the differential tests: it is slow but
// its reading of msgpack is the library's, not ours.
//
// With strict set it also rejects the values the hand-written decoder
// rejects on purpose although the library takes them (see strictInt,
// strictUint and the bin check in str); no encoder output is among them.
// That lets the fuzz target compare acceptance both ways.
type refDecoder struct {
	r      bytes.Reader
	dec    *msgpack.Decoder
	rec    []byte
	strict bool
}

func newRefDecoder(strict bool) *refDecoder {
	d := &refDecoder{strict: strict}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}

// decode is the former decoder.decode.
func (d *refDecoder) decode(rec []byte, e *Entry, view bool) error {
	d.rec = rec
	d.r.Reset(rec)
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		return fmt.Errorf("%w: %v", errRecord, err)
	}
	if n != recordFields {
		return fmt.Errorf("%w: %d fields, want %d", errRecord, n, recordFields)
	}
	schema := d.uint(&err)
	if err == nil && schema != recordSchema {
		return fmt.Errorf("%w: schema %d, want %d", errRecord, schema, recordSchema)
	}
	id := d.bytes(&err)
	if err == nil && len(id) != len(e.ID) {
		return fmt.Errorf("%w: id of %d bytes", errRecord, len(id))
	}
	copy(e.ID[:], id)
	e.ProductID = d.str(&err, view)
	typ := d.uint(&err)
	e.Quantity = d.int(&err)
	e.Delta = d.int(&err)
	e.OnHand = d.int(&err)
	e.Reserved = d.int(&err)
	e.Version = d.int(&err)
	e.ReservationID = d.str(&err, view)
	e.ExpiresAt = d.int(&err)
	e.Reason = d.str(&err, view)
	e.CreatedBy = d.str(&err, view)
	e.CreatedAt = d.int(&err)
	e.IdempotencyKey = d.str(&err, view)
	e.Fingerprint = d.uint(&err)
	origin := d.uint(&err)
	if err != nil {
		return fmt.Errorf("%w: %v", errRecord, err)
	}
	if d.r.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errRecord, d.r.Len())
	}
	if typ == 0 || typ >= uint64(typeEnd) || origin >= uint64(originEnd) {
		return fmt.Errorf("%w: type %d origin %d", errRecord, typ, origin)
	}
	e.Type, e.Origin = Type(typ), Origin(origin)
	return nil
}

// peek returns the code of the next value (0 at the end: the read that
// follows fails anyway).
func (d *refDecoder) peek() byte {
	c, _ := d.dec.PeekCode()
	return c
}

func (d *refDecoder) int(err *error) int64 {
	if *err != nil {
		return 0
	}
	c := d.peek()
	v, e := d.dec.DecodeInt64()
	if e == nil && d.strict {
		e = strictInt(c, v)
	}
	*err = e
	return v
}

func (d *refDecoder) uint(err *error) uint64 {
	if *err != nil {
		return 0
	}
	c := d.peek()
	v, e := d.dec.DecodeUint64()
	if e == nil && d.strict {
		e = strictUint(c, v)
	}
	*err = e
	return v
}

// strictInt rejects what DecodeInt64 takes but decoder.int refuses: nil
// (read as 0) and a uint64 above MaxInt64 (read wrapped to a negative).
func strictInt(c byte, v int64) error {
	switch {
	case c == msgpcode.Nil:
		return errors.New("strict: nil integer")
	case c == msgpcode.Uint64 && v < 0:
		return errors.New("strict: uint64 above MaxInt64")
	}
	return nil
}

// strictUint rejects what DecodeUint64 takes but decoder.uint refuses: nil
// and negative numbers (read wrapped). The library sign-extends every signed
// code to 64 bits, so a negative one has the top bit set.
func strictUint(c byte, v uint64) error {
	signed := c >= msgpcode.NegFixedNumLow || (c >= msgpcode.Int8 && c <= msgpcode.Int64)
	switch {
	case c == msgpcode.Nil:
		return errors.New("strict: nil integer")
	case signed && int64(v) < 0:
		return errors.New("strict: negative unsigned")
	}
	return nil
}

// bytes returns the next str or bin value as a view into the record.
func (d *refDecoder) bytes(err *error) []byte {
	if *err != nil {
		return nil
	}
	n, e := d.dec.DecodeBytesLen()
	if e != nil {
		*err = e
		return nil
	}
	if n < 0 || n > d.r.Len() {
		*err = io.ErrUnexpectedEOF
		return nil
	}
	at := len(d.rec) - d.r.Len()
	_, _ = d.r.Seek(int64(n), io.SeekCurrent)
	return d.rec[at : at+n : at+n]
}

func (d *refDecoder) str(err *error, view bool) string {
	if *err == nil && d.strict && msgpcode.IsBin(d.peek()) {
		*err = errors.New("strict: bin for a string")
		return ""
	}
	b := d.bytes(err)
	if len(b) == 0 {
		return ""
	}
	if view {
		return unsafe.String(&b[0], len(b))
	}
	return string(b)
}
