package shard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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

// decoder decodes records. Not safe for concurrent use.
type decoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
	rec []byte
}

func newDecoder() *decoder {
	d := &decoder{}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}

var errRecord = errors.New("malformed entry record")

// decode fills e from rec. With view, the strings of e point into rec
// (no allocation; valid only while rec is); otherwise they are copies.
func (d *decoder) decode(rec []byte, e *Entry, view bool) error {
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
	// Checked before narrowing: msgpack would truncate silently.
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

func (d *decoder) int(err *error) int64 {
	if *err != nil {
		return 0
	}
	v, e := d.dec.DecodeInt64()
	*err = e
	return v
}

func (d *decoder) uint(err *error) uint64 {
	if *err != nil {
		return 0
	}
	v, e := d.dec.DecodeUint64()
	*err = e
	return v
}

// bytes returns the next str or bin value as a view into the record.
func (d *decoder) bytes(err *error) []byte {
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

func (d *decoder) str(err *error, view bool) string {
	b := d.bytes(err)
	if len(b) == 0 {
		return ""
	}
	if view {
		return unsafe.String(&b[0], len(b))
	}
	return string(b)
}
