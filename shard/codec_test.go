package shard

import (
	"encoding/hex"
	"testing"
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
