package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/shard/shardtest"
)

func TestNotReady(t *testing.T) {
	gate := make(chan struct{})
	ts := newTestServer(t, serverOptions{noWait: true, openGate: gate})
	w := ts.do(req{method: "GET", path: "/readyz"})
	problem(t, w, 503, "unavailable")
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	w = ts.write("p", `{"type":"ADD","quantity":1}`)
	problem(t, w, 503, "unavailable")
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("write while replaying: Retry-After %q", w.Header().Get("Retry-After"))
	}
	problem(t, ts.do(req{method: "GET", path: "/v1/products/p"}), 503, "unavailable")
	if w := ts.do(req{method: "GET", path: "/healthz"}); w.Code != 200 || w.Body.String() != `{"status":"ok"}` {
		t.Errorf("healthz while replaying: %d %s", w.Code, w.Body)
	}
	close(gate)
	deadline := time.Now().Add(5 * time.Second)
	for !ts.eng.Ready() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if w := ts.do(req{method: "GET", path: "/readyz"}); w.Code != 200 || w.Body.String() != `{"status":"ready"}` {
		t.Errorf("readyz after replay: %d %s", w.Code, w.Body)
	}
	ts.mustWrite("p", `{"type":"ADD","quantity":1}`)
}

func TestJournalFailure(t *testing.T) {
	ts := newTestServer(t, serverOptions{shards: 1})
	ts.mustWrite("p", `{"type":"ADD","quantity":1}`)
	ts.journals[0].Fail(shardtest.Fault{Err: errors.New("injected journal failure")})
	w := ts.write("p", `{"type":"ADD","quantity":1}`)
	problem(t, w, 503, "unavailable")
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	problem(t, ts.do(req{method: "GET", path: "/v1/products/p"}), 503, "unavailable")
}

// TestOverloaded stalls the only shard's journal so that its queue fills:
// the next request must be refused at once with 503 and Retry-After.
func TestOverloaded(t *testing.T) {
	ts := newTestServer(t, serverOptions{shards: 1, cfg: shard.Config{InboxDepth: 1, BatchOpsMax: 1000}})
	started, release := ts.journals[0].Hold()
	defer release()

	type answer struct {
		code  int
		retry string
		body  string
	}
	answers := make(chan answer, 64)
	send := func(r req) {
		go func() {
			w := ts.do(r)
			answers <- answer{w.Code, w.Header().Get("Retry-After"), w.Body.String()}
		}()
	}
	send(req{method: "POST", path: "/v1/products/p/transactions", body: `{"type":"ADD","quantity":1}`, hdr: []string{"Idempotency-Key", "first"}})
	<-started // the writer is stuck in its first write
	// 1,000 ops fill the actor's next flight; after that its inbox (depth
	// 1) fills, and then requests bounce.
	send(req{method: "POST", path: "/v1/batch", body: batchOfAdds(1000)})
	var got *answer
	sent := 2
	for i := 0; got == nil && i < 40; i++ {
		send(req{method: "POST", path: "/v1/products/p/transactions", body: `{"type":"ADD","quantity":1}`, hdr: []string{"Idempotency-Key", "more-" + itoa(int64(i))}})
		sent++
		select {
		case a := <-answers:
			got = &a
		case <-time.After(20 * time.Millisecond):
		}
	}
	if got == nil {
		t.Fatal("no request was refused with the journal stuck")
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(got.body), &p); err != nil || got.code != 503 || p["code"] != "overloaded" || got.retry != "1" {
		t.Errorf("with the queue full: %d Retry-After %q %s, want 503 overloaded with Retry-After 1", got.code, got.retry, got.body)
	}
	release()
	for range sent - 1 {
		if a := <-answers; a.code != 201 && a.code != 200 && a.code != 503 {
			t.Errorf("queued request: %d %s", a.code, a.body)
		}
	}
}

func batchOfAdds(n int) string {
	var b strings.Builder
	b.WriteString(`{"ops":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"product_id":"p","type":"ADD","quantity":1,"idempotency_key":"b` + itoa(int64(i)) + `"}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

// TestOverHTTP runs the server behind a real listener: 405 and Allow as a
// client sees them, chunked bodies over and under the limit.
func TestOverHTTP(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	srv := httptest.NewServer(ts.e)
	defer srv.Close()

	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/products/p/transactions", "OPTIONS, GET, POST"},
		{"POST", "/v1/products/p", "OPTIONS, GET"},
		{"PUT", "/v1/products/p/reservations/r", "OPTIONS, GET"},
		{"GET", "/v1/batch", "OPTIONS, POST"},
		{"POST", "/healthz", "OPTIONS, GET"},
		{"HEAD", "/v1/products/p", "OPTIONS, GET"},
	} {
		r, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q, want 405 with Allow %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), c.allow)
		}
		if c.method != "HEAD" && !bytes.Contains(body, []byte(`"code":"method_not_allowed"`)) {
			t.Errorf("%s %s: %s", c.method, c.path, body)
		}
	}

	post := func(body io.Reader) (*http.Response, []byte) {
		r, _ := http.NewRequest("POST", srv.URL+"/v1/products/p/transactions", body)
		r.Header.Set("Idempotency-Key", newKey())
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = -1 // chunked
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := post(io.MultiReader(strings.NewReader(`{"type":"ADD","quantity":1,"reason":"`),
		strings.NewReader(strings.Repeat("x", 70<<10)), strings.NewReader(`"}`)))
	if resp.StatusCode != 413 || !bytes.Contains(b, []byte("payload_too_large")) {
		t.Errorf("chunked body over the limit: %d %s", resp.StatusCode, b)
	}
	resp, b = post(io.MultiReader(strings.NewReader(`{"type":"ADD",`), strings.NewReader(`"quantity":1}`)))
	if resp.StatusCode != 201 || resp.Header.Get("Content-Length") == "" {
		t.Errorf("chunked body: %d %v %s", resp.StatusCode, resp.Header, b)
	}
}

func TestPanicIsA500(t *testing.T) {
	var log bytes.Buffer
	ts := newTestServer(t, serverOptions{logger: slog.New(slog.NewTextHandler(&log, nil))})
	ts.e.GET("/panic", func(echo.Context) error { panic("boom") })
	ts.e.GET("/error", func(echo.Context) error { return errors.New("unexpected") })
	for _, path := range []string{"/panic", "/error"} {
		problem(t, ts.do(req{method: "GET", path: path}), 500, "internal_error")
	}
	if w := ts.do(req{method: "GET", path: "/healthz"}); w.Code != 200 {
		t.Errorf("healthz after a panic: %d", w.Code)
	}
	if out := log.String(); !strings.Contains(out, "panic=boom") || !strings.Contains(out, "goroutine") || !strings.Contains(out, "err=unexpected") {
		t.Errorf("log lacks the panic, its stack or the error:\n%s", out)
	}
}

func TestMetrics(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	ts.mustWrite("sku-secret", `{"type":"ADD","quantity":1}`)
	ts.do(req{method: "GET", path: "/v1/products/none"})
	ts.do(req{method: "GET", path: "/no/such/route"})
	ts.do(req{method: "BREW", path: "/v1/products/x"})
	w := ts.do(req{method: "GET", path: "/metrics"})
	if w.Code != 200 {
		t.Fatalf("metrics: %d", w.Code)
	}
	out := w.Body.String()
	for _, want := range []string{
		`inventory_http_request_duration_seconds_count{code="201",method="POST",route="/v1/products/{product_id}/transactions"} 1`,
		`inventory_http_request_duration_seconds_count{code="404",method="GET",route="/v1/products/{product_id}"} 1`,
		`inventory_http_request_duration_seconds_count{code="404",method="GET",route="unmatched"} 1`,
		`inventory_http_request_duration_seconds_count{code="405",method="other",route="/v1/products/{product_id}"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(out, "sku-secret") {
		t.Error("metrics are labelled by product")
	}
}

// TestProblemTable checks the one code table: every engine code has a
// status, and the statuses are those of API.md.
func TestProblemTable(t *testing.T) {
	want := map[shard.Code]int{
		"invalid_request": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404, "method_not_allowed": 405,
		"payload_too_large": 413, "insufficient_stock": 409, "reservation_exists": 409, "reservation_not_active": 409,
		"commit_exceeds_hold": 409, "limit_exceeded": 409, "version_conflict": 412, "idempotency_key_reused": 422,
		"overloaded": 503, "unavailable": 503, "internal_error": 500,
	}
	for _, c := range shard.Codes {
		if _, ok := problems[c]; !ok {
			t.Errorf("engine code %s is missing from the table", c)
		}
	}
	for c, p := range problems {
		if want[c] != p.status || p.title == "" {
			t.Errorf("%s: status %d title %q, want %d", c, p.status, p.title, want[c])
		}
		if (p.status == 503) != (p.retryAfter != "") {
			t.Errorf("%s: Retry-After %q", c, p.retryAfter)
		}
	}
	if len(problems) != len(want) {
		t.Errorf("table has %d codes, want %d", len(problems), len(want))
	}
	// limit_exceeded needs 10^6 writes of the largest quantity to reach
	// through the engine; its encoding is checked here instead.
	var e jsonEncoder
	encodeProblem(&e, &shard.Error{Code: shard.CodeLimitExceeded, Detail: "on_hand would pass 10^15", OpIndex: 3})
	if got := string(e.b); got != `{"type":"urn:inventory:problem:limit_exceeded","title":"Limit exceeded","status":409,"detail":"on_hand would pass 10^15","code":"limit_exceeded","op_index":3}` {
		t.Errorf("limit_exceeded problem %s", got)
	}
}

// TestOpenAPIMatchesServer checks that openapi.json describes exactly the
// server's routes and the code table.
func TestOpenAPIMatchesServer(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	w := ts.do(req{method: "GET", path: "/openapi.json"})
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" || !bytes.Equal(w.Body.Bytes(), openAPI) {
		t.Fatalf("GET /openapi.json: %d %v", w.Code, w.Header())
	}
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas struct {
				Problem struct {
					Codes      map[string]struct{ Status int } `json:"x-codes"`
					Properties struct {
						Code struct {
							Enum []string `json:"enum"`
						} `json:"code"`
					} `json:"properties"`
				} `json:"Problem"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	var documented, served []string
	for path, item := range doc.Paths {
		for method := range item {
			if method != "parameters" {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	for _, r := range ts.e.Routes() {
		if r.Path == routeConsole || r.Path == routeConsoleRoot {
			continue // the console's static files, not the API
		}
		served = append(served, r.Method+" "+routeLabel(r.Path))
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("documented routes\n%v\nserved routes\n%v", documented, served)
	}

	p := doc.Components.Schemas.Problem
	var enum, table []string
	enum = p.Properties.Code.Enum
	for c, pt := range problems {
		table = append(table, string(c))
		if p.Codes[string(c)].Status != pt.status {
			t.Errorf("%s: documented status %d, served %d", c, p.Codes[string(c)].Status, pt.status)
		}
	}
	slices.Sort(enum)
	slices.Sort(table)
	if !slices.Equal(enum, table) || len(p.Codes) != len(table) {
		t.Errorf("documented codes %v (x-codes %d), table %v", enum, len(p.Codes), table)
	}
	// Every status of the table appears in some operation's responses.
	statuses := map[string]bool{}
	for _, item := range doc.Paths {
		for method, op := range item {
			if method == "parameters" {
				continue
			}
			var o struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil {
				t.Fatal(err)
			}
			for s := range o.Responses {
				statuses[s] = true
			}
		}
	}
	for c, pt := range problems {
		if pt.status != 401 && pt.status != 403 && pt.status != 404 && !statuses[itoa(int64(pt.status))] {
			t.Errorf("%s: status %d is in no documented response", c, pt.status)
		}
	}
}

// TestExpiry checks how an expired hold reads: state expired, the expiry
// RELEASE by the system without an idempotency key.
func TestExpiry(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano())
	ts := newTestServer(t, serverOptions{cfg: shard.Config{Clock: now.Load}})
	ts.mustWrite("p", `{"type":"ADD","quantity":3}`)
	res := ts.mustWrite("p", `{"type":"RESERVE","quantity":2,"reservation_id":"r","ttl_seconds":1}`)
	if got := res["transaction"].(map[string]any)["expires_at"]; got != "2030-01-02T03:04:06.000000006Z" {
		t.Errorf("expires_at %v", got)
	}
	now.Add(int64(2 * time.Second))
	var r map[string]any
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r = decodeJSON(t, ts.do(req{method: "GET", path: "/v1/products/p/reservations/r"}).Body.Bytes())
		if r["state"] == "expired" {
			break
		}
	}
	if r["state"] != "expired" || r["settled_at"] == nil {
		t.Fatalf("reservation after its ttl: %v", r)
	}
	w := ts.do(req{method: "GET", path: "/v1/products/p/transactions?after=2"})
	rel := decodeJSON(t, w.Body.Bytes())["transactions"].([]any)[0].(map[string]any)
	checkEntry(t, rel, "reservation_id")
	if rel["type"] != "RELEASE" || rel["created_by"] != "system" || rel["reason"] != "expired" || rel["created_at"] != r["settled_at"] {
		t.Errorf("expiry entry %v", rel)
	}
	p := problem(t, ts.write("p", `{"type":"COMMIT","reservation_id":"r"}`), 409, "reservation_not_active")
	if p["state"] != "expired" {
		t.Errorf("state %v, want expired", p["state"])
	}
}
