package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/inventory-ledger/inventory/shard"
)

func TestAppendTime(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := []int64{0, 1, 999_999_999, 1_000_000_000, 951_782_400_000_000_000 /* 2000-02-29 */, 4_107_542_400_000_000_000, /* 2100-03-01 */
		math.MaxInt64, time.Date(2024, 12, 31, 23, 59, 59, 999_999_999, time.UTC).UnixNano(), -1}
	for range 100_000 {
		vals = append(vals, r.Int64())
	}
	for _, ns := range vals {
		got := string(appendTime(nil, ns))
		want := time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
		if got != want {
			t.Fatalf("appendTime(%d) = %s, want %s", ns, got, want)
		}
	}
}

func TestJSONStrings(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "tab\tnl\ncr\r\x00\x1f\x7f", "é😀\u2028", "</script>&"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil || got != s {
			t.Errorf("appendJSONString(%q) = %s: decodes to %q, %v", s, b, got, err)
		}
		// And our reader reads it back.
		var r jsonReader
		r.reset(b)
		if v, err := r.str(); err != nil || string(v) != s {
			t.Errorf("jsonReader read %s as %q, %v", b, v, err)
		}
	}
}

func TestMsgpackIntegers(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64} {
		var e msgpackEncoder
		e.int(v)
		var got int64
		if err := msgpack.Unmarshal(e.b, &got); err != nil || got != v {
			t.Errorf("encoded %d as % x: library reads %d, %v", v, e.b, got, err)
		}
		var r msgpackReader
		r.reset(e.b)
		if got, err := r.int(); err != nil || got != v || r.finish() != nil {
			t.Errorf("encoded %d as % x: reader reads %d, %v", v, e.b, got, err)
		}
	}
	// Every width of string and container header, both ways.
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		s := string(bytes.Repeat([]byte{'x'}, n))
		var e msgpackEncoder
		e.str(s)
		var got string
		if err := msgpack.Unmarshal(e.b, &got); err != nil || got != s {
			t.Errorf("string of %d bytes: %v", n, err)
		}
		e = msgpackEncoder{}
		e.array(n)
		for range n {
			e.null()
		}
		var arr []any
		if err := msgpack.Unmarshal(e.b, &arr); err != nil || len(arr) != n {
			t.Errorf("array of %d: %d, %v", n, len(arr), err)
		}
	}
}

// FuzzDecodeWrite checks the strict JSON reader against encoding/json: a
// body it accepts is valid JSON whose members are exactly the fields it
// read, with the same values.
func FuzzDecodeWrite(f *testing.F) {
	for _, s := range []string{
		`{"type":"RESERVE","quantity":2,"reservation_id":"order-77","ttl_seconds":600,"reason":"checkout"}`,
		`{"type":"ADD","quantity":1}`, ` {"reason":"\u00e9\ud83d\ude00\n","type":"COMMIT"} `, `{"quantity":-0}`,
		`{"type":"ADD","quantity":1,"quantity":2}`, `{"type":"ADD","quantity":1e3}`, `{}`, `[]`, `{"reason":"\/\b\f"}`,
		`{"quantity":9223372036854775807}`, `{"quantity":9223372036854775808}`, `{"quantity":-9223372036854775808}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r jsonReader
		r.reset(body)
		op := shard.Op{ExpectedVersion: shard.NoVersion}
		if err := decodeWrite(&r, &op); err != nil {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		var v struct {
			Type          *string      `json:"type"`
			Quantity      *json.Number `json:"quantity"`
			ReservationID *string      `json:"reservation_id"`
			TTLSeconds    *json.Number `json:"ttl_seconds"`
			Reason        *string      `json:"reason"`
		}
		d := json.NewDecoder(bytes.NewReader(body))
		d.DisallowUnknownFields()
		if err := d.Decode(&v); err != nil {
			// encoding/json matches names case-insensitively and takes
			// the last duplicate, so it may accept more, never less.
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		// Present zeros and integers beyond int64 are handed on as
		// presentInvalid*, the rest as they are.
		sameInt := func(n *json.Number, got int64) bool {
			want, err := n.Int64()
			if err != nil || want == 0 {
				want = presentInvalidInt
			}
			return got == want
		}
		if v.Type != nil && op.Type.String() != *v.Type && op.Type != 0 ||
			v.Quantity != nil && !sameInt(v.Quantity, op.Quantity) ||
			v.ReservationID != nil && op.ReservationID != *v.ReservationID && !(*v.ReservationID == "" && op.ReservationID == presentInvalidID) ||
			v.TTLSeconds != nil && !sameInt(v.TTLSeconds, op.TTLSeconds) ||
			v.Reason != nil && op.Reason != *v.Reason {
			t.Fatalf("%q read as %+v", body, op)
		}
	})
}

// FuzzDecodeMsgpack checks the msgpack reader against the library: a body
// it accepts, the library decodes to a map with the same members.
func FuzzDecodeMsgpack(f *testing.F) {
	for _, v := range []map[string]any{
		{"type": "RESERVE", "quantity": 2, "reservation_id": "order-77", "ttl_seconds": 600, "reason": "checkout"},
		{"type": "ADD", "quantity": uint64(1 << 40)}, {"reason": "é"}, {"quantity": -5}, {"quantity": 1.5},
	} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r msgpackReader
		r.reset(body)
		op := shard.Op{ExpectedVersion: shard.NoVersion}
		if err := decodeWrite(&r, &op); err != nil {
			return
		}
		var m map[string]any
		if err := msgpack.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted % x, which the library refuses: %v", body, err)
		}
		if s, ok := m["reason"].(string); ok && s != op.Reason || !ok && op.Reason != "" {
			t.Fatalf("% x: reason %q, library %v", body, op.Reason, m["reason"])
		}
	})
}
