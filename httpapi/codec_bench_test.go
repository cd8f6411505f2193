package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/inventory-ledger/inventory/shard"
)

// The documents a library would encode in place of encodeBatchResults: the
// same members in the same order, times and ids as strings.
type (
	libBatch struct {
		Results []libResult `json:"results" msgpack:"results"`
	}
	libResult struct {
		Status       int        `json:"status" msgpack:"status"`
		Transaction  *libEntry  `json:"transaction" msgpack:"transaction"`
		Transactions []libEntry `json:"transactions" msgpack:"transactions"`
		Stock        libStock   `json:"stock" msgpack:"stock"`
	}
	libEntry struct {
		ID             string `json:"id" msgpack:"id"`
		ProductID      string `json:"product_id" msgpack:"product_id"`
		Type           string `json:"type" msgpack:"type"`
		Quantity       int64  `json:"quantity" msgpack:"quantity"`
		Delta          int64  `json:"delta" msgpack:"delta"`
		OnHand         int64  `json:"on_hand" msgpack:"on_hand"`
		Reserved       int64  `json:"reserved" msgpack:"reserved"`
		Available      int64  `json:"available" msgpack:"available"`
		Version        int64  `json:"version" msgpack:"version"`
		ReservationID  string `json:"reservation_id,omitempty" msgpack:"reservation_id,omitempty"`
		ExpiresAt      string `json:"expires_at,omitempty" msgpack:"expires_at,omitempty"`
		Reason         string `json:"reason" msgpack:"reason"`
		CreatedBy      string `json:"created_by" msgpack:"created_by"`
		CreatedAt      string `json:"created_at" msgpack:"created_at"`
		IdempotencyKey string `json:"idempotency_key,omitempty" msgpack:"idempotency_key,omitempty"`
	}
	libStock struct {
		ProductID string `json:"product_id" msgpack:"product_id"`
		OnHand    int64  `json:"on_hand" msgpack:"on_hand"`
		Reserved  int64  `json:"reserved" msgpack:"reserved"`
		Available int64  `json:"available" msgpack:"available"`
		Version   int64  `json:"version" msgpack:"version"`
		UpdatedAt string `json:"updated_at" msgpack:"updated_at"`
	}

	libMinBatch struct {
		Results []libMinResult `json:"results" msgpack:"results"`
	}
	libMinResult struct {
		Status       int           `json:"status" msgpack:"status"`
		Transactions []libMinEntry `json:"transactions" msgpack:"transactions"`
		Stock        libMinStock   `json:"stock" msgpack:"stock"`
	}
	libMinEntry struct {
		ID      string `json:"id" msgpack:"id"`
		Version int64  `json:"version" msgpack:"version"`
	}
	libMinStock struct {
		OnHand    int64 `json:"on_hand" msgpack:"on_hand"`
		Reserved  int64 `json:"reserved" msgpack:"reserved"`
		Available int64 `json:"available" msgpack:"available"`
		Version   int64 `json:"version" msgpack:"version"`
	}
)

func libID(id *shard.ID) string { return string(appendUUID(make([]byte, 0, 36), id)) }
func libTime(ns int64) string   { return string(appendTime(make([]byte, 0, timeBytes), ns)) }

// libFull builds the full document of applied results (all 201 here).
func libFull(results []shard.Result) any {
	doc := libBatch{Results: make([]libResult, len(results))}
	for i := range results {
		res := &results[i]
		r := &doc.Results[i]
		r.Status = 201
		r.Transactions = make([]libEntry, len(res.Entries))
		for j := range res.Entries {
			e := &res.Entries[j]
			le := libEntry{ID: libID(&e.ID), ProductID: e.ProductID, Type: e.Type.String(), Quantity: e.Quantity,
				Delta: e.Delta, OnHand: e.OnHand, Reserved: e.Reserved, Available: e.Available(), Version: e.Version,
				ReservationID: e.ReservationID, Reason: e.Reason, CreatedBy: e.CreatedBy, CreatedAt: libTime(e.CreatedAt),
				IdempotencyKey: e.IdempotencyKey}
			if e.Type == shard.TypeReserve {
				le.ExpiresAt = libTime(e.ExpiresAt)
			}
			r.Transactions[j] = le
		}
		r.Transaction = &r.Transactions[0]
		s := &res.Stock
		r.Stock = libStock{ProductID: s.ProductID, OnHand: s.OnHand, Reserved: s.Reserved, Available: s.Available(),
			Version: s.Version, UpdatedAt: libTime(s.UpdatedAt)}
	}
	return &doc
}

// libMinimal builds the return=minimal document of applied results.
func libMinimal(results []shard.Result) any {
	doc := libMinBatch{Results: make([]libMinResult, len(results))}
	for i := range results {
		res := &results[i]
		r := &doc.Results[i]
		r.Status = 201
		r.Transactions = make([]libMinEntry, len(res.Entries))
		for j := range res.Entries {
			r.Transactions[j] = libMinEntry{ID: libID(&res.Entries[j].ID), Version: res.Entries[j].Version}
		}
		s := &res.Stock
		r.Stock = libMinStock{OnHand: s.OnHand, Reserved: s.Reserved, Available: s.Available(), Version: s.Version}
	}
	return &doc
}

// cartResults returns the results of a 3-line checkout cart: an atomic
// batch holding stock on three products.
func cartResults(b *testing.B) []shard.Result {
	ts := newTestServer(b, serverOptions{})
	var ops []shard.Op
	for _, p := range []string{"sku-1001", "sku-1002", "sku-1003"} {
		ts.mustWrite(p, `{"type":"ADD","quantity":100}`)
		ops = append(ops, shard.Op{ProductID: p, Type: shard.TypeReserve, Quantity: 2, ReservationID: "order-77",
			TTLSeconds: 900, Reason: "checkout", IdempotencyKey: "order-77-" + p, ExpectedVersion: shard.NoVersion,
			Actor: "cart-service"})
	}
	results, err := ts.eng.Batch(b.Context(), ops, true)
	if err != nil {
		b.Fatal(err)
	}
	return results
}

// BenchmarkEncodeCart measures encoding a 3-line cart's 201 body, full and
// under return=minimal: the hand-written encoders (encodeBatchResults, as
// postBatch runs them) against encoding/json and msgpack/v5 on equivalent
// structs. "lib" encodes a struct built beforehand (the codec alone);
// "lib+build" also builds it from the engine's results each time, as a
// handler using the library would. The libraries get their cheapest use: a
// reused Encoder into a reused buffer; encoding/json without HTML escaping
// and msgpack with compact integers, as the hand encoders write. Before
// timing, each library's output is checked to be the same document as the
// hand encoder's.
func BenchmarkEncodeCart(b *testing.B) {
	results := cartResults(b)
	for _, form := range []struct {
		name  string
		ret   returnPref
		build func([]shard.Result) any
	}{
		{"full", returnDefault, libFull},
		{"minimal", returnMinimal, libMinimal},
	} {
		var je jsonEncoder
		encodeBatchResults(&je, results, form.ret)
		var me msgpackEncoder
		encodeBatchResults(&me, results, form.ret)
		doc := form.build(results)

		var jbuf bytes.Buffer
		jenc := json.NewEncoder(&jbuf)
		jenc.SetEscapeHTML(false)
		if err := jenc.Encode(doc); err != nil {
			b.Fatal(err)
		}
		if got := bytes.TrimSuffix(jbuf.Bytes(), []byte("\n")); !bytes.Equal(got, je.b) {
			b.Fatalf("encoding/json\n%s\nhand\n%s", got, je.b)
		}
		var mbuf bytes.Buffer
		menc := msgpack.NewEncoder(&mbuf)
		menc.UseCompactInts(true)
		if err := menc.Encode(doc); err != nil {
			b.Fatal(err)
		}
		if !sameMsgpack(b, mbuf.Bytes(), me.b) {
			b.Fatalf("msgpack/v5 and hand-written msgpack differ")
		}

		b.Run(form.name+"/json/hand", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				je = jsonEncoder{b: je.b[:0]}
				encodeBatchResults(&je, results, form.ret)
			}
		})
		b.Run(form.name+"/json/lib", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				jbuf.Reset()
				if err := jenc.Encode(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(form.name+"/json/lib+build", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				jbuf.Reset()
				if err := jenc.Encode(form.build(results)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(form.name+"/msgpack/hand", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				me.b = me.b[:0]
				encodeBatchResults(&me, results, form.ret)
			}
		})
		b.Run(form.name+"/msgpack/lib", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mbuf.Reset()
				if err := menc.Encode(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(form.name+"/msgpack/lib+build", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mbuf.Reset()
				if err := menc.Encode(form.build(results)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// sameMsgpack reports whether two msgpack documents decode to the same
// value.
func sameMsgpack(b *testing.B, x, y []byte) bool {
	var vx, vy any
	if err := msgpack.Unmarshal(x, &vx); err != nil {
		b.Fatal(err)
	}
	if err := msgpack.Unmarshal(y, &vy); err != nil {
		b.Fatal(err)
	}
	return bytes.Equal(x, y) || mustMarshal(vx) == mustMarshal(vy)
}
