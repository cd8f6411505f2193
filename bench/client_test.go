package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestClientSpeaksHTTP checks the harness's own HTTP/1.1 client against
// net/http's server: the headers it sends, bodies with a length and
// chunked, keep-alive reuse, Connection: close, problems, timeouts and a
// cancelled context.
func TestClientSpeaksHTTP(t *testing.T) {
	var dials atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		got := strings.Join([]string{r.Header.Get("Content-Type"), r.Header.Get("Accept"), r.Header.Get("X-Actor"),
			r.Header.Get("Idempotency-Key"), r.Header.Get("Authorization"), r.Host, string(body)}, "|")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		w.Write([]byte(got))
	})
	mux.HandleFunc("GET /chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			w.Write([]byte(strings.Repeat(string(rune('a'+i)), 5000)))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("GET /close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Write([]byte("bye"))
	})
	mux.HandleFunc("GET /problem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(409)
		w.Write([]byte(sampleProblem))
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(srv.URL, 2, 300*time.Millisecond)
	c.auth = []string{"Bearer k"}
	t.Cleanup(c.close)
	ctx := context.Background()
	host := strings.TrimPrefix(srv.URL, "http://")

	for i := range 3 {
		r := c.do(ctx, http.MethodPost, "/echo", "key-1", []byte(`{"a":1}`))
		want := "application/json|application/json|bench|key-1|Bearer k|" + host + `|{"a":1}`
		if r.err != nil || r.status != 201 || string(r.body) != want {
			t.Fatalf("request %d: status %d, body %q, err %v; want 201 and %q", i, r.status, r.body, r.err, want)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("3 requests in a row opened %d connections, want 1", n)
	}
	if r := c.do(ctx, http.MethodGet, "/chunked", "", nil); r.err != nil || len(r.body) != 15000 || r.body[14999] != 'c' {
		t.Errorf("chunked answer: %d bytes, err %v", len(r.body), r.err)
	}
	if r := c.do(ctx, http.MethodGet, "/close", "", nil); r.err != nil || string(r.body) != "bye" {
		t.Errorf("Connection: close answer: %q, %v", r.body, r.err)
	}
	before := dials.Load()
	if r := c.do(ctx, http.MethodGet, "/problem", "", nil); r.err != nil || r.status != 409 || r.code != "insufficient_stock" {
		t.Errorf("problem: status %d code %q err %v", r.status, r.code, r.err)
	}
	if dials.Load() != before+1 {
		t.Errorf("the connection the server closed was used again")
	}
	if r := c.do(ctx, http.MethodGet, "/slow", "", nil); r.statusKey() != "timeout" || !r.unknown() {
		t.Errorf("slow answer: %q (%v), want a timeout", r.statusKey(), r.err)
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	if r := c.do(cctx, http.MethodGet, "/slow", "", nil); r.err == nil || !strings.Contains(r.err.Error(), "canceled") {
		t.Errorf("cancelled request: %v, want context canceled before the timeout", r.err)
	}
	if r := c.do(ctx, http.MethodPost, "/echo", "", nil); r.err != nil || r.status != 201 {
		t.Errorf("after a timeout and a cancel: status %d, %v", r.status, r.err)
	}
}

func TestClientDialsLoopbackOnly(t *testing.T) {
	c := newClient("http://10.0.0.1:80", 1, time.Second)
	if r := c.do(context.Background(), http.MethodGet, "/readyz", "", nil); r.err == nil || !strings.Contains(r.err.Error(), "non-loopback") {
		t.Errorf("dial of 10.0.0.1: %v", r.err)
	}
}

// TestClientSkipsConnectionsClosedWhileIdle: a keep-alive connection the
// service closed after its idle timeout is not used for the next request,
// which would otherwise fail with an unknown outcome.
func TestClientSkipsConnectionsClosedWhileIdle(t *testing.T) {
	var dials, closes atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	srv.Config.IdleTimeout = 20 * time.Millisecond
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			dials.Add(1)
		case http.StateClosed:
			closes.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(srv.URL, 2, 5*time.Second)
	t.Cleanup(c.close)
	for i := range 3 {
		if r := c.do(context.Background(), http.MethodPost, "/", "", []byte("{}")); r.err != nil || string(r.body) != "ok" {
			t.Fatalf("request %d: %q, %v", i, r.body, r.err)
		}
		for deadline := time.Now().Add(5 * time.Second); closes.Load() <= int64(i) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond) // until the server closed the idle connection
		}
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("3 requests, each after the server closed the idle connection: %d connections, want 3", n)
	}
}

// TestReadResponse reads answers of each framing from one stream, so that
// a misread length shows up as the next answer failing to parse.
func TestReadResponse(t *testing.T) {
	type want struct {
		status int
		body   string
		keep   bool
	}
	ok := []struct {
		method, raw string
		want        want
	}{
		{"GET", "HTTP/1.1 201 Created\r\nContent-Length: 3\r\nContent-Type: application/json\r\n\r\n{}\n", want{201, "{}\n", true}},
		{"GET", "HTTP/1.1 200 OK\r\ncontent-length:  2 \r\ncontent-length: 2\r\n\r\nok", want{200, "ok", true}},
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: t\r\n\r\n", want{200, "abcde", true}},
		{"GET", "HTTP/1.1 409 Conflict\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\nx", want{409, "x", false}},
		{"GET", "HTTP/1.1 204 No Content\r\n\r\n", want{204, "", true}},
		{"GET", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny", want{200, "y", true}},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", want{200, "", true}},
		{"GET", "HTTP/1.0 200 OK\nContent-Length: 2\n\nhi", want{200, "hi", false}},
		{"GET", "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n", want{503, "", true}},
		{"GET", "HTTP/1.1 200\r\n\r\nto the end", want{200, "to the end", false}},
	}
	var stream strings.Builder
	for _, c := range ok {
		stream.WriteString(c.raw)
	}
	br := bufio.NewReader(strings.NewReader(stream.String()))
	for i, c := range ok {
		status, body, keep, err := readResponse(br, c.method)
		if got := (want{status, string(body), keep}); err != nil || got != c.want {
			t.Errorf("answer %d (%.30q): %+v, %v; want %+v", i, c.raw, got, err, c.want)
		}
	}

	bad := []string{
		"",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/2.0 200 OK\r\n\r\n",
		"SMTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
		"HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
	}
	for _, raw := range bad {
		if status, body, _, err := readResponse(bufio.NewReader(strings.NewReader(raw)), "GET"); err == nil {
			t.Errorf("%.40q: status %d, body %q, want an error", raw, status, body)
		}
	}
}
