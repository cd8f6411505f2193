package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
)

// TestSecondProcessRefused starts a second inventoryd on a data directory a
// first one serves: it must exit at once, naming the directory and the
// first one's PID, and leave the first serving. Once the first is gone
// (even by SIGKILL), the directory opens again.
func TestSecondProcessRefused(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	if r := s.write("p1", "k1", map[string]any{"type": "ADD", "quantity": 5}); r.status != 201 {
		t.Fatalf("write: %d %s", r.status, r.raw)
	}
	cmd := exec.Command(binary, "--addr", freePort(t), "--data-dir", dir, "--shards", "4")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the second process did not exit; output:\n%s", out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("second process: err %v, want a non-zero exit; output:\n%s", err, out)
	}
	for _, want := range []string{dir, "process " + strconv.Itoa(s.cmd.Process.Pid), "in use"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("refusal %q does not name %q", out, want)
		}
	}
	if r := s.write("p1", "k2", map[string]any{"type": "ADD", "quantity": 5}); r.status != 201 {
		t.Errorf("the first process after the refusal: %d %s", r.status, r.raw)
	}
	s.kill()
	s = start(t, dir)
	if r := s.do("GET", "/v1/products/p1", nil); r.status != 200 || num(r.body["on_hand"]) != 10 {
		t.Errorf("after a restart: %d %s, want on hand 10", r.status, r.raw)
	}
}

// TestBadFlags refuses every out-of-range flag at start, naming the flag and
// its range, before it creates or touches the data directory.
func TestBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		env  string
		want string
	}{
		{args: []string{"--shards", "0"}, want: "--shards must be 1 to 16384, got 0"},
		{args: []string{"--shards", "20000"}, want: "--shards must be 1 to 16384"},
		{env: "INVENTORY_SHARDS=0", want: "--shards must be 1 to 16384, got 0"},
		{args: []string{"--retention", "0s"}, want: "--retention must be 1s to 8760h0m0s, got 0s"},
		{args: []string{"--retention", "-1h"}, want: "--retention must be 1s"},
		{args: []string{"--queue-depth", "0"}, want: "--queue-depth must be 1 to 1048576, got 0"},
		{args: []string{"--segment-bytes", "10"}, want: "--segment-bytes must be 65536 to 12582912, got 10"},
		{args: []string{"--segment-bytes", "0"}, want: "--segment-bytes must be 65536"},
		{args: []string{"--batch-ops-max", "10"}, want: "--batch-ops-max must be 1000 to 65536, got 10"},
		{args: []string{"--max-header-bytes", "0"}, want: "--max-header-bytes must be 4096"},
		{args: []string{"--read-timeout", "0s"}, want: "--read-timeout must be positive, got 0s"},
		{args: []string{"--idle-timeout", "-1s"}, want: "--idle-timeout must be positive"},
		{args: []string{"--shutdown-timeout", "30s"}, want: "--shutdown-timeout must leave time"},
		{args: []string{"--max-conns", "0"}, want: "--max-conns must be at least 1, got 0"},
		{args: []string{"--max-conns", "100000000"}, want: "--max-conns must be 1 to"},
		{args: []string{"--max-conns", "many"}, want: "invalid value \"many\" for flag -max-conns"},
	}
	for _, c := range cases {
		name := strings.Join(c.args, "=") + c.env
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, append([]string{"--addr", "127.0.0.1:0", "--data-dir", dir}, c.args...)...)
			if c.env != "" {
				cmd.Env = append(os.Environ(), c.env)
			}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("started; output:\n%s", out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("refusal %q does not say %q", out, c.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused start created the data directory (%v)", err)
			}
		})
	}
}

// TestDescriptorExhaustion runs inventoryd under a low RLIMIT_NOFILE with
// small WAL segments and floods it with silent connections, more than its
// descriptors could hold. The connection limit keeps a descriptor for every
// segment rollover: writes keep succeeding (the limiter sheds silent
// connections to let the writer's in), no shard fails, and once the flood
// leaves, new connections write too, without a restart.
func TestDescriptorExhaustion(t *testing.T) {
	dir := t.TempDir()
	s := launch(t, dir, exec.Command("sh", "-c", `ulimit -n 160 && exec "$0" "$@"`, binary, "--addr", "127.0.0.1:0", "--data-dir", dir,
		"--shards", "2", "--segment-bytes", "65536", "--read-header-timeout", "60s"))
	// One keep-alive connection, accepted before the flood, does the writes.
	writer := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	if code := get(t, writer, s.url+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d", code)
	}
	addr := strings.TrimPrefix(s.url, "http://")

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range 300 { // 300 sockets alone would need more than 160 descriptors
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		flood = append(flood, c)
	}
	time.Sleep(200 * time.Millisecond) // let the server accept what it will

	reason := strings.Repeat("r", 250) // ~0.5 KiB entries: a 64 KiB segment every ~120
	write := func(c *http.Client, key string) (int, string) {
		body := fmt.Sprintf(`{"type":"ADD","quantity":1,"reason":%q}`, reason)
		req, _ := http.NewRequest("POST", s.url+"/v1/products/p"+strconv.Itoa(len(key)%7)+"/transactions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		bufio.NewReader(resp.Body).WriteTo(b)
		return resp.StatusCode, b.String()
	}
	for i := range 1500 {
		if code, body := write(writer, fmt.Sprintf("during-%d", i)); code != 201 {
			t.Fatalf("write %d during the flood: %d %s; logs:\n%s", i, code, body, s.logs)
		}
	}
	if code := get(t, writer, s.url+"/readyz"); code != 200 {
		t.Errorf("/readyz during the flood: %d", code)
	}
	segments, _ := filepath.Glob(filepath.Join(shard.ShardDir(dir, 0), "0*"))
	if len(segments) < 4 {
		t.Errorf("shard 0 has %d segments: the writes did not roll over", len(segments))
	}
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	for i := range 200 {
		fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		if code, body := write(fresh, fmt.Sprintf("after-%d", i)); code != 201 {
			t.Fatalf("write %d after the flood: %d %s", i, code, body)
		}
	}
	if code := get(t, writer, s.url+"/readyz"); code != 200 {
		t.Errorf("/readyz after the flood: %d", code)
	}
	if strings.Contains(s.logs.String(), "shard failed") {
		t.Errorf("a shard failed; logs:\n%s", s.logs)
	}
}

// TestGaugesAfterRestart checks that a restarted service reports its active
// holds before any write.
func TestGaugesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	for i := range 5 {
		p := fmt.Sprintf("p%d", i)
		s.write(p, "stock", map[string]any{"type": "ADD", "quantity": 10})
		if r := s.write(p, "hold", map[string]any{"type": "RESERVE", "quantity": 1, "reservation_id": "o1", "ttl_seconds": 3600}); r.status != 201 {
			t.Fatalf("reserve: %d %s", r.status, r.raw)
		}
	}
	if got := metric(t, s, "inventory_reservations_active"); got != 5 {
		t.Errorf("before the restart: %v active holds, want 5", got)
	}
	s.kill()
	s = start(t, dir)
	if got := metric(t, s, "inventory_reservations_active"); got != 5 {
		t.Errorf("after the restart, before any write: %v active holds, want 5", got)
	}
}

// metric returns the value of an unlabelled metric from /metrics.
func metric(t *testing.T, s *server, name string) float64 {
	t.Helper()
	r := s.do("GET", "/metrics", nil)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(r.raw)
	if m == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func get(t *testing.T, c *http.Client, url string) int {
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	bufio.NewReader(resp.Body).WriteTo(new(strings.Builder))
	return resp.StatusCode
}

// TestKeepsShardCountOfExistingDir starts on a directory made with 4 shards
// without --shards: the directory's count applies, the default only to a
// new directory. A --shards that differs is still refused.
func TestKeepsShardCountOfExistingDir(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir) // --shards 4
	s.write("p1", "k1", map[string]any{"type": "ADD", "quantity": 5})
	s.kill()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--addr", "127.0.0.1:0", "--data-dir", dir)
	logs := &logBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	eventuallyLog(t, logs, "replay done")
	if !strings.Contains(logs.String(), "shards=4") {
		t.Errorf("started without --shards on a 4-shard directory; logs:\n%s", logs)
	}
}

// eventuallyLog waits until logs holds want.
func eventuallyLog(t *testing.T, logs *logBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the logs:\n%s", want, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRejectionsOverTheWire scrapes /metrics of the real binary after each
// kind of refusal: inventory_rejections_total{code} moves by exactly one, for
// the refusals the HTTP layer answers as for the engine's.
func TestRejectionsOverTheWire(t *testing.T) {
	s := start(t, t.TempDir())
	s.write("p", "stock", map[string]any{"type": "ADD", "quantity": 1})
	rejections := func() map[string]float64 {
		r := s.do("GET", "/metrics", nil)
		out := map[string]float64{}
		for _, m := range regexp.MustCompile(`(?m)^inventory_rejections_total\{code="(\w+)"\} (\S+)$`).FindAllSubmatch(r.raw, -1) {
			v, _ := strconv.ParseFloat(string(m[2]), 64)
			out[string(m[1])] = v
		}
		return out
	}
	cases := []struct {
		code string
		send func() response
	}{
		{"invalid_request", func() response {
			return s.do("POST", "/v1/products/p/transactions", `{"type":`, "Idempotency-Key", "k1")
		}},
		{"invalid_request", func() response { return s.do("POST", "/v1/products/p/transactions", `{"type":"ADD","quantity":1}`) }},
		{"not_found", func() response { return s.do("GET", "/v1/products/nothing", nil) }},
		{"not_found", func() response { return s.do("GET", "/no/such/route", nil) }},
		{"method_not_allowed", func() response { return s.do("DELETE", "/v1/products/p", nil) }},
		{"insufficient_stock", func() response { return s.write("p", "k2", map[string]any{"type": "REMOVE", "quantity": 5}) }},
		{"version_conflict", func() response {
			return s.do("POST", "/v1/products/p/transactions", `{"type":"ADD","quantity":1}`, "Idempotency-Key", "k3", "If-Match", `"9"`)
		}},
		{"idempotency_key_reused", func() response { return s.write("p", "stock", map[string]any{"type": "ADD", "quantity": 2}) }},
		{"payload_too_large", func() response {
			return s.do("POST", "/v1/products/p/transactions", strings.Repeat(" ", 70<<10), "Idempotency-Key", "k4")
		}},
	}
	for i, c := range cases {
		before := rejections()
		r := c.send()
		if r.status < 400 {
			t.Fatalf("case %d (%s): status %d", i, c.code, r.status)
		}
		after := rejections()
		for code, v := range after {
			want := before[code]
			if code == c.code {
				want++
			}
			if v != want {
				t.Errorf("case %d (%s, status %d): inventory_rejections_total{code=%q} %v, want %v", i, c.code, r.status, code, v, want)
			}
		}
		if _, ok := after[c.code]; !ok {
			t.Errorf("case %d: no inventory_rejections_total{code=%q}", i, c.code)
		}
	}
}

// TestIdleConnectionsShed fills --max-conns with idle keep-alive
// connections, as a careless or hostile client can: a new client must
// still be served, within seconds rather than --idle-timeout, because the
// server closes the connection idle longest to make room.
func TestIdleConnectionsShed(t *testing.T) {
	const slots = 20
	s := start(t, t.TempDir(), "--max-conns", strconv.Itoa(slots), "--idle-timeout", "5m")
	addr := strings.TrimPrefix(s.url, "http://")
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range slots {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("idle client's request: %v", err)
		}
		resp.Body.Close() // the connection stays open, idle
	}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 5 {
		req, _ := http.NewRequest("POST", s.url+"/v1/products/p/transactions", strings.NewReader(`{"type":"ADD","quantity":1}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("fresh-%d", i))
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatalf("write %d with every slot held by an idle connection: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("write %d: %d", i, resp.StatusCode)
		}
	}
}
