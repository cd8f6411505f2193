package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ledgerBuilder writes a correct ledger, entry by entry, with running
// balances; tests then break it by hand.
type ledgerBuilder struct {
	pid     string
	entries []Entry
	onHand  int64
	res     int64
}

func (b *ledgerBuilder) add(typ string, q int64, rid string) *ledgerBuilder {
	var delta int64
	switch typ {
	case "ADD", "RETURN":
		b.onHand += q
		delta = q
	case "REMOVE":
		b.onHand -= q
		delta = -q
	case "RESERVE":
		b.res += q
		delta = -q
	case "COMMIT":
		b.onHand -= q
		b.res -= q
	case "RELEASE":
		b.res -= q
		delta = q
	}
	v := int64(len(b.entries) + 1)
	b.entries = append(b.entries, Entry{ID: fmt.Sprintf("id-%d", v), ProductID: b.pid, Type: typ, Quantity: q, Delta: delta,
		OnHand: b.onHand, Reserved: b.res, Available: b.onHand - b.res, Version: v, ReservationID: rid,
		CreatedBy: "bench", IdempotencyKey: fmt.Sprintf("k%d", v)})
	return b
}

func (b *ledgerBuilder) stock() Stock {
	l := b.entries[len(b.entries)-1]
	return Stock{ProductID: b.pid, OnHand: l.OnHand, Reserved: l.Reserved, Available: l.Available, Version: l.Version}
}

func acksOf(es []Entry) []ack {
	var as []ack
	for _, e := range es {
		as = append(as, ack{version: e.Version, idHash: hashID(e.ID), typ: e.Type})
	}
	return as
}

// goodLedger has every entry type, a partial COMMIT with its RELEASE, and
// an expiry written by the service.
func goodLedger() *ledgerBuilder {
	b := &ledgerBuilder{pid: "p"}
	b.add("ADD", 10, "").add("RESERVE", 3, "h1").add("COMMIT", 2, "h1").add("RELEASE", 1, "h1").
		add("RESERVE", 2, "h2").add("REMOVE", 1, "").add("RETURN", 1, "").add("RESERVE", 4, "h3").add("RELEASE", 4, "h3")
	exp := &b.entries[len(b.entries)-1]
	exp.CreatedBy, exp.Reason, exp.IdempotencyKey = "system", "expired", ""
	return b
}

func check(es []Entry, stock Stock, acks []ack, unknown int64) (facts, []string) {
	c := newChecker("p", acks)
	for _, e := range es {
		c.add(e)
	}
	return c.finish(stock, unknown)
}

func TestCheckerAcceptsACorrectLedger(t *testing.T) {
	b := goodLedger()
	// The service's expiry RELEASE is not acknowledged to anyone.
	f, probs := check(b.entries, b.stock(), acksOf(b.entries[:len(b.entries)-1]), 0)
	if len(probs) != 0 {
		t.Fatalf("problems in a correct ledger: %q", probs)
	}
	if f.expired != 1 || f.counts["RESERVE"] != 3 || f.quantities["COMMIT"] != 2 || f.activeHolds != 1 || f.last.Reserved != 2 {
		t.Errorf("facts: got expired %d reserves %d committed %d holds %d reserved %d, want 1 3 2 1 2",
			f.expired, f.counts["RESERVE"], f.quantities["COMMIT"], f.activeHolds, f.last.Reserved)
	}
}

func TestCheckerReportsBrokenLedgers(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(es []Entry, st *Stock, acks *[]ack, unknown *int64) []Entry
		want    string // a word of the expected problem
	}{
		{"version gap", func(es []Entry, _ *Stock, _ *[]ack, _ *int64) []Entry {
			for i := 4; i < len(es); i++ {
				es[i].Version++
			}
			return es
		}, "without gaps"},
		{"duplicate version", func(es []Entry, _ *Stock, _ *[]ack, _ *int64) []Entry {
			es[3].Version = 3
			return es
		}, "want 4"},
		{"on_hand off the running sum", func(es []Entry, _ *Stock, _ *[]ack, _ *int64) []Entry {
			es[5].OnHand++
			es[5].Available++
			return es
		}, "running sums"},
		{"available not on_hand minus reserved", func(es []Entry, _ *Stock, _ *[]ack, _ *int64) []Entry {
			es[1].Available = 99
			return es
		}, "available 99"},
		{"wrong delta", func(es []Entry, _ *Stock, _ *[]ack, _ *int64) []Entry {
			es[1].Delta = 3
			return es
		}, "delta 3"},
		{"oversold", func(es []Entry, st *Stock, acks *[]ack, _ *int64) []Entry {
			b := &ledgerBuilder{pid: "p"}
			b.add("ADD", 2, "").add("RESERVE", 1, "a").add("RESERVE", 1, "b").add("RESERVE", 1, "c")
			*st, *acks = b.stock(), acksOf(b.entries)
			return b.entries
		}, "oversold"},
		{"reservation id reused", func(es []Entry, _ *Stock, _ *[]ack, _ *int64) []Entry {
			es[4].ReservationID = "h1"
			es[8].ReservationID = "h1"
			return es
		}, "reuses"},
		{"commit of no hold", func(es []Entry, _ *Stock, _ *[]ack, _ *int64) []Entry {
			es[2].ReservationID = "nope"
			return es
		}, "not an active hold"},
		{"partial commit without its release", func(es []Entry, st *Stock, acks *[]ack, _ *int64) []Entry {
			b := &ledgerBuilder{pid: "p"}
			b.add("ADD", 5, "").add("RESERVE", 3, "a").add("COMMIT", 1, "a").add("ADD", 1, "")
			*st, *acks = b.stock(), acksOf(b.entries)
			return b.entries
		}, "partial COMMIT"},
		{"acknowledged entry missing at the end", func(es []Entry, st *Stock, _ *[]ack, _ *int64) []Entry {
			es = es[:len(es)-3]
			l := es[len(es)-1]
			*st = Stock{ProductID: "p", OnHand: l.OnHand, Reserved: l.Reserved, Available: l.Available, Version: l.Version}
			return es
		}, "missing from the ledger"},
		{"acknowledged id not at its version", func(es []Entry, _ *Stock, _ *[]ack, _ *int64) []Entry {
			es[6].ID = "someone-else"
			return es
		}, "acknowledged RETURN entry is not in the ledger"},
		{"entry nobody acknowledged", func(es []Entry, _ *Stock, acks *[]ack, _ *int64) []Entry {
			*acks = (*acks)[:5]
			(*acks) = append(*acks, acksOf(es[6:8])...)
			return es
		}, "refused write took effect"},
		{"stock differs from the ledger end", func(es []Entry, st *Stock, _ *[]ack, _ *int64) []Entry {
			st.Available++
			st.OnHand++
			return es
		}, "differs from the ledger"},
		{"stock version ahead of the ledger", func(es []Entry, st *Stock, _ *[]ack, _ *int64) []Entry {
			st.Version++
			return es
		}, "differs from the ledger"},
		{"wrong product", func(es []Entry, _ *Stock, _ *[]ack, _ *int64) []Entry {
			es[0].ProductID = "q"
			return es
		}, "belongs to product"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := goodLedger()
			st := b.stock()
			acks := acksOf(b.entries[:len(b.entries)-1])
			var unknown int64
			es := tc.breakIt(b.entries, &st, &acks, &unknown)
			_, probs := check(es, st, acks, unknown)
			if len(probs) == 0 {
				t.Fatalf("no problem reported, want one mentioning %q", tc.want)
			}
			if !strings.Contains(strings.Join(probs, "\n"), tc.want) {
				t.Errorf("problems %q, want one mentioning %q", probs, tc.want)
			}
		})
	}
}

func TestCheckerAllowsUnacknowledgedEntriesOfUnknownOutcomes(t *testing.T) {
	b := goodLedger()
	acks := acksOf(b.entries[:5]) // versions 6..8 were writes that timed out
	if _, probs := check(b.entries, b.stock(), acks, 3); len(probs) != 0 {
		t.Errorf("3 unknown outcomes, 3 unacknowledged entries: got problems %q", probs)
	}
	if _, probs := check(b.entries, b.stock(), acks, 2); len(probs) == 0 {
		t.Errorf("2 unknown outcomes, 3 unacknowledged entries: no problem reported")
	}
}

// fakeLedger serves a product's stock and ledger pages like the service.
func fakeLedger(t *testing.T, es []Entry, st Stock, stuck bool) *client {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/products/p", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("GET /v1/products/p/transactions", func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		page := ledgerPage{Transactions: []Entry{}}
		for _, e := range es {
			if e.Version > int64(after) && len(page.Transactions) < limit {
				page.Transactions = append(page.Transactions, e)
			}
		}
		if n := len(page.Transactions); n > 0 && page.Transactions[n-1].Version < es[len(es)-1].Version {
			next := page.Transactions[n-1].Version
			if stuck {
				next = int64(after)
			}
			page.NextAfter = &next
		}
		json.NewEncoder(w).Encode(page)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := newClient(srv.URL, 2, 5*time.Second)
	t.Cleanup(c.close)
	return c
}

func TestVerifyProductWalksEveryPage(t *testing.T) {
	b := &ledgerBuilder{pid: "p"}
	b.add("ADD", 5000, "")
	for i := range 2500 {
		b.add("RESERVE", 1, fmt.Sprintf("h%d", i))
	}
	pb := &productBook{acks: acksOf(b.entries)}
	f, probs := verifyProduct(context.Background(), fakeLedger(t, b.entries, b.stock(), false), "p", pb)
	if len(probs) != 0 || f.entries != 2501 {
		t.Errorf("got %d entries and problems %q, want 2501 and none", f.entries, probs)
	}
	// A page that drops an entry in the middle is caught.
	broken := append(append([]Entry{}, b.entries[:1200]...), b.entries[1201:]...)
	_, probs = verifyProduct(context.Background(), fakeLedger(t, broken, b.stock(), false), "p", pb)
	if len(probs) == 0 {
		t.Errorf("ledger with version 1201 missing: no problem reported")
	}
	// A server whose next_after does not advance cannot hold the walk.
	_, probs = verifyProduct(context.Background(), fakeLedger(t, b.entries, b.stock(), true), "p", pb)
	if !strings.Contains(strings.Join(probs, "\n"), "not advancing") {
		t.Errorf("stuck pagination: problems %q, want 'not advancing'", probs)
	}
}
