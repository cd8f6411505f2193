package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability model: per product, on_hand, reserved and the active
// holds (every RESERVE is of 1 unit with a fresh reservation id).
type linState struct {
	onHand, reserved int64
	active           map[string]bool
}

type linOp struct {
	product string
	kind    string // ADD, RESERVE, COMMIT, RELEASE, READ
	rid     string
	qty     int64
}

type linOut struct {
	unknown          bool   // timeout or 5xx: it may or may not have happened
	code             string // "" on success, else the problem code
	onHand, reserved int64  // READ
}

func (s linState) with(onHand, reserved int64, rid string, active bool) linState {
	n := linState{onHand: onHand, reserved: reserved, active: maps.Clone(s.active)}
	if active {
		n.active[rid] = true
	} else {
		delete(n.active, rid)
	}
	return n
}

// linStep returns the state after op succeeds, and whether it can.
func linStep(s linState, op linOp) (linState, bool) {
	switch op.kind {
	case "ADD":
		return s.with(s.onHand+op.qty, s.reserved, "", false), true
	case "RESERVE":
		if s.onHand-s.reserved < 1 {
			return s, false
		}
		return s.with(s.onHand, s.reserved+1, op.rid, true), true
	case "COMMIT":
		if !s.active[op.rid] {
			return s, false
		}
		return s.with(s.onHand-1, s.reserved-1, op.rid, false), true
	case "RELEASE":
		if !s.active[op.rid] {
			return s, false
		}
		return s.with(s.onHand, s.reserved-1, op.rid, false), true
	}
	return s, true
}

var inventoryModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, o := range h {
			p := o.Input.(linOp).product
			by[p] = append(by[p], o)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() []any { return []any{linState{active: map[string]bool{}}} },
	Step: func(state, input, output any) []any {
		s, op, out := state.(linState), input.(linOp), output.(linOut)
		next, ok := linStep(s, op)
		switch {
		case out.unknown:
			if ok {
				return []any{s, next}
			}
			return []any{s}
		case op.kind == "READ":
			if out.code == "" && s.onHand == out.onHand && s.reserved == out.reserved {
				return []any{s}
			}
			return nil
		case out.code == "" && ok:
			return []any{next}
		case op.kind == "RESERVE" && out.code == "insufficient_stock" && !ok:
			return []any{s}
		case (op.kind == "COMMIT" || op.kind == "RELEASE") && out.code == "reservation_not_active" && !ok:
			return []any{s}
		}
		return nil
	},
	Equal: func(a, b any) bool {
		x, y := a.(linState), b.(linState)
		return x.onHand == y.onHand && x.reserved == y.reserved && maps.Equal(x.active, y.active)
	},
	DescribeOperation: func(input, output any) string {
		return fmt.Sprintf("%+v -> %+v", input, output)
	},
}

// history drives random ops from clients against url for d and records them.
func history(t *testing.T, url string, clients int, products []string, d time.Duration) []porcupine.Operation {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 2 * time.Second}
	start := time.Now()
	var mu sync.Mutex
	var ops []porcupine.Operation
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 77))
			var mine []string
			for i := 0; time.Since(start) < d; i++ {
				// Holds contend on products[0]; restocks and reads go anywhere.
				op := linOp{product: products[0]}
				switch n := r.IntN(20); {
				case n < 2:
					op.kind, op.qty, op.product = "ADD", 1, products[r.IntN(len(products))]
				case n < 10:
					op.kind, op.rid = "RESERVE", fmt.Sprintf("c%d-%d", c, i)
				case n < 16:
					op.kind = "COMMIT"
					if n >= 13 {
						op.kind = "RELEASE"
					}
					// Mostly a hold of this client, sometimes an id that may
					// never have been reserved or is already settled.
					op.rid = fmt.Sprintf("c%d-%d", c, r.IntN(i+1))
					if len(mine) > 0 && r.IntN(2) == 0 {
						op.rid = mine[r.IntN(len(mine))]
					}
				default:
					op.kind, op.product = "READ", products[r.IntN(len(products))]
				}
				call := time.Since(start).Nanoseconds()
				out := linDo(client, url, op, fmt.Sprintf("c%d-%d", c, i))
				ret := time.Since(start).Nanoseconds()
				if out.unknown {
					ret = d.Nanoseconds() * 1000 // may take effect any time after its call
				}
				if op.kind == "RESERVE" && out.code == "" {
					mine = append(mine, op.rid)
				}
				mu.Lock()
				ops = append(ops, porcupine.Operation{ClientId: c, Input: op, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ops
}

func linDo(client *http.Client, url string, op linOp, key string) linOut {
	var req *http.Request
	if op.kind == "READ" {
		req, _ = http.NewRequest("GET", url+"/v1/products/"+op.product, nil)
	} else {
		body := fmt.Sprintf(`{"type":%q,"quantity":%d}`, op.kind, op.qty)
		if op.rid != "" {
			body = fmt.Sprintf(`{"type":%q,"reservation_id":%q%s}`, op.kind, op.rid, map[bool]string{true: `,"quantity":1`}[op.kind == "RESERVE"])
		}
		req, _ = http.NewRequest("POST", url+"/v1/products/"+op.product+"/transactions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
	}
	return linSend(client, req)
}

// linSend sends req and returns its outcome: a transport error, a 5xx or a
// body that does not decode is an unknown outcome.
func linSend(client *http.Client, req *http.Request) linOut {
	resp, err := client.Do(req)
	if err != nil {
		return linOut{unknown: true}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 {
		return linOut{unknown: true}
	}
	var body struct {
		Code     string `json:"code"`
		OnHand   int64  `json:"on_hand"`
		Reserved int64  `json:"reserved"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return linOut{unknown: true}
	}
	return linOut{code: body.Code, onHand: body.OnHand, reserved: body.Reserved}
}

// linearizable runs a workload against the binary bin and checks it.
func linearizable(t *testing.T, bin string) porcupine.CheckResult {
	t.Helper()
	old := binary
	binary = bin
	s := start(t, t.TempDir())
	binary = old
	products := []string{"hot", "cold-1", "cold-2"}
	for _, p := range products {
		if r := s.write(p, "seed", map[string]any{"type": "ADD", "quantity": 3}); r.status != 201 {
			t.Fatalf("seed %s: %d", p, r.status)
		}
	}
	ops := history(t, s.url, 8, products, 1500*time.Millisecond)
	// The seeds happened before everything.
	for i, p := range products {
		ops = append(ops, porcupine.Operation{ClientId: 8 + i, Input: linOp{product: p, kind: "ADD", qty: 3}, Call: -2, Output: linOut{}, Return: -1})
	}
	res := porcupine.CheckOperationsTimeout(inventoryModel.ToModel(), ops, 30*time.Second)
	t.Logf("%d operations checked: %s", len(ops), res)
	return res
}

// TestLinearizable records concurrent histories of reservations, commits,
// releases, restocks and reads against the real server and checks them with
// porcupine against a model of API.md's rules.
func TestLinearizable(t *testing.T) {
	if res := linearizable(t, binary); res != porcupine.Ok {
		t.Errorf("history is %s, want Ok", res)
	}
}

// TestLinearizabilityCatchesOverselling is the checker's negative control:
// a build that skips the stock check must be caught.
func TestLinearizabilityCatchesOverselling(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "inventoryd-broken")
	if out, err := exec.Command("go", "build", "-tags", "inventory_broken", "-o", broken, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if res := linearizable(t, broken); res != porcupine.Illegal {
		t.Errorf("history of an overselling server is %s, want Illegal", res)
	}
}
