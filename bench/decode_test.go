package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const sampleEntry = `{"id":"01a21dda-745c-7df3-8002-000000000001","product_id":"p1","type":"RESERVE","quantity":1,"delta":-1,` +
	`"on_hand":5,"reserved":1,"available":4,"version":2,"reservation_id":"r2","expires_at":"2026-11-27T16:33:06.628871929Z",` +
	`"reason":"caf\u00e9 \"quoted\" \\ tab\t","created_by":"anonymous","created_at":"2026-11-27T16:33:05.628871929Z","idempotency_key":"k2"}`

const sampleStock = `{"product_id":"p1","on_hand":5,"reserved":1,"available":4,"version":2,"updated_at":"2026-11-27T16:33:05.628871929Z"}`

const sampleProblem = `{"type":"urn:inventory:problem:insufficient_stock","title":"Insufficient stock","status":409,` +
	`"detail":"requested 1, available 0","code":"insufficient_stock","available":0,"op_index":1}`

func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	writes := []string{
		`{"transaction":` + sampleEntry + `,"transactions":[` + sampleEntry + `,` + sampleEntry + `],"stock":` + sampleStock + `}`,
		" {\n \"transactions\" : [ ] , \"stock\" : " + sampleStock + " , \"extra\": [1, {\"a\": [true, false, null, -1.5e3]}] } ",
		`{"transactions":null,"stock":null}`,
	}
	for _, in := range writes {
		var got, want writeResponse
		if err := decodeWrite([]byte(in), &got); err != nil {
			t.Fatalf("decodeWrite(%.60s...): %v", in, err)
		}
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeWrite(%.60s...):\ngot  %+v\nwant %+v", in, got, want)
		}
	}
	batch := `{"results":[{"status":201,"transaction":` + sampleEntry + `,"transactions":[` + sampleEntry + `],"stock":` + sampleStock +
		`},{"status":409,"error":` + sampleProblem + `}]}`
	var gotB, wantB batchResponse
	if err := decodeBatch([]byte(batch), &gotB); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(batch), &wantB)
	if !reflect.DeepEqual(gotB, wantB) {
		t.Errorf("decodeBatch:\ngot  %+v\nwant %+v", gotB, wantB)
	}
	page := `{"transactions":[` + sampleEntry + `],"next_after":107}`
	var gotP, wantP ledgerPage
	if err := decodeLedgerPage([]byte(page), &gotP); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(page), &wantP)
	if !reflect.DeepEqual(gotP, wantP) || *gotP.NextAfter != 107 {
		t.Errorf("decodeLedgerPage:\ngot  %+v\nwant %+v", gotP, wantP)
	}
	gotPr, err := decodeProblem([]byte(sampleProblem))
	var wantPr Problem
	json.Unmarshal([]byte(sampleProblem), &wantPr)
	if err != nil || !reflect.DeepEqual(*gotPr, wantPr) {
		t.Errorf("decodeProblem: got %+v, %v; want %+v", gotPr, err, wantPr)
	}
}

func TestScannerRejectsWhatEncodingJSONRejects(t *testing.T) {
	for _, in := range []string{`{"transactions":[`, `{"stock":{"version":"7"}}`, `{"a":1}x`, `{"a" 1}`, `[`, ``} {
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
