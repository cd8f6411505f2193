package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/inventory-ledger/inventory/shard"
)

// The cart model: the balances of a few products, on different shards, in
// one partition, so that a cart (an atomic batch holding one unit of two of
// them) must take effect on both at one instant, and a read of either must
// see it wholly or not at all.
const cartProducts = 3

type cartState [cartProducts]struct{ onHand, reserved int64 }

type cartOp struct {
	kind  string // CART, ADD, READ
	items []int  // CART: two product indexes; ADD, READ: one
}

// cartOut is an op's outcome, as for the single-product model.
type cartOut = linOut

// cartStep returns the state after op succeeds, and whether it can.
func cartStep(s cartState, op cartOp) (cartState, bool) {
	switch op.kind {
	case "CART":
		for _, i := range op.items {
			if s[i].onHand-s[i].reserved < 1 {
				return s, false
			}
		}
		for _, i := range op.items {
			s[i].reserved++
		}
	case "ADD":
		s[op.items[0]].onHand++
	}
	return s, true
}

var cartModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{cartState{}} },
	Step: func(state, input, output any) []any {
		s, op, out := state.(cartState), input.(cartOp), output.(cartOut)
		next, ok := cartStep(s, op)
		switch {
		case out.unknown:
			if ok {
				return []any{s, next}
			}
			return []any{s}
		case op.kind == "READ":
			p := s[op.items[0]]
			if out.code == "" && p.onHand == out.onHand && p.reserved == out.reserved {
				return []any{s}
			}
			return nil
		case out.code == "" && ok:
			return []any{next}
		case op.kind == "CART" && out.code == "insufficient_stock" && !ok:
			return []any{s}
		}
		return nil
	},
	Equal: func(a, b any) bool { return a.(cartState) == b.(cartState) },
	DescribeOperation: func(input, output any) string {
		return fmt.Sprintf("%+v -> %+v", input, output)
	},
}

// TestLinearizableCarts records concurrent carts (atomic batches across
// shards), restocks and reads of products on different shards against the
// real server, and checks with porcupine that every cart took effect on all
// its products at one instant: no read saw half a cart, and no cart was
// refused or accepted against stock that was not there.
func TestLinearizableCarts(t *testing.T) {
	if res, carts := linearizableCarts(t, binary); res != porcupine.Ok || carts == 0 {
		t.Errorf("history is %s with %d carts applied, want Ok with some", res, carts)
	}
}

// TestLinearizableCartsCatchesOverselling is the negative control: carts on
// a build that skips the stock check must be caught.
func TestLinearizableCartsCatchesOverselling(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "inventoryd-broken")
	if out, err := exec.Command("go", "build", "-tags", "inventory_broken", "-o", broken, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if res, _ := linearizableCarts(t, broken); res != porcupine.Illegal {
		t.Errorf("history of an overselling server is %s, want Illegal", res)
	}
}

// linearizableCarts records a history of carts, restocks and reads against
// the binary bin and checks it; it returns the verdict and the carts applied.
func linearizableCarts(t *testing.T, bin string) (porcupine.CheckResult, int) {
	t.Helper()
	old := binary
	binary = bin
	s := start(t, t.TempDir())
	binary = old
	var products []string
	seen := map[int]bool{}
	for i := 0; len(products) < cartProducts; i++ {
		p := fmt.Sprintf("cart-%d", i)
		if sh := shard.Route(p, 4); !seen[sh] {
			seen[sh] = true
			products = append(products, p)
		}
	}
	const clients = 8
	var mu sync.Mutex
	var ops []porcupine.Operation
	for i, p := range products {
		if r := s.write(p, "seed", map[string]any{"type": "ADD", "quantity": 2}); r.status != 201 {
			t.Fatalf("seed %s: %d", p, r.status)
		}
		for range 2 { // the seed, as two ADDs before everything
			ops = append(ops, porcupine.Operation{ClientId: clients + i, Input: cartOp{kind: "ADD", items: []int{i}}, Call: -2, Output: cartOut{}, Return: -1})
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 2 * time.Second}
	start := time.Now()
	const d = 1500 * time.Millisecond
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 91))
			for i := 0; time.Since(start) < d; i++ {
				var op cartOp
				switch n := r.IntN(10); {
				case n < 5:
					a := r.IntN(cartProducts)
					b := (a + 1 + r.IntN(cartProducts-1)) % cartProducts
					op = cartOp{kind: "CART", items: []int{a, b}}
				case n < 7:
					op = cartOp{kind: "ADD", items: []int{r.IntN(cartProducts)}}
				default:
					op = cartOp{kind: "READ", items: []int{r.IntN(cartProducts)}}
				}
				call := time.Since(start).Nanoseconds()
				out := cartDo(client, s.url, products, op, fmt.Sprintf("c%d-%d", c, i))
				ret := time.Since(start).Nanoseconds()
				if out.unknown {
					ret = d.Nanoseconds() * 1000
				}
				mu.Lock()
				ops = append(ops, porcupine.Operation{ClientId: c, Input: op, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	carts := 0
	for _, o := range ops {
		if o.Input.(cartOp).kind == "CART" && o.Output.(cartOut).code == "" && !o.Output.(cartOut).unknown {
			carts++
		}
	}
	res := porcupine.CheckOperationsTimeout(cartModel.ToModel(), ops, 30*time.Second)
	t.Logf("%d operations (%d carts applied) checked: %s", len(ops), carts, res)
	return res, carts
}

// cartDo sends op and returns its outcome.
func cartDo(client *http.Client, url string, products []string, op cartOp, key string) cartOut {
	var req *http.Request
	switch op.kind {
	case "READ":
		req, _ = http.NewRequest("GET", url+"/v1/products/"+products[op.items[0]], nil)
	case "ADD":
		req, _ = http.NewRequest("POST", url+"/v1/products/"+products[op.items[0]]+"/transactions", strings.NewReader(`{"type":"ADD","quantity":1}`))
		req.Header.Set("Idempotency-Key", key)
	case "CART":
		var lines []string
		for j, i := range op.items {
			lines = append(lines, fmt.Sprintf(`{"product_id":%q,"type":"RESERVE","quantity":1,"reservation_id":%q,"idempotency_key":"%s-%d"}`, products[i], key, key, j))
		}
		req, _ = http.NewRequest("POST", url+"/v1/batch", strings.NewReader(`{"atomic":true,"ops":[`+strings.Join(lines, ",")+`]}`))
	}
	req.Header.Set("Content-Type", "application/json")
	return linSend(client, req)
}
