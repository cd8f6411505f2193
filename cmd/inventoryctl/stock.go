package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/inventory-ledger/inventory/shard"
)

// stockLine is one product's stock, as GET /v1/products/{id} shows it.
type stockLine struct {
	ProductID string `json:"product_id"`
	OnHand    int64  `json:"on_hand"`
	Reserved  int64  `json:"reserved"`
	Available int64  `json:"available"`
	Version   int64  `json:"version"`
	UpdatedAt string `json:"updated_at"`
}

var stockColumns = []string{"product_id", "on_hand", "reserved", "available", "version", "updated_at"}

// stock prints the balances of every product (or of --product) right after
// its last entry created at or before --as-of (default: its last entry),
// from the ledger, as GET /v1/products/{id}?as_of= answers: the entries of
// a product are replayed in version order, and created_at never decreases
// along them. Products without an entry by then are left out; for
// --product that is status 1. Lines are sorted by product id.
func stock(args []string, stdout, stderr io.Writer) int {
	var dir, archive, asOf, product, format string
	fs := flags("stock", stderr, &dir, &archive)
	fs.StringVar(&asOf, "as-of", "", "an RFC 3339 time; default: now (every entry)")
	fs.StringVar(&product, "product", "", "only this product")
	fs.StringVar(&format, "format", "jsonl", "jsonl or csv")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	at, err := parseTime("as-of", asOf, math.MaxInt64)
	if err == nil {
		err = checkOutput(format, product)
	}
	if err != nil {
		fmt.Fprintf(stderr, "inventoryctl stock: %v\n", err)
		return exitUsage
	}
	d := openReading("stock", dir, archive, stderr)
	if d == nil {
		return exitProblem
	}
	// One map a shard, as the shards are replayed at once; a product
	// belongs to one shard.
	byShard := make([]map[string]*shard.Stock, d.shards)
	for i := range byShard {
		byShard[i] = make(map[string]*shard.Stock)
	}
	l, err := d.replay(shard.LedgerOptions{Parallel: true, Entry: func(i int, e *shard.Entry) error {
		if e.CreatedAt > at || (product != "" && e.ProductID != product) {
			return nil
		}
		s := byShard[i][e.ProductID]
		if s == nil {
			s = &shard.Stock{ProductID: string([]byte(e.ProductID))} // e's strings view its record
			byShard[i][s.ProductID] = s
		}
		s.OnHand, s.Reserved, s.Version, s.UpdatedAt = e.OnHand, e.Reserved, e.Version, e.CreatedAt
		return nil
	}})
	stocks := make(map[string]*shard.Stock)
	for _, m := range byShard {
		for id, s := range m {
			stocks[id] = s
		}
	}
	if err == nil {
		err = firstProblem(l)
	}
	if err != nil {
		fmt.Fprintf(stderr, "inventoryctl stock: %v\n", err)
		return exitProblem
	}
	if product != "" && stocks[product] == nil {
		fmt.Fprintf(stderr, "inventoryctl stock: product %q has no entries created by then\n", product)
		return exitProblem
	}
	ids := make([]string, 0, len(stocks))
	for id := range stocks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	w := bufio.NewWriter(stdout)
	cw := csv.NewWriter(w)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if format == "csv" {
		cw.Write(stockColumns)
	}
	for _, id := range ids {
		s := stocks[id]
		line := stockLine{id, s.OnHand, s.Reserved, s.Available(), s.Version, formatTime(s.UpdatedAt)}
		if format == "csv" {
			cw.Write([]string{line.ProductID, itoa(line.OnHand), itoa(line.Reserved), itoa(line.Available), itoa(line.Version), line.UpdatedAt})
		} else if err := enc.Encode(&line); err != nil {
			break
		}
	}
	cw.Flush()
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "inventoryctl stock: %v\n", err)
		return exitProblem
	}
	return exitOK
}
