package httpapi

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/inventory-ledger/inventory/shard"
)

func TestPreferReturn(t *testing.T) {
	for _, c := range []struct {
		name   string
		fields []string // the Prefer header fields, in order
		want   returnPref
	}{
		{"absent", nil, returnDefault},
		{"minimal", []string{"return=minimal"}, returnMinimal},
		{"representation", []string{"return=representation"}, returnRepresentation},
		{"name in any case", []string{"Return=minimal"}, returnMinimal},
		{"name upper case", []string{"RETURN=minimal"}, returnMinimal},
		{"value is case-sensitive", []string{"return=Minimal"}, returnDefault},
		{"quoted value", []string{`return="minimal"`}, returnMinimal},
		{"quoted value with an escape", []string{`return="mini\mal"`}, returnMinimal},
		{"quoted value with a comma", []string{`foo="a,b", return=minimal`}, returnMinimal},
		{"spaces around =", []string{"return = minimal"}, returnMinimal},
		{"parameters ignored", []string{"return=minimal; foo=bar; baz"}, returnMinimal},
		{"bare semicolons", []string{"return=minimal;;"}, returnMinimal},
		{"in a list", []string{"respond-async, wait=10, return=minimal"}, returnMinimal},
		{"over several fields", []string{"respond-async", "return=minimal"}, returnMinimal},
		{"empty elements", []string{", ,return=minimal,"}, returnMinimal},
		{"first return counts", []string{"return=representation, return=minimal"}, returnRepresentation},
		{"first return counts across fields", []string{"return=minimal", "return=representation"}, returnMinimal},
		{"first return unknown", []string{"return=full, return=minimal"}, returnDefault},
		{"unknown preference only", []string{"handling=lenient"}, returnDefault},
		{"unknown value", []string{"return=everything"}, returnDefault},
		{"no value", []string{"return"}, returnDefault},
		{"empty value", []string{"return="}, returnDefault},
		{"empty quoted value", []string{`return=""`}, returnDefault},
		{"malformed: unclosed quote", []string{`return=minimal, foo="bar`}, returnDefault},
		{"malformed: stray =", []string{"=minimal, return=minimal"}, returnDefault},
		{"malformed: space in a value", []string{"return=minimal please"}, returnDefault},
		{"malformed: control byte", []string{"return=minimal, foo=\"a\x01\""}, returnDefault},
		{"malformed: value is not a word", []string{"return=(minimal)"}, returnDefault},
		{"malformed in another field", []string{"return=minimal", "foo=="}, returnDefault},
		{"empty", []string{""}, returnDefault},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := preferReturn(http.Header{"Prefer": c.fields}); got != c.want {
				t.Errorf("Prefer %q: %d, want %d", c.fields, got, c.want)
			}
		})
	}
}

// FuzzPreferReturn checks that no Prefer value panics the parser, and that
// a preference is only ever read from a header that names it.
func FuzzPreferReturn(f *testing.F) {
	for _, s := range []string{"return=minimal", `return="minimal"; a=b, wait=10`, `x="a\"b", return=representation`, ",;=\"\\"} {
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		fields := []string{a}
		if b != "" {
			fields = append(fields, b)
		}
		got := preferReturn(http.Header{"Prefer": fields})
		lower := strings.ToLower(a + "," + b)
		switch {
		case got == returnMinimal && !(strings.Contains(lower, "return") && strings.Contains(a+b, "mini")):
			t.Errorf("Prefer %q: minimal", fields)
		case got == returnRepresentation && !(strings.Contains(lower, "return") && strings.Contains(a+b, "repr")):
			t.Errorf("Prefer %q: representation", fields)
		case got > returnRepresentation:
			t.Errorf("Prefer %q: %d", fields, got)
		}
	})
}

// TestEncodeResultMinimal checks the minimal form's exact bytes in JSON and
// that msgpack carries the same document.
func TestEncodeResultMinimal(t *testing.T) {
	res := shard.Result{
		Entries: []shard.Entry{
			{ID: shard.ID{0x01, 0x93, 0x2a, 0xb0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1}, Version: 7},
			{ID: shard.ID{0x01, 0x93, 0x2a, 0xb0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 2}, Version: 8},
		},
		Stock: shard.Stock{ProductID: "p", OnHand: 8, Reserved: 1, Version: 8, UpdatedAt: 1},
	}
	const want = `{"status":201,"transactions":[{"id":"01932ab0-0000-7000-8000-000000000001","version":7},` +
		`{"id":"01932ab0-0000-7000-8000-000000000002","version":8}],` +
		`"stock":{"on_hand":8,"reserved":1,"available":7,"version":8}}`
	var je jsonEncoder
	encodeResult(&je, &res, http.StatusCreated, returnMinimal)
	if got := string(je.b); got != want {
		t.Errorf("JSON\n%s\nwant\n%s", got, want)
	}
	var me msgpackEncoder
	encodeResult(&me, &res, http.StatusCreated, returnMinimal)
	if got, want := fromMsgpack(t, me.b), decodeJSON(t, []byte(want)); mustMarshal(got) != mustMarshal(want) {
		t.Errorf("msgpack %v, want %v", got, want)
	}
}

// minimalOf projects a full write answer, or a batch's, onto the fields
// return=minimal keeps; refused batch results stay as they are.
func minimalOf(full map[string]any) map[string]any {
	rs, ok := full["results"].([]any)
	if !ok {
		return minimalResult(full)
	}
	out := make([]any, len(rs))
	for i, r := range rs {
		r := r.(map[string]any)
		if _, refused := r["error"]; refused {
			out[i] = r
		} else {
			out[i] = minimalResult(r)
		}
	}
	return map[string]any{"results": out}
}

func minimalResult(r map[string]any) map[string]any {
	m := map[string]any{}
	if s, ok := r["status"]; ok {
		m["status"] = s
	}
	var txs []any
	for _, e := range r["transactions"].([]any) {
		e := e.(map[string]any)
		txs = append(txs, map[string]any{"id": e["id"], "version": e["version"]})
	}
	m["transactions"] = txs
	s := r["stock"].(map[string]any)
	m["stock"] = map[string]any{"on_hand": s["on_hand"], "reserved": s["reserved"], "available": s["available"], "version": s["version"]}
	return m
}

// TestPreferMinimal sends each request with a Prefer header and then again
// without one, with the same idempotency keys: the second answer is the
// full body (a replay of the applied ops, the refused ones evaluated
// afresh), and the first must be exactly what return=minimal keeps of it.
func TestPreferMinimal(t *testing.T) {
	ts := newTestServer(t, serverOptions{shards: 4})
	type request struct {
		product string // a single write on this product; "" for a batch
		body    string
		hdr     []string
	}
	for _, c := range []struct {
		name    string
		setup   []string // writes on the case's product before it
		req     request
		prefer  []string // Prefer header fields
		msgpack bool     // Accept: application/msgpack
		// replay: the request was already applied without Prefer, so the
		// answer under test is a replay.
		replay bool
		status int
		// opStatus are the batch results' statuses.
		opStatus []float64
		applied  string // Preference-Applied, "" for none
		minimal  bool   // the body is the minimal form
		entries  int    // entries per applied result, if not 1
	}{
		{
			name: "ADD", req: request{product: "add", body: `{"type":"ADD","quantity":10}`},
			prefer: []string{"return=minimal"}, status: 201, applied: "return=minimal", minimal: true,
		},
		{
			name: "RESERVE, Prefer among others", setup: []string{`{"type":"ADD","quantity":10}`},
			req:    request{product: "resv", body: `{"type":"RESERVE","quantity":3,"reservation_id":"o-1","ttl_seconds":600}`},
			prefer: []string{"respond-async, Return=minimal; foo=bar", "wait=5"}, status: 201, applied: "return=minimal", minimal: true,
		},
		{
			name: "partial COMMIT: two entries",
			setup: []string{`{"type":"ADD","quantity":10}`,
				`{"type":"RESERVE","quantity":4,"reservation_id":"o-1"}`},
			req:    request{product: "commit", body: `{"type":"COMMIT","reservation_id":"o-1","quantity":1,"reason":"paid"}`},
			prefer: []string{"return=minimal"}, status: 201, applied: "return=minimal", minimal: true, entries: 2,
		},
		{
			name: "replay", setup: []string{`{"type":"ADD","quantity":10}`},
			req:    request{product: "replay", body: `{"type":"REMOVE","quantity":2}`},
			prefer: []string{"return=minimal"}, replay: true, status: 200, applied: "return=minimal", minimal: true,
		},
		{
			name: "msgpack", setup: []string{`{"type":"ADD","quantity":10}`},
			req:    request{product: "mp", body: `{"type":"RESERVE","quantity":1,"reservation_id":"o-1"}`},
			prefer: []string{"return=minimal"}, msgpack: true, status: 201, applied: "return=minimal", minimal: true,
		},
		{
			name: "batch, not atomic, with a refused op",
			req: request{body: `{"ops":[
				{"product_id":"bn","type":"ADD","quantity":5,"idempotency_key":"bn-1"},
				{"product_id":"bn","type":"REMOVE","quantity":9,"idempotency_key":"bn-2"},
				{"product_id":"bn2","type":"ADD","quantity":1,"idempotency_key":"bn-3"},
				{"product_id":"bn","type":"ADD","quantity":0,"idempotency_key":"bn-4"}]}`},
			prefer: []string{"return=minimal"}, status: 200, opStatus: []float64{201, 409, 201, 400},
			applied: "return=minimal", minimal: true,
		},
		{
			name: "batch, atomic",
			req: request{body: `{"atomic":true,"ops":[
				{"product_id":"ba","type":"ADD","quantity":5,"idempotency_key":"ba-1"},
				{"product_id":"ba","type":"RESERVE","quantity":2,"reservation_id":"o-1","idempotency_key":"ba-2"},
				{"product_id":"ba2","type":"ADD","quantity":1,"idempotency_key":"ba-3"}]}`},
			prefer: []string{"return=minimal"}, status: 201, opStatus: []float64{201, 201, 201},
			applied: "return=minimal", minimal: true,
		},
		{
			name: "batch, atomic, replayed, msgpack",
			req: request{body: `{"atomic":true,"ops":[
				{"product_id":"bm","type":"ADD","quantity":5,"idempotency_key":"bm-1"},
				{"product_id":"bm2","type":"ADD","quantity":1,"idempotency_key":"bm-2"}]}`},
			prefer: []string{"return=minimal"}, msgpack: true, replay: true, status: 200, opStatus: []float64{200, 200},
			applied: "return=minimal", minimal: true,
		},
		{
			name: "no Prefer", req: request{product: "none", body: `{"type":"ADD","quantity":10}`},
			status: 201,
		},
		{
			name: "return=representation", req: request{product: "repr", body: `{"type":"ADD","quantity":10}`},
			prefer: []string{"return=representation"}, status: 201, applied: "return=representation",
		},
		{
			name: "malformed Prefer", req: request{product: "malformed", body: `{"type":"ADD","quantity":10}`},
			prefer: []string{`return=minimal, x="`}, status: 201,
		},
		{
			name: "unknown preference", req: request{product: "unknown", body: `{"type":"ADD","quantity":10}`},
			prefer: []string{"handling=lenient"}, status: 201,
		},
		{
			name: "unknown return value", req: request{product: "unknownv", body: `{"type":"ADD","quantity":10}`},
			prefer: []string{"return=MINIMAL"}, status: 201,
		},
		{
			name: "batch, no Prefer",
			req: request{body: `{"ops":[
				{"product_id":"bf","type":"ADD","quantity":5,"idempotency_key":"bf-1"},
				{"product_id":"bf","type":"REMOVE","quantity":9,"idempotency_key":"bf-2"}]}`},
			status: 200, opStatus: []float64{201, 409},
		},
		{
			name: "refused write", req: request{product: "refused", body: `{"type":"REMOVE","quantity":1}`},
			prefer: []string{"return=minimal"}, status: 409,
		},
		{
			name: "refused atomic batch",
			req: request{body: `{"atomic":true,"ops":[
				{"product_id":"bx","type":"ADD","quantity":5,"idempotency_key":"bx-1"},
				{"product_id":"bx","type":"REMOVE","quantity":9,"idempotency_key":"bx-2"}]}`},
			prefer: []string{"return=minimal"}, status: 409,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, body := range c.setup {
				ts.mustWrite(c.req.product, body)
			}
			send := func(prefer []string) *httptestRecorder {
				hdr := slices.Clone(c.req.hdr)
				for _, p := range prefer {
					hdr = append(hdr, "Prefer", p)
				}
				if c.msgpack {
					hdr = append(hdr, "Accept", mediaMsgpack)
				}
				if c.req.product == "" {
					return batch(ts, c.req.body, hdr...)
				}
				return ts.write(c.req.product, c.req.body, append(hdr, "Idempotency-Key", "prefer-"+c.req.product)...)
			}
			decode := func(w *httptestRecorder) map[string]any {
				if c.msgpack && w.Code < 300 {
					return fromMsgpack(t, w.Body.Bytes())
				}
				return decodeJSON(t, w.Body.Bytes())
			}
			if c.replay {
				if w := send(nil); w.Code != http.StatusCreated {
					t.Fatalf("first request: %d %s", w.Code, w.Body)
				}
			}
			got := send(c.prefer)
			full := send(nil)
			if got.Code != c.status {
				t.Fatalf("status %d, want %d (%s)", got.Code, c.status, got.Body)
			}
			if a := got.Header().Values("Preference-Applied"); c.applied == "" && len(a) > 0 ||
				c.applied != "" && !slices.Equal(a, []string{c.applied}) {
				t.Errorf("Preference-Applied %q, want %q", a, c.applied)
			}
			if full.Header().Get("Preference-Applied") != "" {
				t.Errorf("Preference-Applied %q without Prefer", full.Header().Get("Preference-Applied"))
			}
			if got.Code >= 300 {
				// Problems stay exactly as they are: same body, no Prefer headers.
				if !bytes.Equal(got.Body.Bytes(), full.Body.Bytes()) || got.Code != full.Code {
					t.Errorf("problem under Prefer\n%d %s\nwithout\n%d %s", got.Code, got.Body, full.Code, full.Body)
				}
				if v := got.Header().Get("Vary"); v != "" {
					t.Errorf("problem has Vary %q", v)
				}
				return
			}
			if v := got.Header().Values("Vary"); !slices.Equal(v, []string{"Accept, Prefer"}) {
				t.Errorf("Vary %q, want Accept, Prefer", v)
			}
			// A batch marks replays by each result's status, not by header.
			if c.replay && c.opStatus == nil != (got.Header().Get("Idempotent-Replayed") == "true") {
				t.Errorf("Idempotent-Replayed %q", got.Header().Get("Idempotent-Replayed"))
			}
			if ct, want := got.Header().Get("Content-Type"), map[bool]string{false: mediaJSON, true: mediaMsgpack}[c.msgpack]; ct != want {
				t.Errorf("Content-Type %q, want %q", ct, want)
			}
			if got.Header().Get("ETag") != full.Header().Get("ETag") {
				t.Errorf("ETag %q, want the full answer's %q", got.Header().Get("ETag"), full.Header().Get("ETag"))
			}
			g, want := decode(got), decode(full)
			if c.minimal {
				want = minimalOf(want)
			}
			if c.opStatus != nil {
				var st []float64
				for _, r := range g["results"].([]any) {
					st = append(st, r.(map[string]any)["status"].(float64))
				}
				if !slices.Equal(st, c.opStatus) {
					t.Errorf("op statuses %v, want %v", st, c.opStatus)
				}
				// The full answer replays the applied ops: their status is 200.
				for i, r := range want["results"].([]any) {
					r.(map[string]any)["status"] = c.opStatus[i]
				}
			}
			if gs, ws := mustMarshal(g), mustMarshal(want); gs != ws {
				t.Errorf("body\n%s\nwant\n%s", gs, ws)
			}
			if !c.minimal {
				// The full body, byte for byte as without Prefer.
				if c.opStatus == nil && !c.msgpack && !bytes.Equal(got.Body.Bytes(), full.Body.Bytes()) {
					t.Errorf("full body\n%s\nwant the one without Prefer\n%s", got.Body, full.Body)
				}
				if c.opStatus == nil {
					checkEntry(t, g["transaction"].(map[string]any), "idempotency_key")
				}
				return
			}
			applied := []any{g}
			if c.opStatus != nil {
				applied = nil
				for _, r := range g["results"].([]any) {
					if _, refused := r.(map[string]any)["error"]; !refused {
						applied = append(applied, r)
					}
				}
			}
			for _, r := range applied {
				txs := r.(map[string]any)["transactions"].([]any)
				if want := max(c.entries, 1); len(txs) != want {
					t.Errorf("%d entries, want %d", len(txs), want)
				}
				for _, e := range txs {
					if id, _ := e.(map[string]any)["id"].(string); len(id) != 36 {
						t.Errorf("entry id %v", e)
					}
				}
			}
		})
	}
}

// TestPreferMinimalMsgpackNames checks that a minimal msgpack answer
// decodes with the library into the documented names and nothing else.
func TestPreferMinimalMsgpackNames(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	body, _ := msgpack.Marshal(map[string]any{"atomic": true, "ops": []map[string]any{
		{"product_id": "m", "type": "ADD", "quantity": 3, "idempotency_key": "mn-1"}}})
	w := ts.do(req{method: "POST", path: "/v1/batch", body: string(body),
		hdr: []string{"Content-Type", mediaMsgpack, "Accept", mediaMsgpack, "Prefer", "return=minimal"}})
	if w.Code != http.StatusCreated {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var got struct {
		Results []struct {
			Status       int `msgpack:"status"`
			Transactions []struct {
				ID      string `msgpack:"id"`
				Version int64  `msgpack:"version"`
			} `msgpack:"transactions"`
			Stock struct {
				OnHand    int64 `msgpack:"on_hand"`
				Reserved  int64 `msgpack:"reserved"`
				Available int64 `msgpack:"available"`
				Version   int64 `msgpack:"version"`
			} `msgpack:"stock"`
		} `msgpack:"results"`
	}
	dec := msgpack.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode: %v", err)
	}
	r := got.Results
	if len(r) != 1 || r[0].Status != 201 || len(r[0].Transactions) != 1 || r[0].Transactions[0].Version != 1 ||
		len(r[0].Transactions[0].ID) != 36 || r[0].Stock.OnHand != 3 || r[0].Stock.Available != 3 || r[0].Stock.Version != 1 {
		t.Errorf("minimal msgpack answer %+v", got)
	}
}
