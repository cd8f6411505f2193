package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOverload offers far more than the server can take — 1000-op batches
// from 64 clients against a queue of 8 — and checks that the excess is
// refused at once with 503 overloaded and Retry-After, that memory and the
// latency of admitted requests stay bounded, that exactly the acknowledged
// ops were applied, and that full service returns when the load drops.
func TestOverload(t *testing.T) {
	s := start(t, t.TempDir(), "--queue-depth", "8", "--shards", "4")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	var applied, refusedOps, overloaded, admitted atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				body := addBatch([]string{"p0", "p1"}, 1, fmt.Sprintf("w%d-%d", w, i))
				req, _ := http.NewRequest("POST", s.url+"/v1/batch", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var out struct {
					Code    string `json:"code"`
					Results []struct {
						Status int `json:"status"`
						Error  struct {
							Code string `json:"code"`
						} `json:"error"`
					} `json:"results"`
				}
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200:
					mu.Lock()
					latencies = append(latencies, time.Since(t0))
					mu.Unlock()
					admitted.Add(1)
					for _, r := range out.Results {
						switch {
						case r.Status == 201:
							applied.Add(1)
						case r.Status == 503 && r.Error.Code == "overloaded":
							refusedOps.Add(1)
						default:
							t.Errorf("op answered %d %s", r.Status, r.Error.Code)
						}
					}
				case resp.StatusCode == 503 && out.Code == "overloaded" && resp.Header.Get("Retry-After") != "":
					overloaded.Add(1)
				default:
					t.Errorf("batch answered %d %s (Retry-After %q)", resp.StatusCode, out.Code, resp.Header.Get("Retry-After"))
				}
			}
		})
	}
	wg.Wait()
	if overloaded.Load()+refusedOps.Load() == 0 {
		t.Fatal("never overloaded: the test offers too little")
	}
	slices.Sort(latencies)
	if len(latencies) == 0 {
		t.Fatal("nothing admitted")
	}
	p99 := latencies[len(latencies)*99/100]
	if max := latencies[len(latencies)-1]; max > 5*time.Second {
		t.Errorf("an admitted batch took %s", max)
	}
	rss := peakRSS(t, s.cmd.Process.Pid)
	if rss > 1<<30 {
		t.Errorf("peak RSS %d MiB", rss>>20)
	}
	t.Logf("admitted %d batches (p99 %s), %d refused whole, %d ops refused inside admitted batches, %d ops applied, peak RSS %d MiB",
		admitted.Load(), p99.Round(time.Millisecond), overloaded.Load(), refusedOps.Load(), applied.Load(), rss>>20)

	// Exactly the acknowledged ops were applied.
	var onHand int64
	for p := 0; p < 2; p++ {
		r := s.do("GET", fmt.Sprintf("/v1/products/p%d", p), nil)
		onHand += num(r.body["on_hand"])
	}
	if onHand != applied.Load() {
		t.Errorf("on hand %d, acknowledged ADDs of 1: %d", onHand, applied.Load())
	}
	// The load drops: everything is served again.
	for i := 0; i < 50; i++ {
		if r := s.write("p0", fmt.Sprintf("calm-%d", i), map[string]any{"type": "ADD", "quantity": 1}); r.status != 201 {
			t.Fatalf("after the overload: %d %s", r.status, r.raw)
		}
	}
}

// peakRSS returns the process's peak resident set size in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
