package shard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzDecodeEntry feeds arbitrary bytes to the record decoder: it must never
// panic, and a record it accepts must re-encode to the same bytes (so no two
// encodings mean one entry).
func FuzzDecodeEntry(f *testing.F) {
	e := sampleEntry()
	f.Add(EncodeEntry(&e))
	e.Type, e.Origin, e.IdempotencyKey, e.Fingerprint = TypeRelease, OriginExpiry, "", 0
	f.Add(EncodeEntry(&e))
	f.Add([]byte{0xdc, 0x00, 0x11, 0x01})
	f.Fuzz(func(t *testing.T, rec []byte) {
		got, err := DecodeEntry(rec)
		if err != nil {
			return
		}
		again := EncodeEntry(&got)
		back, err := DecodeEntry(again)
		if err != nil || back != got {
			t.Fatalf("re-encoded entry does not decode the same: %v\n%+v\n%+v", err, got, back)
		}
	})
}

// FuzzDecodeDifferential checks the hand-written decoder against the
// library one it replaced (refDecoder), on any bytes, as views and copies:
// what it accepts, the library accepts with the same entry; and it accepts
// exactly what the strict reference does, the library plus the refusals
// the hand-written decoder makes on purpose, so it refuses nothing else.
func FuzzDecodeDifferential(f *testing.F) {
	for _, rec := range decodeSeeds() {
		f.Add(rec)
	}
	d, lib, strict := newDecoder(), newRefDecoder(false), newRefDecoder(true)
	f.Fuzz(func(t *testing.T, rec []byte) {
		for _, view := range []bool{true, false} {
			var got, want, wantStrict Entry
			err := d.decode(rec, &got, view)
			errLib := lib.decode(rec, &want, view)
			errStrict := strict.decode(rec, &wantStrict, view)
			if err != nil && !errors.Is(err, errRecord) {
				t.Fatalf("error %v does not wrap errRecord", err)
			}
			if err == nil && (errLib != nil || got != want) {
				t.Fatalf("view %v: decoded what the library does not:\n%+v\nlibrary: %v %+v", view, got, errLib, want)
			}
			if (err == nil) != (errStrict == nil) {
				t.Fatalf("view %v: decoder: %v; strict reference: %v", view, err, errStrict)
			}
		}
	})
}

// decodeSeeds returns records for the differential fuzz target: entries at
// the edges of every encoding (integers of each width and sign, strings of
// each header size), encodings the encoder does not write but the decoder
// takes, and ones it refuses although the library took them.
func decodeSeeds() [][]byte {
	var recs [][]byte
	add := func(e Entry) { recs = append(recs, EncodeEntry(&e)) }
	e := sampleEntry()
	add(e)
	e.Quantity, e.Delta, e.OnHand, e.Reserved, e.Version = math.MaxInt64, math.MinInt64, -1, -32, -33
	e.ExpiresAt, e.CreatedAt, e.Fingerprint = math.MinInt32-1, math.MaxUint32+1, math.MaxUint64
	e.ProductID, e.ReservationID, e.IdempotencyKey = strings.Repeat("p", 255), "", strings.Repeat("k", 31)
	e.Reason, e.CreatedBy = strings.Repeat("r", 256), strings.Repeat("c", 32)
	e.Type, e.Origin = TypeRelease, OriginExpiry
	add(e)
	e = sampleEntry()
	e.Quantity, e.Delta, e.OnHand, e.Reserved, e.Version = 0, -128, 255, 256, 65536
	e.ProductID, e.Reason, e.CreatedBy, e.IdempotencyKey = "", strings.Repeat("x", 300), "", ""
	add(e)

	i64 := func(v int64) []byte { return mp(func(m *msgpack.Encoder) error { return m.EncodeInt64(v) }) }
	u64 := func(v uint64) []byte { return mp(func(m *msgpack.Encoder) error { return m.EncodeUint64(v) }) }
	recs = append(recs,
		// Not the encoder's, but taken: every field in a longer form.
		wideRecord(1), wideRecord(-1),
		// Taken by the library, refused: out of range, nil, bin string.
		withField(fieldCreatedAt, u64(math.MaxUint64)),
		withField(fieldFingerprint, []byte{0xff}),
		withField(fieldFingerprint, i64(-5)),
		withField(fieldQuantity, []byte{0xc0}),
		withField(fieldProductID, []byte{0xc4, 1, 'p'}),
	)
	return recs
}

// wideRecord returns sampleEntry's record with every value in a form the
// encoder does not write but the decoder takes: each integer width (signed
// ones for the unsigned fields too), str8/16/32, bin32 and array32. The ints
// are multiplied by sign (1 or -1), so that one flipped byte in the seed
// reaches the sign and range edges of each width.
func wideRecord(sign int64) []byte {
	e := sampleEntry()
	enc := func(write func(*msgpack.Encoder) error) []byte { return mp(write) }
	str := func(code byte, s string) []byte {
		n := len(s)
		switch code {
		case 0xd9:
			return append([]byte{code, byte(n)}, s...)
		case 0xda:
			return append([]byte{code, byte(n >> 8), byte(n)}, s...)
		}
		return append([]byte{code, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, s...)
	}
	fields := [][]byte{
		enc(func(m *msgpack.Encoder) error { return m.EncodeUint64(recordSchema) }),
		append([]byte{0xc6, 0, 0, 0, 16}, e.ID[:]...),
		str(0xda, e.ProductID),
		enc(func(m *msgpack.Encoder) error { return m.EncodeInt8(int8(e.Type)) }),
		enc(func(m *msgpack.Encoder) error { return m.EncodeInt16(int16(sign * 300)) }),
		enc(func(m *msgpack.Encoder) error { return m.EncodeInt32(int32(sign * 70_000)) }),
		enc(func(m *msgpack.Encoder) error { return m.EncodeInt64(sign * 10) }),
		enc(func(m *msgpack.Encoder) error { return m.EncodeInt8(int8(sign * 100)) }),
		enc(func(m *msgpack.Encoder) error { return m.EncodeUint32(uint32(e.Version)) }),
		str(0xdb, e.ReservationID),
		enc(func(m *msgpack.Encoder) error { return m.EncodeUint16(uint16(e.ExpiresAt)) }),
		str(0xd9, e.Reason),
		str(0xda, e.CreatedBy),
		enc(func(m *msgpack.Encoder) error { return m.EncodeUint8(uint8(e.CreatedAt)) }),
		str(0xdb, e.IdempotencyKey),
		enc(func(m *msgpack.Encoder) error { return m.EncodeInt32(int32(e.Fingerprint >> 4)) }),
		enc(func(m *msgpack.Encoder) error { return m.EncodeInt16(int16(e.Origin)) }),
	}
	rec := record(fields)
	return append([]byte{0xdd, 0, 0, 0, 17}, rec[3:]...)
}

// FuzzOps runs an op sequence chosen by the fuzzer through a State (ops,
// time passing, expiries) and checks every invariant after every step, and
// that a replay of the encoded log rebuilds the same state.
func FuzzOps(f *testing.F) {
	f.Add([]byte("\x00\x05\x03\x01\x02\x00\x03\x01\x04\x00\x01\x05\x00"))
	f.Add(bytes.Repeat([]byte{3, 1, 2, 0, 1, 4, 1, 7, 2}, 12))
	f.Add([]byte{0, 200, 3, 3, 3, 1, 4, 3, 3, 2, 9, 9, 9, 5, 3, 3, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		m := newMachine(t)
		for len(prog) >= 4 && len(m.log) < 500 {
			op, advance := decodeOp(prog[:4])
			prog = prog[4:]
			m.now += advance
			m.expire()
			m.do(op)
		}
		checkInvariants(t, m.s, m.log)
		if diff := sameState(m.s, replayLog(t, m.s, m.log)); diff != "" {
			t.Fatalf("replay differs: %s", diff)
		}
	})
}

// decodeOp turns 4 fuzz bytes into an op over a tiny world and a clock step.
func decodeOp(b []byte) (Op, int64) {
	kind, target, q, extra := b[0], b[1], int64(b[2]%6), b[3]
	p := fmt.Sprintf("p%d", target%2)
	rid := fmt.Sprintf("r%d", (target>>1)%4)
	op := Op{ProductID: p, Quantity: q, IdempotencyKey: fmt.Sprintf("k%d", binary.LittleEndian.Uint16([]byte{b[2], extra})%40),
		ExpectedVersion: NoVersion, Actor: "fuzz"}
	switch kind % 6 {
	case 0:
		op.Type = TypeAdd
	case 1:
		op.Type = TypeRemove
	case 2:
		op.Type = TypeReturn
	case 3:
		op.Type, op.ReservationID, op.TTLSeconds = TypeReserve, rid, int64(1+extra%30)
	case 4:
		op.Type, op.ReservationID = TypeCommit, rid
	case 5:
		op.Type, op.ReservationID, op.Quantity = TypeRelease, rid, 0
	}
	if extra&0x80 != 0 {
		op.ExpectedVersion = int64(extra & 7)
	}
	return op, int64(kind>>3) * 1e9
}
