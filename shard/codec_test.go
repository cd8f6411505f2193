package shard

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func sampleEntry() Entry {
	return Entry{
		ID:             makeID(t0+123_456_789, 3, 42),
		ProductID:      "sku-1",
		Type:           TypeReserve,
		Quantity:       2,
		Delta:          -2,
		OnHand:         10,
		Reserved:       2,
		Version:        7,
		ReservationID:  "order-77",
		ExpiresAt:      t0 + 600e9,
		Reason:         "checkout",
		CreatedBy:      "web",
		CreatedAt:      t0 + 123_456_789,
		IdempotencyKey: "key-1",
		Fingerprint:    0xfeedface,
		Origin:         OriginRequest,
	}
}

func TestCodecRoundTrip(t *testing.T) {
	e := sampleEntry()
	rec := EncodeEntry(&e)
	got, err := DecodeEntry(rec)
	if err != nil {
		t.Fatal(err)
	}
	if got != e {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", got, e)
	}
	e.Reason, e.ReservationID, e.IdempotencyKey, e.ExpiresAt, e.Fingerprint = "", "", "", 0, 0
	if got, err := DecodeEntry(EncodeEntry(&e)); err != nil || got != e {
		t.Errorf("empty fields: %v\n%+v", err, got)
	}
}

// TestCodecGolden pins the record layout: a change to it must be a new
// schema version, since records already on disk keep the old one.
func TestCodecGolden(t *testing.T) {
	e := sampleEntry()
	const want = "dc001101c410018bcfe5687b774f800300000000002aa5736b752d310402fe0a02" +
		"07a86f726465722d3737cf17979d89e8f37000a8636865636b6f7574a3776562cf17" +
		"979cfe3d85cd15a56b65792d31cefeedface00"
	if got := hex.EncodeToString(EncodeEntry(&e)); got != want {
		t.Errorf("record layout changed:\ngot  %s\nwant %s", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	e := sampleEntry()
	good := EncodeEntry(&e)
	cases := map[string][]byte{
		"empty":          {},
		"not an array":   {0xa1, 'x'},
		"too few fields": append([]byte{0xdc, 0x00, 0x10}, good[3:]...),
		"truncated":      good[:len(good)-3],
		"trailing byte":  append(append([]byte(nil), good...), 0),
		"schema 2":       append(append([]byte{0xdc, 0x00, 0x11}, 0x02), good[4:]...),
	}
	bad := sampleEntry()
	bad.Type = 9
	cases["unknown type"] = EncodeEntry(&bad)
	bad = sampleEntry()
	bad.Origin = 7
	cases["unknown origin"] = EncodeEntry(&bad)
	for name, rec := range cases {
		if _, err := DecodeEntry(rec); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestIDIsTimeOrderedUUIDv7(t *testing.T) {
	a := makeID(t0, 1, 5)
	b := makeID(t0+300, 1, 6) // same millisecond, later
	c := makeID(t0, 2, 0)
	if !(a.String() < b.String()) {
		t.Errorf("ids not time-ordered: %s %s", a, b)
	}
	if a == c {
		t.Errorf("shards share ids")
	}
	s := a.String()
	if len(s) != 36 || s[14] != '7' || (s[19] != '8' && s[19] != '9' && s[19] != 'a' && s[19] != 'b') {
		t.Errorf("%s is not a UUIDv7", s)
	}
}

// mp returns what write encodes with the library's encoder: test records are
// built from its output, not from the decoder's reading of the format.
func mp(write func(*msgpack.Encoder) error) []byte {
	var buf bytes.Buffer
	if err := write(msgpack.NewEncoder(&buf)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// recordFieldsOf returns the msgpack value of each field of e's record, as
// encoder.encode writes them; TestRecordFieldsOf keeps the two in step.
func recordFieldsOf(e *Entry) [][]byte {
	u := func(v uint64) []byte { return mp(func(m *msgpack.Encoder) error { return m.EncodeUint(v) }) }
	i := func(v int64) []byte { return mp(func(m *msgpack.Encoder) error { return m.EncodeInt(v) }) }
	s := func(v string) []byte { return mp(func(m *msgpack.Encoder) error { return m.EncodeString(v) }) }
	return [][]byte{
		u(recordSchema), mp(func(m *msgpack.Encoder) error { return m.EncodeBytes(e.ID[:]) }),
		s(e.ProductID), u(uint64(e.Type)), i(e.Quantity), i(e.Delta), i(e.OnHand), i(e.Reserved),
		i(e.Version), s(e.ReservationID), i(e.ExpiresAt), s(e.Reason), s(e.CreatedBy),
		i(e.CreatedAt), s(e.IdempotencyKey), u(e.Fingerprint), u(uint64(e.Origin)),
	}
}

// record joins field values under an array16 header of len(fields).
func record(fields [][]byte) []byte {
	rec := []byte{0xdc, 0, byte(len(fields))}
	for _, f := range fields {
		rec = append(rec, f...)
	}
	return rec
}

// withField returns sampleEntry's record with field i replaced by v.
func withField(i int, v []byte) []byte {
	e := sampleEntry()
	fields := recordFieldsOf(&e)
	fields[i] = v
	return record(fields)
}

func TestRecordFieldsOf(t *testing.T) {
	e := sampleEntry()
	if got := record(recordFieldsOf(&e)); !bytes.Equal(got, EncodeEntry(&e)) {
		t.Fatalf("recordFieldsOf is out of step with encoder.encode:\n%x\n%x", got, EncodeEntry(&e))
	}
}

// intForms returns every msgpack encoding of v the library can write: the
// shortest (EncodeInt) and each fixed width that holds v. The decoder must
// take all of them, as DecodeInt64 and DecodeUint64 do.
func intForms(v int64) [][]byte {
	forms := [][]byte{mp(func(m *msgpack.Encoder) error { return m.EncodeInt(v) })}
	add := func(ok bool, write func(*msgpack.Encoder) error) {
		if ok {
			forms = append(forms, mp(write))
		}
	}
	add(v >= math.MinInt8 && v <= math.MaxInt8, func(m *msgpack.Encoder) error { return m.EncodeInt8(int8(v)) })
	add(v >= math.MinInt16 && v <= math.MaxInt16, func(m *msgpack.Encoder) error { return m.EncodeInt16(int16(v)) })
	add(v >= math.MinInt32 && v <= math.MaxInt32, func(m *msgpack.Encoder) error { return m.EncodeInt32(int32(v)) })
	add(true, func(m *msgpack.Encoder) error { return m.EncodeInt64(v) })
	if v >= 0 {
		forms = append(forms, uintForms(uint64(v))...)
	}
	return forms
}

// uintForms is intForms for unsigned values; the signed widths count too.
func uintForms(v uint64) [][]byte {
	forms := [][]byte{mp(func(m *msgpack.Encoder) error { return m.EncodeUint(v) })}
	add := func(ok bool, write func(*msgpack.Encoder) error) {
		if ok {
			forms = append(forms, mp(write))
		}
	}
	add(v <= math.MaxUint8, func(m *msgpack.Encoder) error { return m.EncodeUint8(uint8(v)) })
	add(v <= math.MaxUint16, func(m *msgpack.Encoder) error { return m.EncodeUint16(uint16(v)) })
	add(v <= math.MaxUint32, func(m *msgpack.Encoder) error { return m.EncodeUint32(uint32(v)) })
	add(true, func(m *msgpack.Encoder) error { return m.EncodeUint64(v) })
	add(v <= math.MaxInt8, func(m *msgpack.Encoder) error { return m.EncodeInt8(int8(v)) })
	add(v <= math.MaxInt16, func(m *msgpack.Encoder) error { return m.EncodeInt16(int16(v)) })
	add(v <= math.MaxInt32, func(m *msgpack.Encoder) error { return m.EncodeInt32(int32(v)) })
	add(v <= math.MaxInt64, func(m *msgpack.Encoder) error { return m.EncodeInt64(int64(v)) })
	return forms
}

// edgeInts are the values at which msgpack integer encodings change width.
var edgeInts = []int64{
	0, 1, -1, 127, 128, -32, -33, 255, 256, -128, -129, 32767, 32768, 65535,
	65536, -32768, -32769, math.MaxInt32, math.MaxInt32 + 1, math.MaxUint32,
	math.MaxUint32 + 1, math.MinInt32, math.MinInt32 - 1, math.MaxInt64, math.MinInt64,
}

// checkSame decodes rec with the decoder and both reference decoders, in
// both modes, and fails unless all three accept it with the same entry.
func checkSame(t *testing.T, rec []byte) Entry {
	t.Helper()
	var got Entry
	for _, view := range []bool{true, false} {
		var want, strict Entry
		err := newDecoder().decode(rec, &got, view)
		errRef := newRefDecoder(false).decode(rec, &want, view)
		errStrict := newRefDecoder(true).decode(rec, &strict, view)
		if err != nil || errRef != nil || errStrict != nil || got != want || got != strict {
			t.Fatalf("view %v, record %x:\n%v %+v\n%v %+v\n%v %+v", view, rec, err, got, errRef, want, errStrict, strict)
		}
	}
	return got
}

// TestDecodeIntegerForms: every encoding of an integer is read as that
// integer, in an int64 field and in a uint64 one.
func TestDecodeIntegerForms(t *testing.T) {
	for _, v := range edgeInts {
		for _, form := range intForms(v) {
			if got := checkSame(t, withField(fieldQuantity, form)); got.Quantity != v {
				t.Errorf("quantity %x: got %d, want %d", form, got.Quantity, v)
			}
		}
		if v < 0 {
			continue
		}
		for _, form := range uintForms(uint64(v)) {
			if got := checkSame(t, withField(fieldFingerprint, form)); got.Fingerprint != uint64(v) {
				t.Errorf("fingerprint %x: got %d, want %d", form, got.Fingerprint, v)
			}
		}
	}
	for _, form := range uintForms(math.MaxUint64) {
		if got := checkSame(t, withField(fieldFingerprint, form)); got.Fingerprint != math.MaxUint64 {
			t.Errorf("fingerprint %x: got %d", form, got.Fingerprint)
		}
	}
	for _, form := range uintForms(recordSchema) {
		checkSame(t, withField(fieldSchema, form))
	}
}

// TestDecodeWideForms: the fuzz seeds with every value in a longer form
// decode, and the same as the library reads them.
func TestDecodeWideForms(t *testing.T) {
	for _, sign := range []int64{1, -1} {
		if got := checkSame(t, wideRecord(sign)); got.Delta != sign*70_000 {
			t.Errorf("delta %d, want %d", got.Delta, sign*70_000)
		}
	}
}

// TestDecodeStringForms: strings of every length class, in str8/16/32 as
// well as the shortest form; the id as str or bin.
func TestDecodeStringForms(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 255, 256, 300, 65535, 65536} {
		s := strings.Repeat("x", n)
		forms := [][]byte{
			mp(func(m *msgpack.Encoder) error { return m.EncodeString(s) }),
			append([]byte{0xdb, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, s...), // str32
		}
		if n <= math.MaxUint16 {
			forms = append(forms, append([]byte{0xda, byte(n >> 8), byte(n)}, s...)) // str16
		}
		if n <= math.MaxUint8 {
			forms = append(forms, append([]byte{0xd9, byte(n)}, s...)) // str8
		}
		for _, form := range forms {
			if got := checkSame(t, withField(fieldReason, form)); got.Reason != s {
				t.Errorf("reason %x...: got %d bytes, want %d", form[:min(len(form), 5)], len(got.Reason), n)
			}
		}
	}
	e := sampleEntry()
	for _, header := range [][]byte{{0xb0}, {0xd9, 16}, {0xda, 0, 16}, {0xdb, 0, 0, 0, 16}, {0xc4, 16}, {0xc5, 0, 16}, {0xc6, 0, 0, 0, 16}} {
		if got := checkSame(t, withField(fieldID, append(header, e.ID[:]...))); got.ID != e.ID {
			t.Errorf("id %x: got %s", header, got.ID)
		}
	}
}

// TestDecodeRejectsMore covers the decoder's errors and their messages (byte
// offsets are those of sampleEntry's record, see TestCodecGolden); the
// strict cases are those the library took: the decoder refuses them on
// purpose, since the encoder never writes them and they would be misread.
func TestDecodeRejectsMore(t *testing.T) {
	e := sampleEntry()
	good := EncodeEntry(&e)
	nilv := []byte{0xc0}
	cases := []struct {
		name, want string
		rec        []byte
		strict     bool // the library accepts it
	}{
		{"empty", "header (byte 0): truncated: 1 bytes needed, 0 left", nil, false},
		{"map header", "header (byte 0): type code 0x80, want an array", []byte{0x80}, false},
		{"nil header", "header (byte 0): nil, want an array", nilv, false},
		{"short header", "header (byte 0): truncated: 2 bytes needed, 1 left", []byte{0xdc, 0}, false},
		{"fixarray", "15 fields, want 17", append([]byte{0x9f}, record(recordFieldsOf(&e)[:15])[3:]...), false},
		{"array32", "", append([]byte{0xdd, 0, 0, 0, 17}, good[3:]...), false},
		{"schema 2", "schema 2, want 1", withField(fieldSchema, []byte{2}), false},
		{"id of 15", "id of 15 bytes, want 16", withField(fieldID, append([]byte{0xc4, 15}, e.ID[:15]...)), false},
		{"nil id", "id (byte 4): nil, want a string", withField(fieldID, nilv), false},
		{"nil string", "product_id (byte 22): nil, want a string", withField(fieldProductID, nilv), false},
		{"long string", "reason (byte 52): truncated: 200 bytes needed, 25 left", withField(fieldReason, []byte{0xd9, 200}), false},
		{"float", "quantity (byte 29): type code 0xcb, want an integer",
			withField(fieldQuantity, mp(func(m *msgpack.Encoder) error { return m.EncodeFloat64(2) })), false},
		{"bool", "type code 0xc3, want an integer", withField(fieldQuantity, []byte{0xc3}), false},
		{"short int", "created_at (byte 65): truncated: 8 bytes needed, 4 left", good[:70], false},
		{"trailing", "1 trailing bytes", append(bytes.Clone(good), 0), false},
		{"type 0", "type 0 origin 0", withField(fieldType, []byte{0}), false},
		{"type 300", "type 300 origin 0", withField(fieldType, []byte{0xcd, 1, 44}), false},
		{"origin 3", "type 4 origin 3", withField(fieldOrigin, []byte{3}), false},
		{"nil int", "quantity (byte 29): nil, want an integer", withField(fieldQuantity, nilv), true},
		{"nil origin", "origin (byte 85): nil, want an integer", withField(fieldOrigin, nilv), true},
		{"int over MaxInt64", "created_at (byte 65): 9223372036854775808 overflows int64",
			withField(fieldCreatedAt, mp(func(m *msgpack.Encoder) error { return m.EncodeUint(1 << 63) })), true},
		{"negative fixint", "fingerprint (byte 80): -1 is negative", withField(fieldFingerprint, []byte{0xff}), true},
		{"negative int8", "-128 is negative", withField(fieldFingerprint, []byte{0xd0, 0x80}), true},
		{"negative int64", "-9223372036854775808 is negative",
			withField(fieldFingerprint, mp(func(m *msgpack.Encoder) error { return m.EncodeInt64(math.MinInt64) })), true},
		{"negative origin", "-3 is negative", withField(fieldOrigin, []byte{0xfd}), false},
		{"bin string", "product_id (byte 22): type code 0xc4, want a string", withField(fieldProductID, []byte{0xc4, 1, 'x'}), true},
	}
	for _, c := range cases {
		var got Entry
		err := newDecoder().decode(c.rec, &got, true)
		errRef := newRefDecoder(false).decode(c.rec, new(Entry), true)
		if c.want == "" { // a form of the record that must still be read
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		switch {
		case err == nil:
			t.Errorf("%s: decoded %+v", c.name, got)
		case !errors.Is(err, errRecord) || !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: error %q, want %q", c.name, err, c.want)
		case c.strict != (errRef == nil):
			t.Errorf("%s: library decoder: %v; strict case: %v", c.name, errRef, c.strict)
		}
	}
}

// randomEntry returns an entry with numbers across all magnitudes and signs
// (so every integer width) and strings of 0 to 300 bytes, biased to the
// lengths where the string header changes.
func randomEntry(r *rand.Rand) Entry {
	// The shift by up to 64 keeps a random number of low bits: 0 to 64.
	unsigned := func() uint64 { return r.Uint64() >> r.UintN(65) }
	signed := func() int64 {
		v := int64(unsigned())
		if r.IntN(2) == 0 {
			return v
		}
		return -v - 1 // reaches MinInt64
	}
	str := func() string {
		n := r.IntN(301)
		if r.IntN(2) == 0 {
			n = []int{0, 1, 31, 32, 255, 256, 300}[r.IntN(7)]
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return string(b)
	}
	var id ID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return Entry{
		ID: id, ProductID: str(), Type: Type(1 + r.IntN(int(typeEnd)-1)),
		Quantity: signed(), Delta: signed(), OnHand: signed(), Reserved: signed(), Version: signed(),
		ReservationID: str(), ExpiresAt: signed(), Reason: str(), CreatedBy: str(), CreatedAt: signed(),
		IdempotencyKey: str(), Fingerprint: unsigned(), Origin: Origin(r.IntN(int(originEnd))),
	}
}

// TestDecodeRoundTripRandom: random entries encode and decode back to
// themselves, as views and as copies, and the copies own their bytes.
func TestDecodeRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	enc, d := newEncoder(), newDecoder()
	n := 20_000
	if testing.Short() {
		n = 2_000
	}
	for i := 0; i < n; i++ {
		e := randomEntry(r)
		rec := bytes.Clone(enc.encode(&e))
		var view, cp Entry
		if err := d.decode(rec, &view, true); err != nil || view != e {
			t.Fatalf("view: %v\ngot  %+v\nwant %+v", err, view, e)
		}
		if err := d.decode(rec, &cp, false); err != nil || cp != e {
			t.Fatalf("copy: %v\ngot  %+v\nwant %+v", err, cp, e)
		}
		clear(rec)
		if cp != e {
			t.Fatalf("copy shares the record's bytes")
		}
	}
}

// TestDecodeViewAllocs: replay decodes every entry as a view; it must not
// allocate.
func TestDecodeViewAllocs(t *testing.T) {
	e := sampleEntry()
	e.Reason = strings.Repeat("r", 300)
	rec := EncodeEntry(&e)
	d := newDecoder()
	var got Entry
	if n := testing.AllocsPerRun(100, func() {
		if err := d.decode(rec, &got, true); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per view decode", n)
	}
}

// BenchmarkDecodeEntry decodes one record: as views (replay), as copies
// (reads), and with the library decoder the hand-written one replaced.
func BenchmarkDecodeEntry(b *testing.B) {
	e := sampleEntry()
	rec := EncodeEntry(&e)
	run := func(decode func([]byte, *Entry, bool) error, view bool) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(rec)))
			var got Entry
			for b.Loop() {
				if err := decode(rec, &got, view); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("view", run(newDecoder().decode, true))
	b.Run("copy", run(newDecoder().decode, false))
	b.Run("library", run(newRefDecoder(false).decode, true))
}
