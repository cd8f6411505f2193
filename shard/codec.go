package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// The WAL record of one entry is a msgpack array with an explicit schema
// version first, so that a future layout is told apart instead of being
// misread. Fields are positional (no names): compact, and a changed order is
// caught by the golden test, not silently misdecoded.
//
//	[schema, id, product_id, type, quantity, delta, on_hand, reserved,
//	 version, reservation_id, expires_at, reason, created_by, created_at,
//	 idempotency_key, fingerprint, origin]
const (
	recordSchema = 1
	recordFields = 17
	// EntryBytesMax bounds one encoded entry: the strings at their limits
	// (4 ids of 128 bytes, a 255-byte key, a 256-byte reason) plus 16 bytes
	// of id and at most 9 bytes for each of 11 numbers and headers.
	EntryBytesMax = 4*IDBytesMax + KeyBytesMax + ReasonBytesMax + 16 + 17*9 + 16
)

// encoder encodes entries into a reused buffer. Not safe for concurrent use.
type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func newEncoder() *encoder {
	c := &encoder{}
	c.enc = msgpack.NewEncoder(&c.buf)
	return c
}

// encode returns the record of e; the slice is valid until the next call.
func (c *encoder) encode(e *Entry) []byte {
	c.buf.Reset()
	m := c.enc
	// Writes to a bytes.Buffer cannot fail, so the errors are not checked.
	_ = m.EncodeArrayLen(recordFields)
	_ = m.EncodeUint(recordSchema)
	_ = m.EncodeBytes(e.ID[:])
	_ = m.EncodeString(e.ProductID)
	_ = m.EncodeUint(uint64(e.Type))
	_ = m.EncodeInt(e.Quantity)
	_ = m.EncodeInt(e.Delta)
	_ = m.EncodeInt(e.OnHand)
	_ = m.EncodeInt(e.Reserved)
	_ = m.EncodeInt(e.Version)
	_ = m.EncodeString(e.ReservationID)
	_ = m.EncodeInt(e.ExpiresAt)
	_ = m.EncodeString(e.Reason)
	_ = m.EncodeString(e.CreatedBy)
	_ = m.EncodeInt(e.CreatedAt)
	_ = m.EncodeString(e.IdempotencyKey)
	_ = m.EncodeUint(e.Fingerprint)
	_ = m.EncodeUint(uint64(e.Origin))
	return c.buf.Bytes()
}

// EncodeEntry returns the WAL record of e in a new slice.
func EncodeEntry(e *Entry) []byte {
	return bytes.Clone(newEncoder().encode(e))
}

// decoder decodes entry records. It reads the msgpack wire format by hand,
// for exactly the values the schema holds, with an index into the record:
// msgpack.Decoder reads through a bytes.Reader a byte or a few at a time,
// about 250 ns an entry, which was most of start-up replay. The reader is
// as strict as that decoder or stricter, never looser, and takes every
// encoding the library's encoder can produce (see integer and blob);
// codec_ref_test.go keeps the library decoder and fuzzes the two against
// each other. Not safe for concurrent use.
//
// The first error is kept and the reader jumps to the end of the record, so
// every later read finds nothing and returns zero: decode can read all the
// fields straight through and check once.
type decoder struct {
	rec []byte // the record being decoded
	at  int    // index in rec of the next byte to read
	err error  // the first error
}

func newDecoder() *decoder {
	return &decoder{}
}

var errRecord = errors.New("malformed entry record")

// Field positions in the record, for messages (and tests).
const (
	fieldSchema = iota
	fieldID
	fieldProductID
	fieldType
	fieldQuantity
	fieldDelta
	fieldOnHand
	fieldReserved
	fieldVersion
	fieldReservationID
	fieldExpiresAt
	fieldReason
	fieldCreatedBy
	fieldCreatedAt
	fieldIdempotencyKey
	fieldFingerprint
	fieldOrigin
	fieldHeader = -1 // the array header, before the fields
)

// fieldNames names the fields in messages, in record order.
var fieldNames = [recordFields]string{
	"schema", "id", "product_id", "type", "quantity", "delta", "on_hand",
	"reserved", "version", "reservation_id", "expires_at", "reason",
	"created_by", "created_at", "idempotency_key", "fingerprint", "origin",
}

// msgpack type codes of the values a record holds (msgpack spec, "formats").
const (
	mpPosFixintMax = 0x7f // 0x00-0x7f: the integer itself
	mpFixarray     = 0x90 // 0x90-0x9f: array of (code & 0x0f) values
	mpFixstr       = 0xa0 // 0xa0-0xbf: string of (code & 0x1f) bytes
	mpNil          = 0xc0
	mpBin8         = 0xc4
	mpBin16        = 0xc5
	mpBin32        = 0xc6
	mpUint8        = 0xcc
	mpUint16       = 0xcd
	mpUint32       = 0xce
	mpUint64       = 0xcf
	mpInt8         = 0xd0
	mpInt16        = 0xd1
	mpInt32        = 0xd2
	mpInt64        = 0xd3
	mpStr8         = 0xd9
	mpStr16        = 0xda
	mpStr32        = 0xdb
	mpArray16      = 0xdc
	mpArray32      = 0xdd
	mpNegFixintMin = 0xe0 // 0xe0-0xff: the integer -32..-1
)

// decode fills e from rec. With view, the strings of e point into rec
// (no allocation; valid only while rec is); otherwise they are copies.
// On error e may be partly filled.
func (d *decoder) decode(rec []byte, e *Entry, view bool) error {
	d.rec, d.at, d.err = rec, 0, nil
	if n := d.arrayLen(); d.err == nil && n != recordFields {
		return fmt.Errorf("%w: %d fields, want %d", errRecord, n, recordFields)
	}
	if schema := d.uint(fieldSchema); d.err == nil && schema != recordSchema {
		return fmt.Errorf("%w: schema %d, want %d", errRecord, schema, recordSchema)
	}
	id := d.blob(fieldID, true)
	if d.err == nil && len(id) != len(e.ID) {
		return fmt.Errorf("%w: id of %d bytes, want %d", errRecord, len(id), len(e.ID))
	}
	copy(e.ID[:], id)
	e.ProductID = d.str(fieldProductID, view)
	typ := d.uint(fieldType)
	e.Quantity = d.int(fieldQuantity)
	e.Delta = d.int(fieldDelta)
	e.OnHand = d.int(fieldOnHand)
	e.Reserved = d.int(fieldReserved)
	e.Version = d.int(fieldVersion)
	e.ReservationID = d.str(fieldReservationID, view)
	e.ExpiresAt = d.int(fieldExpiresAt)
	e.Reason = d.str(fieldReason, view)
	e.CreatedBy = d.str(fieldCreatedBy, view)
	e.CreatedAt = d.int(fieldCreatedAt)
	e.IdempotencyKey = d.str(fieldIdempotencyKey, view)
	e.Fingerprint = d.uint(fieldFingerprint)
	origin := d.uint(fieldOrigin)
	if d.err != nil {
		return d.err
	}
	if n := len(rec) - d.at; n != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errRecord, n)
	}
	// Checked before narrowing to uint8, which would truncate silently.
	if typ == 0 || typ >= uint64(typeEnd) || origin >= uint64(originEnd) {
		return fmt.Errorf("%w: type %d origin %d", errRecord, typ, origin)
	}
	e.Type, e.Origin = Type(typ), Origin(origin)
	return nil
}

// DecodeEntry decodes a WAL record into a new Entry.
func DecodeEntry(rec []byte) (Entry, error) {
	var e Entry
	err := newDecoder().decode(rec, &e, false)
	return e, err
}

// fail keeps the first error, naming the field and the byte where its value
// starts, and moves to the end of the record (see decoder).
func (d *decoder) fail(field, start int, format string, args ...any) {
	d.at = len(d.rec)
	if d.err != nil {
		return
	}
	name := "header"
	if field != fieldHeader {
		name = fieldNames[field]
	}
	d.err = fmt.Errorf("%w: %s (byte %d): %s", errRecord, name, start, fmt.Sprintf(format, args...))
}

// truncated fails for want bytes that are not there.
func (d *decoder) truncated(field, start, want int) {
	d.fail(field, start, "truncated: %d bytes needed, %d left", want, len(d.rec)-d.at)
}

// take returns the next n bytes and moves past them, or false if fewer are
// left (or n < 0, from a 32-bit length on a 32-bit platform). It makes no
// call, so that it is inlined; the caller reports the failure.
func (d *decoder) take(n int) ([]byte, bool) {
	if n < 0 || n > len(d.rec)-d.at {
		return nil, false
	}
	b := d.rec[d.at : d.at+n : d.at+n]
	d.at += n
	return b, true
}

// code reads the type code that starts a value, or false at the end. Like
// take, it is inlined and leaves the failure to the caller.
func (d *decoder) code() (byte, bool) {
	if d.at >= len(d.rec) {
		return 0, false
	}
	c := d.rec[d.at]
	d.at++
	return c, true
}

// arrayLen reads the record's array header. fixarray cannot hold 17, but all
// three forms are read so that a wrong count is reported as such; nil is an
// error (the library read it as -1 fields).
func (d *decoder) arrayLen() int {
	c, ok := d.code()
	if !ok {
		d.truncated(fieldHeader, 0, 1)
		return 0
	}
	var b []byte
	switch {
	case c&0xf0 == mpFixarray:
		return int(c & 0x0f)
	case c == mpArray16:
		if b, ok = d.take(2); ok {
			return int(binary.BigEndian.Uint16(b))
		}
		d.truncated(fieldHeader, 0, 2)
	case c == mpArray32:
		if b, ok = d.take(4); ok {
			return int(binary.BigEndian.Uint32(b))
		}
		d.truncated(fieldHeader, 0, 4)
	default:
		d.fail(fieldHeader, 0, "%s, want an array", codeName(c))
	}
	return 0
}

// int reads an int64 field.
func (d *decoder) int(field int) int64 {
	return int64(d.integer(field, true))
}

// uint reads a uint64 field.
func (d *decoder) uint(field int) uint64 {
	return d.integer(field, false)
}

// integer reads an integer field, signed (int64) or not (uint64), and
// returns its 64 bits. The encoder writes the shortest encoding
// (EncodeInt, EncodeUint), but every msgpack integer encoding is taken, as
// DecodeInt64 and DecodeUint64 take them: positive or negative fixint,
// uint8/16/32/64 and int8/16/32/64. Unlike those, a value out of the field's
// range (a uint64 above MaxInt64 for int64, a negative for uint64) is an
// error, not wrapped, and so is nil, not read as 0: the encoder writes
// neither.
func (d *decoder) integer(field int, signed bool) uint64 {
	start := d.at
	c, ok := d.code()
	var v uint64
	var neg bool
	switch {
	case !ok:
		d.truncated(field, start, 1)
		return 0
	case c <= mpPosFixintMax: // the most common case, in range either way
		return uint64(c)
	case c >= mpNegFixintMin:
		v, neg = uint64(int64(int8(c))), true
	case c >= mpUint8 && c <= mpInt64:
		// 0xcc-0xcf are uint8/16/32/64 and 0xd0-0xd3 int8/16/32/64: the
		// low two bits of the code give the width, 1 << (c & 3) bytes.
		n := 1 << (c & 3)
		b, ok := d.take(n)
		if !ok {
			d.truncated(field, start, n)
			return 0
		}
		v, neg = fixedInt(c, b)
	default:
		d.fail(field, start, "%s, want an integer", codeName(c))
		return 0
	}
	switch {
	case neg && !signed:
		d.fail(field, start, "%d is negative", int64(v))
		return 0
	case !neg && signed && v > math.MaxInt64:
		d.fail(field, start, "%d overflows int64", v)
		return 0
	}
	return v
}

// fixedInt returns the value of a uint8-64 or int8-64 (code c) whose
// big-endian bytes are b: its 64-bit two's complement, and whether it is
// negative, which tells a negative int64 from a uint64 above MaxInt64 with
// the same bits.
func fixedInt(c byte, b []byte) (v uint64, neg bool) {
	switch c {
	case mpUint8:
		return uint64(b[0]), false
	case mpUint16:
		return uint64(binary.BigEndian.Uint16(b)), false
	case mpUint32:
		return uint64(binary.BigEndian.Uint32(b)), false
	case mpUint64:
		return binary.BigEndian.Uint64(b), false
	}
	var s int64
	switch c {
	case mpInt8:
		s = int64(int8(b[0]))
	case mpInt16:
		s = int64(int16(binary.BigEndian.Uint16(b)))
	case mpInt32:
		s = int64(int32(binary.BigEndian.Uint32(b)))
	default: // mpInt64
		s = int64(binary.BigEndian.Uint64(b))
	}
	return uint64(s), s < 0
}

// str reads a string field as a view into the record (view) or a copy. An
// empty string is "" either way, not pointing into the record. Small enough
// to be inlined.
func (d *decoder) str(field int, view bool) string {
	b := d.blob(field, false)
	if view && len(b) > 0 {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return string(b) // "" without allocating when b is empty
}

// blob reads a string (fixstr, str8/16/32), or with bin also a byte string
// (bin8/16/32), and returns it as a view into the record. The encoder writes
// strings as str and the id as bin; the library took either for both, but a
// string field holding bin is not something it writes. nil is an error, as it
// was (the library gave length -1, which the old reader refused).
func (d *decoder) blob(field int, bin bool) []byte {
	start := d.at
	c, ok := d.code()
	if !ok {
		d.truncated(field, start, 1)
		return nil
	}
	var n int
	if c&0xe0 == mpFixstr { // the most common case: length in the code
		n = int(c & 0x1f)
	} else if n = lengthBytes(c, bin); n == 0 {
		d.fail(field, start, "%s, want a string", codeName(c))
		return nil
	} else if b, ok := d.take(n); !ok {
		d.truncated(field, start, n)
		return nil
	} else {
		n = bigEndianLen(b)
	}
	b, ok := d.take(n)
	if !ok {
		d.truncated(field, start, n)
	}
	return b
}

// lengthBytes returns how many bytes of length follow the type code c of a
// str8/16/32 (or, with bin, a bin8/16/32): 1, 2 or 4; 0 for other codes.
func lengthBytes(c byte, bin bool) int {
	switch {
	case c == mpStr8 || bin && c == mpBin8:
		return 1
	case c == mpStr16 || bin && c == mpBin16:
		return 2
	case c == mpStr32 || bin && c == mpBin32:
		return 4
	}
	return 0
}

// bigEndianLen returns the length in b, of 1, 2 or 4 bytes. On a 32-bit
// platform a length past MaxInt32 turns negative; take refuses it.
func bigEndianLen(b []byte) int {
	switch len(b) {
	case 1:
		return int(b[0])
	case 2:
		return int(binary.BigEndian.Uint16(b))
	}
	return int(binary.BigEndian.Uint32(b))
}

// codeName describes a type code that was not the one wanted.
func codeName(c byte) string {
	if c == mpNil {
		return "nil"
	}
	return fmt.Sprintf("type code %#02x", c)
}
