package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const sampleEntry = `{"id":"01a21dda-745c-7df3-8002-000000000001","product_id":"p1","type":"RESERVE","quantity":1,"delta":-1,` +
	`"on_hand":5,"reserved":1,"available":4,"version":2,"reservation_id":"r2","expires_at":"2026-11-27T16:33:06.628871929Z",` +
	`"reason":"caf\u00e9 \"quoted\" \\ tab\t","created_by":"anonymous","created_at":"2026-11-27T16:33:05.628871929Z","idempotency_key":"k2"}`

const sampleStock = `{"product_id":"p1","on_hand":5,"reserved":1,"available":4,"version":2,"updated_at":"2026-11-27T16:33:05.628871929Z"}`

const sampleProblem = `{"type":"urn:inventory:problem:insufficient_stock","title":"Insufficient stock","status":409,` +
	`"detail":"requested 1, available 0","code":"insufficient_stock","available":0,"op_index":1}`

// scanned runs decode and fails the test if the scanner gave up on what it
// decodes: encoding/json would then have decoded it instead, and comparing
// the result with encoding/json's would prove nothing about the scanner.
func scanned(t *testing.T, what string, decode func() error) error {
	t.Helper()
	before := slowDecodes.Load()
	err := decode()
	if n := slowDecodes.Load() - before; n != 0 {
		t.Errorf("%s: the scanner gave up and encoding/json decoded it", what)
	}
	return err
}

func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	writes := []string{
		`{"transaction":` + sampleEntry + `,"transactions":[` + sampleEntry + `,` + sampleEntry + `],"stock":` + sampleStock + `}`,
		" {\n \"transactions\" : [ ] , \"stock\" : " + sampleStock + " , \"extra\": [1, {\"a\": [true, false, null, -1.5e3]}] } ",
		`{"transactions":null,"stock":null}`,
	}
	for _, in := range writes {
		var got, want writeResponse
		what := fmt.Sprintf("decodeWrite(%.60s...)", in)
		if err := scanned(t, what, func() error { return decodeWrite([]byte(in), &got) }); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		want.Transactions = ackFields(want.Transactions)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", what, got, want)
		}
	}
	batch := `{"results":[{"status":201,"transaction":` + sampleEntry + `,"transactions":[` + sampleEntry + `],"stock":` + sampleStock +
		`},{"status":409,"error":` + sampleProblem + `}]}`
	var gotB, wantB batchResponse
	if err := scanned(t, "decodeBatch", func() error { return decodeBatch([]byte(batch), &gotB) }); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(batch), &wantB)
	for i := range wantB.Results {
		wantB.Results[i].Transactions = ackFields(wantB.Results[i].Transactions)
	}
	if !reflect.DeepEqual(gotB, wantB) {
		t.Errorf("decodeBatch:\ngot  %+v\nwant %+v", gotB, wantB)
	}
	page := `{"transactions":[` + sampleEntry + `],"next_after":107}`
	var gotP, wantP ledgerPage
	if err := scanned(t, "decodeLedgerPage", func() error { return decodeLedgerPage([]byte(page), &gotP) }); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(page), &wantP)
	if !reflect.DeepEqual(gotP, wantP) || *gotP.NextAfter != 107 {
		t.Errorf("decodeLedgerPage:\ngot  %+v\nwant %+v", gotP, wantP)
	}
	var gotPr *Problem
	err := scanned(t, "decodeProblem", func() (err error) { gotPr, err = decodeProblem([]byte(sampleProblem)); return err })
	var wantPr Problem
	json.Unmarshal([]byte(sampleProblem), &wantPr)
	if err != nil || !reflect.DeepEqual(*gotPr, wantPr) {
		t.Errorf("decodeProblem: got %+v, %v; want %+v", gotPr, err, wantPr)
	}
}

// ackFields keeps of es what the scanner reads of a write's answer.
func ackFields(es []Entry) []Entry {
	if es == nil {
		return nil
	}
	out := []Entry{}
	for _, e := range es {
		out = append(out, Entry{ID: e.ID, ProductID: e.ProductID, Type: e.Type, Version: e.Version})
	}
	return out
}

func TestAcksReadEveryType(t *testing.T) {
	for _, typ := range append(slices.Clone(entryTypes), "NEW", `ESC\u0041PED`) {
		in := `{"transactions":[{"type":"` + typ + `","version":3}]}`
		var got writeResponse
		if err := scanned(t, typ, func() error { return decodeWrite([]byte(in), &got) }); err != nil {
			t.Fatal(err)
		}
		var want writeResponse
		json.Unmarshal([]byte(in), &want)
		if len(got.Transactions) != 1 || got.Transactions[0].Type != want.Transactions[0].Type || got.Transactions[0].Version != 3 {
			t.Errorf("%s: got %+v, want type %q", typ, got.Transactions, want.Transactions[0].Type)
		}
	}
}

func TestScannerRejectsWhatEncodingJSONRejects(t *testing.T) {
	for _, in := range []string{`{"transactions":[`, `{"stock":{"version":"7"}}`, `{"a":1}x`, `{"a" 1}`, `[`, ``,
		// Control characters in a skipped string, bare or escaped.
		"{\"note\":\"a\x01\"}", "{\"note\":\"\\\x01\"}", "{\"note\":\"\\\n\"}", `{"note":"\`,
		`{"transactions":[{"id":"e1","version":1,"note":"\` + "\x01" + `"}]}`} {
		var w writeResponse
		errFast := decodeWrite([]byte(in), &w)
		errStd := json.Unmarshal([]byte(in), &writeResponse{})
		if (errFast == nil) != (errStd == nil) {
			t.Errorf("decodeWrite(%q) error %v, encoding/json error %v", in, errFast, errStd)
		}
	}
}

func TestAppendOpMatchesEncodingJSON(t *testing.T) {
	ops := []Op{
		{ProductID: "p-1", Type: "RESERVE", Quantity: 3, ReservationID: "r1", TTLSeconds: 60, Reason: "cart", IdempotencyKey: "k"},
		{Type: "COMMIT", ReservationID: "r1"},
		{ProductID: "p", Type: "ADD", Quantity: 1, Reason: "caf\u00e9 \"q\"\n<>&"},
	}
	for _, op := range ops {
		var got, want any
		if err := json.Unmarshal(appendOp(nil, &op), &got); err != nil {
			t.Fatalf("appendOp(%+v): invalid JSON: %v", op, err)
		}
		b, _ := json.Marshal(op)
		json.Unmarshal(b, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("appendOp(%+v): got %v, want %v", op, got, want)
		}
	}
	var got struct {
		Atomic bool `json:"atomic"`
		Ops    []Op `json:"ops"`
	}
	if err := json.Unmarshal(appendBatch(nil, true, ops), &got); err != nil || !got.Atomic || !reflect.DeepEqual(got.Ops, ops) {
		t.Errorf("appendBatch: got %+v, %v", got, err)
	}
	if s := string(appendBatch(nil, false, ops[:1])); !strings.HasPrefix(s, `{"atomic":false,"ops":[{`) {
		t.Errorf("appendBatch: got %s", s)
	}
}

// BenchmarkDecodeBatch decodes the answer to a cart of 3 RESERVE lines, as
// the checkout scenario reads it (acks) and with every field (entries).
func BenchmarkDecodeBatch(b *testing.B) {
	res := `{"status":201,"transaction":` + sampleEntry + `,"transactions":[` + sampleEntry + `],"stock":` + sampleStock + `}`
	answer := []byte(`{"results":[` + res + `,` + res + `,` + res + `]}`)
	b.Run("acks", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var br batchResponse
			if err := decodeBatch(answer, &br); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("entries", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s := &scanner{b: answer}
			s.object(func([]byte) {
				s.array(func() {
					s.object(func(k []byte) {
						if string(k) == "transactions" {
							s.entries()
						} else {
							s.skip()
						}
					})
				})
			})
			if s.end() != nil {
				b.Fatal(s.err)
			}
		}
	})
}

// TestSpecialFindsTheFirstMatch compares special's word-at-a-time search
// with a byte loop on random strings, from every offset: the word test
// must never skip a quote, backslash or control character, nor stop early.
func TestSpecialFindsTheFirstMatch(t *testing.T) {
	alphabet := []byte{'a', 'z', ' ', '!', '"', '#', '\\', ']', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff}
	want := func(b []byte, i int) int {
		for ; i < len(b); i++ {
			if c := b[i]; c == '"' || c == '\\' || c < 0x20 {
				return i
			}
		}
		return i
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(40))
		for j := range b {
			// Mostly plain bytes, so that matches sit deep inside words.
			if r.IntN(8) == 0 {
				b[j] = alphabet[r.IntN(len(alphabet))]
			} else {
				b[j] = byte(0x21 + r.IntN(0xff-0x21))
				if b[j] == '"' || b[j] == '\\' {
					b[j] = 'x'
				}
			}
		}
		for i := 0; i <= len(b); i++ {
			if got, w := special(b, i), want(b, i); got != w {
				t.Fatalf("special(%q, %d) = %d, want %d", b, i, got, w)
			}
		}
	}
}
