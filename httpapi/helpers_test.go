package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// testServer is the API on a real engine whose journals live in memory.
type testServer struct {
	t   testing.TB
	e   *echo.Echo
	eng *shard.Engine
	reg *prometheus.Registry
	// journals are the engine's, one per shard: a test can make one fail
	// or hold its writes.
	journals []*shardtest.Journal
	// token is the bearer secret sent when a request names no
	// Authorization header ("" for none).
	token string
}

// serverOptions adjust the engine of a test server.
type serverOptions struct {
	shards int
	cfg    shard.Config
	// noWait returns before the replay ends.
	noWait bool
	// openGate, if set, delays opening the journals until it is closed.
	openGate chan struct{}
	// logger is the API's logger (default: discard).
	logger *slog.Logger
	// engineMetrics puts the engine's metrics on /metrics too, as
	// inventoryd does.
	engineMetrics bool
	// auth turns access control on; token is then sent as the bearer
	// secret of every request that names no Authorization header.
	auth  *Auth
	token string
}

func newTestServer(t testing.TB, o serverOptions) *testServer {
	t.Helper()
	if o.shards == 0 {
		o.shards = 2
	}
	js := shardtest.Journals(o.shards)
	opener := shardtest.Opener[shard.Journal](js)
	open := func(i int, fn func(uint64, []byte) error) (shard.Journal, error) {
		if o.openGate != nil {
			<-o.openGate
		}
		return opener(i, fn)
	}
	cfg := o.cfg
	cfg.Shards = o.shards
	reg := prometheus.NewRegistry()
	if o.engineMetrics {
		cfg.Registerer = reg
	}
	eng, err := shard.Open(cfg, open)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if o.openGate != nil {
			select {
			case <-o.openGate:
			default:
				close(o.openGate)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Close(ctx); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	if !o.noWait {
		if err := eng.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := shard.NewReconciler(eng, shard.ReconcilerConfig{
		OpenLog:    func(i int) shard.LogCursor { return js[i].Cursor() },
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Engine: eng, Registry: reg, Logger: o.logger, Reconciler: rc, Auth: o.auth})
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{t: t, e: e, eng: eng, reg: reg, journals: js, token: o.token}
}

// req describes one request; hdr holds header name/value pairs.
type req struct {
	method, path string
	body         string
	hdr          []string
}

// do serves r in process and returns the recorded answer.
func (ts *testServer) do(r req) *httptest.ResponseRecorder {
	ts.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" && !hasHeader(r.hdr, "Content-Type") {
		hr.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(r.hdr); i += 2 {
		hr.Header.Add(r.hdr[i], r.hdr[i+1])
	}
	if ts.token != "" && !hasHeader(r.hdr, "Authorization") {
		hr.Header.Set("Authorization", "Bearer "+ts.token)
	}
	w := httptest.NewRecorder()
	ts.e.ServeHTTP(w, hr)
	return w
}

func hasHeader(hdr []string, name string) bool {
	for i := 0; i < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], name) {
			return true
		}
	}
	return false
}

var keySeq atomic.Int64

// newKey returns a fresh idempotency key.
func newKey() string { return "k-" + itoa(keySeq.Add(1)) }

func itoa(v int64) string { return string(appendInt(nil, v)) }

func appendInt(b []byte, v int64) []byte {
	e := jsonEncoder{b: b}
	e.int(v)
	return e.b
}

// write posts a single write with a fresh key (unless hdr names one) and
// returns the answer.
func (ts *testServer) write(product, body string, hdr ...string) *httptest.ResponseRecorder {
	ts.t.Helper()
	if !hasHeader(hdr, "Idempotency-Key") {
		hdr = append(hdr, "Idempotency-Key", newKey())
	}
	return ts.do(req{method: "POST", path: "/v1/products/" + product + "/transactions", body: body, hdr: hdr})
}

// mustWrite is write that must answer 201.
func (ts *testServer) mustWrite(product, body string, hdr ...string) map[string]any {
	ts.t.Helper()
	w := ts.write(product, body, hdr...)
	if w.Code != http.StatusCreated {
		ts.t.Fatalf("POST %s %s: %d %s", product, body, w.Code, w.Body)
	}
	return decodeJSON(ts.t, w.Body.Bytes())
}

// version returns a product's version, 0 if it has no entries.
func (ts *testServer) version(product string) int64 {
	ts.t.Helper()
	w := ts.do(req{method: "GET", path: "/v1/products/" + product})
	if w.Code == http.StatusNotFound {
		return 0
	}
	if w.Code != http.StatusOK {
		ts.t.Fatalf("GET %s: %d %s", product, w.Code, w.Body)
	}
	return int64(decodeJSON(ts.t, w.Body.Bytes())["version"].(float64))
}

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// problem checks that w is a problem document with status and code, and
// returns it.
func problem(t testing.TB, w *httptest.ResponseRecorder, status int, code string) map[string]any {
	t.Helper()
	if w.Code != status {
		t.Errorf("status %d, want %d (body %s)", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	p := decodeJSON(t, w.Body.Bytes())
	if p["code"] != code {
		t.Errorf("code %v, want %s (detail %v)", p["code"], code, p["detail"])
	}
	if p["type"] != "urn:inventory:problem:"+code || p["status"] != float64(status) || p["title"] == "" {
		t.Errorf("problem %v: type, status or title wrong", p)
	}
	if d, _ := p["detail"].(string); d == "" {
		t.Errorf("problem %v has no detail", p)
	}
	return p
}

type httptestRecorder = httptest.ResponseRecorder

func mustMarshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
