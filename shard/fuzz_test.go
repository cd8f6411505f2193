package shard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
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
