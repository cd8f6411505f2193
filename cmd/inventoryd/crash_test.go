package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// call is one write sent to the server, with what came back.
type call struct {
	path, key, body string
	status          int      // 0: no answer (the server died): outcome unknown
	ids             []string // entry ids of a 2xx answer
	problem         string   // the body of a 4xx or 5xx answer
	batch           []string // an atomic batch's idempotency keys
}

// send posts c and records the answer; a transport error leaves status 0.
func (c *call) send(client *http.Client, url string) {
	req, _ := http.NewRequest("POST", url+c.path, strings.NewReader(c.body))
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		req.Header.Set("Idempotency-Key", c.key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return
	}
	c.status = resp.StatusCode
	c.ids = entryIDs(raw)
	if c.status >= 400 {
		c.problem = string(raw)
	}
}

// entryIDs returns the ids of the entries a write or batch answer carries.
func entryIDs(raw []byte) []string {
	var one struct {
		Transactions []struct{ ID string } `json:"transactions"`
		Results      []struct {
			Transactions []struct{ ID string } `json:"transactions"`
		} `json:"results"`
	}
	json.Unmarshal(raw, &one)
	var ids []string
	for _, e := range one.Transactions {
		ids = append(ids, e.ID)
	}
	for _, r := range one.Results {
		for _, e := range r.Transactions {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// TestCrashLoop kills the server with SIGKILL at random moments while
// clients write (adds, reservations, commits, releases, atomic batches),
// restarts it and checks: every acknowledged write is there exactly once
// with the same entries; a retry of a request whose answer was lost
// resolves to one application; the ledgers add up. INVENTORY_SOAK=N runs N
// kills instead of 30.
func TestCrashLoop(t *testing.T) {
	kills := 30
	if n, err := strconv.Atoi(os.Getenv("INVENTORY_SOAK")); err == nil && n > 0 {
		kills = n
	}
	dir := t.TempDir()
	const products = 6
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	s := start(t, dir)
	for p := 0; p < products; p++ {
		c := &call{path: fmt.Sprintf("/v1/products/p%d/transactions", p), key: "seed", body: `{"type":"ADD","quantity":1000000}`}
		c.send(client, s.url)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var acked, batches []*call
	for k := 0; k < kills; k++ {
		var mu sync.Mutex
		var calls []*call
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(k), uint64(w)))
				var holds []string // reservation ids this worker holds, as "p/id"
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					p := fmt.Sprintf("p%d", r.IntN(products))
					key := fmt.Sprintf("k%d-w%d-%d", k, w, i)
					c := &call{path: "/v1/products/" + p + "/transactions", key: key}
					switch n := r.IntN(10); {
					case n < 2:
						c.body = `{"type":"ADD","quantity":3}`
					case n < 5:
						c.body = fmt.Sprintf(`{"type":"RESERVE","quantity":1,"reservation_id":%q}`, key)
					case n < 7 && len(holds) > 0:
						h := holds[len(holds)-1]
						holds = holds[:len(holds)-1]
						hp, hid, _ := strings.Cut(h, "/")
						c.path = "/v1/products/" + hp + "/transactions"
						if n == 5 {
							c.body = fmt.Sprintf(`{"type":"COMMIT","reservation_id":%q}`, hid)
						} else {
							c.body = fmt.Sprintf(`{"type":"RELEASE","reservation_id":%q}`, hid)
						}
					default:
						// A cart that also restocks and takes stock away,
						// across shards: all of it or none, whatever the kill.
						c.path, c.key = "/v1/batch", ""
						c.body = fmt.Sprintf(`{"atomic":true,"ops":[`+
							`{"product_id":"p%d","type":"RESERVE","quantity":1,"reservation_id":"%s-a","idempotency_key":"%s-a"},`+
							`{"product_id":"p%d","type":"ADD","quantity":2,"idempotency_key":"%s-b"},`+
							`{"product_id":"p%d","type":"REMOVE","quantity":1,"idempotency_key":"%s-c"}]}`,
							r.IntN(products), key, key, r.IntN(products), key, r.IntN(products), key)
						c.batch = []string{key + "-a", key + "-b", key + "-c"}
					}
					c.send(client, s.url)
					mu.Lock()
					calls = append(calls, c)
					mu.Unlock()
					if c.status == 0 {
						return // the server is gone
					}
					if c.status == 201 && strings.Contains(c.body, `"RESERVE"`) && c.key != "" {
						holds = append(holds, p+"/"+c.key)
					}
				}
			})
		}
		time.Sleep(time.Duration(30+rng.IntN(200)) * time.Millisecond)
		s.kill()
		close(stop)
		wg.Wait()
		s = start(t, dir)
		// Before any retry (a retry with the same keys would complete a
		// half-applied batch), each atomic batch of this round is wholly
		// in the ledgers or wholly out.
		var round []*call
		for _, c := range calls {
			if c.batch != nil {
				round = append(round, c)
			}
		}
		halfApplied(t, fmt.Sprintf("kill %d", k), s, products, round)
		batches = append(batches, round...)

		// Every acknowledged write replays with its original entries, and
		// every write whose answer was lost resolves to one application.
		for _, c := range calls {
			switch {
			case c.status/100 == 2:
				again := &call{path: c.path, key: c.key, body: c.body}
				again.send(client, s.url)
				if again.status != 200 || strings.Join(again.ids, ",") != strings.Join(c.ids, ",") {
					t.Fatalf("kill %d: acknowledged %s %s: retry got %d %v %s, want 200 %v", k, c.key, c.body, again.status, again.ids, again.problem, c.ids)
				}
				acked = append(acked, c)
			case c.status == 0:
				first := &call{path: c.path, key: c.key, body: c.body}
				first.send(client, s.url)
				if first.status/100 != 2 && first.status != 409 {
					t.Fatalf("kill %d: retry of a lost answer %s: %d", k, c.body, first.status)
				}
				if first.status/100 == 2 {
					second := &call{path: c.path, key: c.key, body: c.body}
					second.send(client, s.url)
					if second.status != 200 || strings.Join(second.ids, ",") != strings.Join(first.ids, ",") {
						t.Fatalf("kill %d: second retry %s: %d %v, want 200 %v", k, c.body, second.status, second.ids, first.ids)
					}
					acked = append(acked, first)
				}
			}
		}
	}
	// Every acknowledged entry is in its ledger exactly once, at one version,
	// and every ledger adds up.
	seen := map[string]int{}
	for p := 0; p < products; p++ {
		for _, e := range ledger(t, s, fmt.Sprintf("p%d", p)) {
			seen[e.ID]++
		}
	}
	half := halfApplied(t, "at the end", s, products, batches)
	n := 0
	for _, c := range acked {
		for _, id := range c.ids {
			n++
			if seen[id] != 1 {
				t.Errorf("acknowledged entry %s appears %d times", id, seen[id])
			}
		}
	}
	t.Logf("%d kills, %d acknowledged writes, %d entries checked, %d atomic batches of which %d half applied", kills, len(acked), n, len(batches), half)
}

// halfApplied reports every atomic batch of batches that is neither wholly
// in the ledgers of the products nor wholly out, and returns how many.
func halfApplied(t *testing.T, when string, s *server, products int, batches []*call) int {
	t.Helper()
	keys := map[string]bool{}
	for p := 0; p < products; p++ {
		for _, e := range ledger(t, s, fmt.Sprintf("p%d", p)) {
			keys[e.IdempotencyKey] = true
		}
	}
	half := 0
	for _, c := range batches {
		n := 0
		for _, k := range c.batch {
			if keys[k] {
				n++
			}
		}
		if n != 0 && n != len(c.batch) {
			half++
			t.Errorf("%s: atomic batch %v half applied: %d of %d ops (answer %d %s)", when, c.batch, n, len(c.batch), c.status, c.problem)
		}
	}
	return half
}

type ledgerEntry struct {
	ID            string `json:"id"`
	Type          string `json:"type"`
	ReservationID string `json:"reservation_id"`
	Quantity      int64  `json:"quantity"`
	Delta         int64  `json:"delta"`
	OnHand        int64  `json:"on_hand"`
	Reserved      int64  `json:"reserved"`
	Version       int64  `json:"version"`
	// IdempotencyKey is empty for entries the service wrote itself.
	IdempotencyKey string `json:"idempotency_key"`
}

// ledger reads a product's whole ledger and checks DESIGN.md's invariants
// that one ledger shows: balances are the running sums and never negative,
// versions run 1..n, and each hold is settled at most once, after it was
// made (no partial commits here, so every COMMIT or RELEASE settles one).
func ledger(t *testing.T, s *server, product string) []ledgerEntry {
	t.Helper()
	var all []ledgerEntry
	after := int64(0)
	for {
		r := s.do("GET", fmt.Sprintf("/v1/products/%s/transactions?after=%d&limit=1000", product, after), nil)
		var page struct {
			Transactions []ledgerEntry `json:"transactions"`
			NextAfter    int64         `json:"next_after"`
		}
		if r.status != 200 || json.Unmarshal(r.raw, &page) != nil {
			t.Fatalf("history of %s: %d %s", product, r.status, r.raw)
		}
		all = append(all, page.Transactions...)
		if page.NextAfter == 0 {
			break
		}
		after = page.NextAfter
	}
	var onHand, reserved int64
	holds := map[string]int{} // 1 held, 2 settled
	for i, e := range all {
		switch e.Type {
		case "RESERVE":
			if holds[e.ReservationID] != 0 {
				t.Fatalf("%s: hold %s made twice", product, e.ReservationID)
			}
			holds[e.ReservationID] = 1
		case "COMMIT", "RELEASE":
			if holds[e.ReservationID] != 1 {
				t.Fatalf("%s: hold %s settled while in state %d", product, e.ReservationID, holds[e.ReservationID])
			}
			holds[e.ReservationID] = 2
		}
		switch e.Type {
		case "ADD", "RETURN":
			onHand += e.Quantity
		case "REMOVE":
			onHand -= e.Quantity
		case "RESERVE":
			reserved += e.Quantity
		case "COMMIT":
			onHand -= e.Quantity
			reserved -= e.Quantity
		case "RELEASE":
			reserved -= e.Quantity
		}
		if e.Version != int64(i+1) || e.OnHand != onHand || e.Reserved != reserved || onHand-reserved < 0 {
			t.Fatalf("%s entry %d: %+v, sums on_hand %d reserved %d", product, i, e, onHand, reserved)
		}
	}
	return all
}
