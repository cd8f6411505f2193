package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// binary is the inventoryd built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "inventoryd-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "inventoryd")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build inventoryd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running inventoryd.
type server struct {
	t    testing.TB
	cmd  *exec.Cmd
	url  string
	dir  string
	logs *logBuffer
	done chan error
	// client talks to it (http.DefaultClient unless it serves TLS).
	client *http.Client
}

// logBuffer collects a server's output; safe to read while it writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// listening is the address the server logs that it listens on.
var listening = regexp.MustCompile(`msg=starting addr=(\S+)`)

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs inventoryd on dir and waits until it is ready. The server
// picks its own port (--addr 127.0.0.1:0) and the test reads it from the
// start-up log: a port chosen here could be taken by another test process
// before the server binds it, and the test would then talk to that one.
func start(t testing.TB, dir string, args ...string) *server {
	t.Helper()
	return launch(t, dir, exec.Command(binary, append([]string{"--addr", "127.0.0.1:0", "--data-dir", dir, "--shards", "4"}, args...)...))
}

// launch runs cmd, an inventoryd on dir told to listen on 127.0.0.1:0, and
// waits until it is ready.
func launch(t testing.TB, dir string, cmd *exec.Cmd) *server {
	t.Helper()
	return launchWith(t, dir, cmd, "http", http.DefaultClient)
}

// launchWith is launch with a scheme and a client (for TLS).
func launchWith(t testing.TB, dir string, cmd *exec.Cmd, scheme string, client *http.Client) *server {
	t.Helper()
	s := &server{t: t, dir: dir, logs: &logBuffer{}, done: make(chan error, 1), cmd: cmd, client: client}
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s.url == "" {
			if m := listening.FindStringSubmatch(s.logs.String()); m != nil {
				s.url = scheme + "://" + m[1]
			}
		}
		if s.url != "" {
			resp, err := client.Get(s.url + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return s
				}
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("inventoryd exited: %v; logs:\n%s", err, s.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 20s; logs:\n%s", s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (s *server) do(method, path string, body any, headers ...string) response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	json.Unmarshal(raw, &r.body)
	return r
}

func (s *server) write(product, key string, body map[string]any) response {
	s.t.Helper()
	return s.do("POST", "/v1/products/"+product+"/transactions", body, "Idempotency-Key", key)
}

// addBatch returns a non-atomic batch of 1000 ADD ops of qty: op j goes to
// products[j%len(products)] with the idempotency key prefix-j.
func addBatch(products []string, qty int64, prefix string) []byte {
	b := []byte(`{"atomic":false,"ops":[`)
	for j := 0; j < 1000; j++ {
		if j > 0 {
			b = append(b, ',')
		}
		// Appended by hand: benchmarks build these on the server's cores.
		b = append(b, `{"product_id":"`...)
		b = append(b, products[j%len(products)]...)
		b = append(b, `","type":"ADD","quantity":`...)
		b = strconv.AppendInt(b, qty, 10)
		b = append(b, `,"idempotency_key":"`...)
		b = append(b, prefix...)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(j), 10)
		b = append(b, `"}`...)
	}
	return append(b, "]}"...)
}

// postDiscard posts a JSON body to url and returns the status, discarding
// the answer.
func postDiscard(client *http.Client, url string, body []byte) (int, error) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

func TestCheckoutFlow(t *testing.T) {
	s := start(t, t.TempDir())
	r := s.write("sku-1", "k1", map[string]any{"type": "ADD", "quantity": 10, "reason": "delivery"})
	if r.status != 201 {
		t.Fatalf("add: %d %s", r.status, r.raw)
	}
	r = s.write("sku-1", "k2", map[string]any{"type": "RESERVE", "quantity": 3, "reservation_id": "o1"})
	if r.status != 201 || num(r.body["stock"].(map[string]any)["available"]) != 7 {
		t.Fatalf("reserve: %d %s", r.status, r.raw)
	}
	again := s.write("sku-1", "k2", map[string]any{"type": "RESERVE", "quantity": 3, "reservation_id": "o1"})
	if again.status != 200 || again.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.raw, r.raw) {
		t.Errorf("replay: %d %q\n%s\n%s", again.status, again.header.Get("Idempotent-Replayed"), again.raw, r.raw)
	}
	r = s.write("sku-1", "k3", map[string]any{"type": "COMMIT", "reservation_id": "o1", "quantity": 2})
	if r.status != 201 || len(r.body["transactions"].([]any)) != 2 {
		t.Fatalf("partial commit: %d %s", r.status, r.raw)
	}
	r = s.do("GET", "/v1/products/sku-1", nil)
	if r.status != 200 || r.header.Get("ETag") != `"4"` || num(r.body["on_hand"]) != 8 {
		t.Errorf("stock: %d %v %s", r.status, r.header.Get("ETag"), r.raw)
	}
	r = s.do("GET", "/v1/products/sku-1/reservations/o1", nil)
	if r.status != 200 || r.body["state"] != "committed" {
		t.Errorf("reservation: %d %s", r.status, r.raw)
	}
	r = s.do("GET", "/v1/products/sku-1/transactions?limit=2", nil)
	if r.status != 200 || len(r.body["transactions"].([]any)) != 2 || num(r.body["next_after"]) != 2 {
		t.Errorf("history: %d %s", r.status, r.raw)
	}
	r = s.write("sku-1", "k4", map[string]any{"type": "REMOVE", "quantity": 100})
	if r.status != 409 || r.body["code"] != "insufficient_stock" || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("oversell: %d %s %s", r.status, r.header.Get("Content-Type"), r.raw)
	}
}

// TestFlashSale: 64 concurrent buyers, N units: exactly N holds, no 5xx.
func TestFlashSale(t *testing.T) {
	const units, buyers = 300, 64
	s := start(t, t.TempDir())
	if r := s.write("hot", "stock", map[string]any{"type": "ADD", "quantity": units}); r.status != 201 {
		t.Fatal(r.status)
	}
	var won, other atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: buyers}}
	for b := 0; b < buyers; b++ {
		wg.Go(func() {
			for i := 0; ; i++ {
				body := fmt.Sprintf(`{"type":"RESERVE","quantity":1,"reservation_id":"b%d-%d"}`, b, i)
				req, _ := http.NewRequest("POST", s.url+"/v1/products/hot/transactions", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("b%d-%d", b, i))
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 201:
					won.Add(1)
				case 409:
					return
				default:
					other.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	if won.Load() != units || other.Load() != 0 {
		t.Errorf("%d holds (want %d), %d other answers", won.Load(), units, other.Load())
	}
}

// TestKillAndRestart kills the server with SIGKILL while clients write and
// checks that every acknowledged write is there after a restart, and that
// retries of acknowledged writes replay.
func TestKillAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	s.write("p", "seed", map[string]any{"type": "ADD", "quantity": 1_000_000})
	var mu sync.Mutex
	ackedKeys := map[string]string{} // key -> entry id
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				body := fmt.Sprintf(`{"type":"RESERVE","quantity":1,"reservation_id":%q}`, key)
				req, _ := http.NewRequest("POST", s.url+"/v1/products/p/transactions", strings.NewReader(body))
				req.Header.Set("Idempotency-Key", key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // the server is gone
				}
				var out map[string]any
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == 201 {
					mu.Lock()
					ackedKeys[key] = out["transaction"].(map[string]any)["id"].(string)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	s.kill()
	close(stop)
	wg.Wait()
	if len(ackedKeys) == 0 {
		t.Fatal("nothing acknowledged before the kill")
	}
	s = start(t, dir)
	for key, id := range ackedKeys {
		body := fmt.Sprintf(`{"type":"RESERVE","quantity":1,"reservation_id":%q}`, key)
		r := s.do("POST", "/v1/products/p/transactions", body, "Idempotency-Key", key)
		if r.status != 200 || r.body["transaction"].(map[string]any)["id"] != id {
			t.Fatalf("acknowledged %s: after restart %d %s", key, r.status, r.raw)
		}
	}
	r := s.do("GET", "/v1/products/p", nil)
	if held := num(r.body["reserved"]); held < int64(len(ackedKeys)) {
		t.Errorf("reserved %d < %d acknowledged holds", held, len(ackedKeys))
	}
}

// TestGracefulShutdown: SIGTERM finishes and exits 0 within 10 s.
func TestGracefulShutdown(t *testing.T) {
	s := start(t, t.TempDir())
	s.write("p", "k", map[string]any{"type": "ADD", "quantity": 1})
	t0 := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("exit: %v; logs:\n%s", err, s.logs)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("took %s", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15s after SIGTERM")
	}
	if !strings.Contains(s.logs.String(), "stopped") {
		t.Errorf("no shutdown log line:\n%s", s.logs)
	}
}

func TestRefusesOtherShardCount(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
	out, err := exec.CommandContext(context.Background(), binary, "--addr", freePort(t), "--data-dir", dir, "--shards", "3").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "created with 4 shards") {
		t.Errorf("other shard count: err %v, output %s", err, out)
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{"INVENTORY_SHARDS": "7", "INVENTORY_ADDR": "127.0.0.1:9999", "INVENTORY_RETENTION": "2h"}
	c, err := parse([]string{"--addr", "127.0.0.1:1234"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:1234" || c.Engine.Shards != 7 || c.Engine.Retention != 2*time.Hour || c.DataDir != "./data" {
		t.Errorf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
	if _, err := parse(nil, func(k string) string { return map[string]string{"INVENTORY_SHARDS": "many"}[k] }, io.Discard); err == nil {
		t.Error("a bad environment value was accepted")
	}
	var help bytes.Buffer
	parse([]string{"--help"}, func(string) string { return "" }, &help)
	for _, want := range []string{"-data-dir", "INVENTORY_DATA_DIR", "-admin-addr", "-retention"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
	bad := c
	bad.LogFormat = "xml"
	if err := bad.Validate(); err == nil {
		t.Error("log format xml accepted")
	}
}

// TestErrorsOverTheWire checks each refusal through the real binary: the
// status, the problem code and type, and that nothing changed.
func TestErrorsOverTheWire(t *testing.T) {
	s := start(t, t.TempDir())
	s.write("p", "seed", map[string]any{"type": "ADD", "quantity": 5})
	s.write("p", "hold", map[string]any{"type": "RESERVE", "quantity": 2, "reservation_id": "r1"})
	post := func(key, body string, headers ...string) response {
		return s.do("POST", "/v1/products/p/transactions", body, append([]string{"Idempotency-Key", key}, headers...)...)
	}
	cases := []struct {
		name   string
		r      func() response
		status int
		code   string
	}{
		{"insufficient stock", func() response { return post("a", `{"type":"REMOVE","quantity":9}`) }, 409, "insufficient_stock"},
		{"reservation exists", func() response { return post("b", `{"type":"RESERVE","quantity":1,"reservation_id":"r1"}`) }, 409, "reservation_exists"},
		{"not active", func() response { return post("c", `{"type":"RELEASE","reservation_id":"nope"}`) }, 409, "reservation_not_active"},
		{"commit exceeds hold", func() response { return post("d", `{"type":"COMMIT","reservation_id":"r1","quantity":3}`) }, 409, "commit_exceeds_hold"},
		{"version conflict", func() response { return post("e", `{"type":"ADD","quantity":1}`, "If-Match", `"9"`) }, 412, "version_conflict"},
		{"key reused", func() response { return post("seed", `{"type":"ADD","quantity":6}`) }, 422, "idempotency_key_reused"},
		{"no key", func() response { return s.do("POST", "/v1/products/p/transactions", `{"type":"ADD","quantity":1}`) }, 400, "invalid_request"},
		{"malformed JSON", func() response { return post("f", `{"type":"ADD",`) }, 400, "invalid_request"},
		{"wrong type", func() response { return post("g", `{"type":"ADD","quantity":"1"}`) }, 400, "invalid_request"},
		{"unknown field", func() response { return post("h", `{"type":"ADD","quantity":1,"qty":1}`) }, 400, "invalid_request"},
		{"quantity 0", func() response { return post("i", `{"type":"ADD","quantity":0}`) }, 400, "invalid_request"},
		{"bad product id", func() response {
			return s.do("POST", "/v1/products/a%20b/transactions", `{"type":"ADD","quantity":1}`, "Idempotency-Key", "j")
		}, 400, "invalid_request"},
		{"bad If-Match", func() response { return post("k", `{"type":"ADD","quantity":1}`, "If-Match", "1") }, 400, "invalid_request"},
		{"bad X-Actor", func() response { return post("l", `{"type":"ADD","quantity":1}`, "X-Actor", "a b") }, 400, "invalid_request"},
		{"oversized body", func() response {
			return post("m", `{"type":"ADD","quantity":1,"reason":"`+strings.Repeat("x", 70<<10)+`"}`)
		}, 413, "payload_too_large"},
		{"unknown product", func() response { return s.do("GET", "/v1/products/nothing", nil) }, 404, "not_found"},
		{"wrong method", func() response { return s.do("DELETE", "/v1/products/p", nil) }, 405, "method_not_allowed"},
		{"bad limit", func() response { return s.do("GET", "/v1/products/p/transactions?limit=0", nil) }, 400, "invalid_request"},
		{"empty batch", func() response { return s.do("POST", "/v1/batch", `{"atomic":false,"ops":[]}`) }, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r()
			if r.status != tc.status || r.body["code"] != tc.code || r.body["type"] != "urn:inventory:problem:"+tc.code ||
				!strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("got %d %s %q, want %d %s", r.status, r.header.Get("Content-Type"), r.raw, tc.status, tc.code)
			}
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	r := s.do("GET", "/v1/products/p", nil)
	if num(r.body["version"]) != 2 || num(r.body["on_hand"]) != 5 || num(r.body["reserved"]) != 2 {
		t.Errorf("refusals changed the product: %s", r.raw)
	}
	if r := s.do("GET", "/healthz", nil); r.status != 200 {
		t.Errorf("healthz after bad input: %d", r.status)
	}
	if r := s.do("GET", "/metrics", nil); r.status != 200 || !bytes.Contains(r.raw, []byte("inventory_rejections_total")) {
		t.Errorf("metrics: %d", r.status)
	}
}

// TestJSONByDefault: a JSON body is read as JSON whatever non-msgpack type
// it is sent with, as curl -d sends it.
func TestJSONByDefault(t *testing.T) {
	s := start(t, t.TempDir())
	for i, ct := range []string{"application/x-www-form-urlencoded", "text/plain", ""} {
		req, _ := http.NewRequest("POST", s.url+"/v1/products/p/transactions", strings.NewReader(`{"type":"ADD","quantity":1}`))
		req.Header.Set("Idempotency-Key", fmt.Sprintf("k%d", i))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Errorf("Content-Type %q: %d", ct, resp.StatusCode)
		}
	}
}

// TestLimitExceeded fills a product to exactly 10^15 with batches of the
// largest quantity, then one more unit is refused with limit_exceeded.
func TestLimitExceeded(t *testing.T) {
	s := start(t, t.TempDir())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for b := w; b < 1000; b += 4 {
				status, err := postDiscard(client, s.url+"/v1/batch", addBatch([]string{"full"}, 1_000_000_000, fmt.Sprintf("f%d", b)))
				if err != nil || status != 200 {
					t.Errorf("batch %d: %d %v", b, status, err)
					return
				}
			}
		})
	}
	wg.Wait()
	r := s.do("GET", "/v1/products/full", nil)
	if num(r.body["on_hand"]) != 1_000_000_000_000_000 {
		t.Fatalf("on hand %v after a million ADDs of 10^9", r.body["on_hand"])
	}
	r = s.write("full", "one-more", map[string]any{"type": "ADD", "quantity": 1})
	if r.status != 409 || r.body["code"] != "limit_exceeded" {
		t.Errorf("past 10^15: %d %s", r.status, r.raw)
	}
	r = s.write("full", "return", map[string]any{"type": "RETURN", "quantity": 1})
	if r.status != 409 || r.body["code"] != "limit_exceeded" {
		t.Errorf("RETURN past 10^15: %d %s", r.status, r.raw)
	}
	if r := s.do("GET", "/openapi.json", nil); r.status != 200 || r.body["openapi"] == nil {
		t.Errorf("openapi.json: %d", r.status)
	}
}
