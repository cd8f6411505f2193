package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// withConfig returns a second API on ts's engine, configured by cfg (its
// Engine is filled in, and its Registry if nil).
func withConfig(ts *testServer, cfg Config) *testServer {
	ts.t.Helper()
	cfg.Engine = ts.eng
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	e, err := New(cfg)
	if err != nil {
		ts.t.Fatal(err)
	}
	return &testServer{t: ts.t, e: e, eng: ts.eng, reg: cfg.Registry, journals: ts.journals}
}

// trickle is a request body that a slow client sends: it hands out its
// first part at once and each later part only when the test sends on next
// (or closes it), and it records the largest buffer a Read was offered.
// Each time it has handed out a part and waits for the next, it sends on
// stalled (buffered: a test may ignore it): by then the server has taken
// every byte handed out so far and is waiting for more.
type trickle struct {
	parts   []string
	next    chan struct{}
	stalled chan struct{}

	mu      sync.Mutex
	offered int
	i       int    // parts handed out
	cur     string // rest of the part being handed out
}

func newTrickle(parts ...string) *trickle {
	return &trickle{parts: parts, next: make(chan struct{}), stalled: make(chan struct{}, len(parts))}
}

func (r *trickle) Read(p []byte) (int, error) {
	r.mu.Lock()
	r.offered = max(r.offered, len(p))
	r.mu.Unlock()
	for r.cur == "" {
		if r.i == len(r.parts) {
			return 0, io.EOF
		}
		if r.i > 0 {
			r.stalled <- struct{}{}
			<-r.next
		}
		r.cur = r.parts[r.i]
		r.i++
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *trickle) largestOffered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.offered
}

// slowRequest serves a POST of path whose body is tr, announced as
// announced bytes (-1: chunked), in the background.
func slowRequest(ts *testServer, path string, announced int64, tr *trickle, hdr ...string) <-chan *httptest.ResponseRecorder {
	hr := httptest.NewRequest("POST", path, nil)
	hr.Body = io.NopCloser(tr)
	hr.ContentLength = announced
	hr.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		hr.Header.Add(hdr[i], hdr[i+1])
	}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		ts.e.ServeHTTP(w, hr)
		done <- w
	}()
	return done
}

// gauge returns the value of the unlabelled gauge name in reg, or -1.
func gauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	return -1
}

const inflightGauge = "inventory_http_body_inflight_bytes"

// smallBufBytes bounds the buffer a body of a few bytes may take.
const smallBufBytes = 4 << 10

// TestBodyGrowsWithWhatArrives: a batch that announces 4 MiB and sends one
// byte holds a buffer the size of what came, not of what was announced, and
// the in-flight gauge says so; many such requests hold little in all.
func TestBodyGrowsWithWhatArrives(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	const slow = 50
	var trs []*trickle
	var answers []<-chan *httptest.ResponseRecorder
	for range slow {
		tr := newTrickle("{", "}")
		trs = append(trs, tr)
		answers = append(answers, slowRequest(ts, "/v1/batch", batchBytesMax, tr))
		<-tr.stalled
	}
	for i, tr := range trs {
		if got := tr.largestOffered(); got > smallBufBytes {
			t.Errorf("request %d: offered a %d-byte buffer after 1 byte of a 4 MiB announcement, want at most %d",
				i, got, smallBufBytes)
		}
	}
	if got := gauge(t, ts.reg, inflightGauge); got < slow || got > slow*smallBufBytes {
		t.Errorf("%s with %d one-byte bodies stalled: %v, want 1..%d bytes per request", inflightGauge, slow, got, smallBufBytes)
	}
	for i, tr := range trs {
		close(tr.next)
		problem(t, <-answers[i], http.StatusBadRequest, "invalid_request") // "{}" has no ops
	}
	if got := gauge(t, ts.reg, inflightGauge); got != 0 {
		t.Errorf("%s after every body was read: %v", inflightGauge, got)
	}
}

// TestBodyBytesInflightMax fills the server-wide budget with slow bodies
// and checks that a body that would pass it is refused at once with 503
// overloaded and Retry-After, changing nothing (a single write that would
// take its first buffer, a batch that would grow its own), and that the
// budget comes back as the slow bodies end.
func TestBodyBytesInflightMax(t *testing.T) {
	const mib = 1 << 20
	ts := withConfig(newTestServer(t, serverOptions{}), Config{BodyBytesInflightMax: 4 * mib})
	ts.mustWrite("p", `{"type":"ADD","quantity":5}`)
	version := ts.version("p")

	// a and b each send 1.5 MiB: a 2 MiB buffer each, the budget is full.
	pad := strings.Repeat(" ", mib/2)
	first := `{"ops":[` + pad + pad + pad
	a := newTrickle(first, pad+pad+pad, "]}")
	b := newTrickle(first, "]}")
	aDone := slowRequest(ts, "/v1/batch", batchBytesMax, a)
	<-a.stalled
	bDone := slowRequest(ts, "/v1/batch", batchBytesMax, b)
	<-b.stalled
	if got := gauge(t, ts.reg, inflightGauge); got != 4*mib {
		t.Errorf("%s with two 1.5 MiB bodies stalled: %v, want %d", inflightGauge, got, 4*mib)
	}

	overloaded := func(what string, w *httptest.ResponseRecorder) {
		t.Helper()
		problem(t, w, http.StatusServiceUnavailable, "overloaded")
		if got := w.Header().Get("Retry-After"); got != "1" {
			t.Errorf("%s: Retry-After %q, want 1", what, got)
		}
	}
	overloaded("a write with the budget full", ts.write("p", `{"type":"REMOVE","quantity":1}`))
	overloaded("a batch with the budget full", ts.do(req{method: "POST", path: "/v1/batch",
		body: `{"ops":[{"product_id":"p","type":"REMOVE","quantity":1,"idempotency_key":"` + newKey() + `"}]}`}))
	if got := ts.version("p"); got != version {
		t.Errorf("refused writes changed the product: version %d, want %d", got, version)
	}

	// a goes on: its buffer would have to grow to 4 MiB, which does not fit.
	close(a.next)
	overloaded("a batch growing past the budget", <-aDone)
	if got := gauge(t, ts.reg, inflightGauge); got != 2*mib {
		t.Errorf("%s after a was refused: %v, want b's %d", inflightGauge, got, 2*mib)
	}
	ts.mustWrite("p", `{"type":"REMOVE","quantity":1}`) // fits beside b

	close(b.next)
	problem(t, <-bDone, http.StatusBadRequest, "invalid_request") // no ops
	if got := gauge(t, ts.reg, inflightGauge); got != 0 {
		t.Errorf("%s after every body ended: %v", inflightGauge, got)
	}
}

// TestBodyLimitExact: a body of exactly the limit is read, one byte more is
// 413, whether the length is announced or not.
func TestBodyLimitExact(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	doc := `{"type":"ADD","quantity":1}`
	exact := doc + strings.Repeat(" ", writeBytesMax-len(doc))
	for _, announced := range []bool{true, false} {
		for _, c := range []struct {
			body   string
			status int
		}{{exact, http.StatusCreated}, {exact + " ", http.StatusRequestEntityTooLarge}} {
			hr := httptest.NewRequest("POST", "/v1/products/p/transactions", strings.NewReader(c.body))
			if !announced {
				hr.Body = io.NopCloser(strings.NewReader(c.body))
				hr.ContentLength = -1
			}
			hr.Header.Set("Idempotency-Key", newKey())
			w := httptest.NewRecorder()
			ts.e.ServeHTTP(w, hr)
			if w.Code != c.status {
				t.Errorf("%d-byte body (length announced %v): %d %s, want %d", len(c.body), announced, w.Code, w.Body, c.status)
			}
		}
	}
}

// TestBodyBytesInflightMaxValidated: the budget must hold one whole batch.
func TestBodyBytesInflightMaxValidated(t *testing.T) {
	ts := newTestServer(t, serverOptions{})
	for _, v := range []int64{-1, 1, batchBytesMax - 1} {
		if _, err := New(Config{Engine: ts.eng, Registry: prometheus.NewRegistry(), BodyBytesInflightMax: v}); err == nil {
			t.Errorf("BodyBytesInflightMax %d accepted", v)
		}
	}
	for _, v := range []int64{0, batchBytesMax} {
		if _, err := New(Config{Engine: ts.eng, Registry: prometheus.NewRegistry(), BodyBytesInflightMax: v}); err != nil {
			t.Errorf("BodyBytesInflightMax %d: %v", v, err)
		}
	}
}
