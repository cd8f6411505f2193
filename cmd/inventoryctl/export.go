package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/inventory-ledger/inventory/shard"
)

// exportColumns are the columns of an export, in order: an entry's fields
// as the API shows them (README, "inventoryctl").
var exportColumns = []string{"id", "product_id", "type", "quantity", "delta", "on_hand", "reserved", "available",
	"version", "reservation_id", "expires_at", "reason", "created_by", "created_at", "idempotency_key"}

// exportLine is one entry of a JSON Lines export; its fields are
// exportColumns. reservation_id and expires_at are left out where they do
// not apply, idempotency_key on entries the service wrote itself, as in
// the API.
type exportLine struct {
	ID             string `json:"id"`
	ProductID      string `json:"product_id"`
	Type           string `json:"type"`
	Quantity       int64  `json:"quantity"`
	Delta          int64  `json:"delta"`
	OnHand         int64  `json:"on_hand"`
	Reserved       int64  `json:"reserved"`
	Available      int64  `json:"available"`
	Version        int64  `json:"version"`
	ReservationID  string `json:"reservation_id,omitempty"`
	ExpiresAt      string `json:"expires_at,omitempty"`
	Reason         string `json:"reason"`
	CreatedBy      string `json:"created_by"`
	CreatedAt      string `json:"created_at"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

func lineOf(e *shard.Entry) exportLine {
	l := exportLine{
		ID: e.ID.String(), ProductID: e.ProductID, Type: e.Type.String(), Quantity: e.Quantity, Delta: e.Delta,
		OnHand: e.OnHand, Reserved: e.Reserved, Available: e.Available(), Version: e.Version,
		ReservationID: e.ReservationID, Reason: e.Reason, CreatedBy: e.CreatedBy, CreatedAt: formatTime(e.CreatedAt),
		IdempotencyKey: e.IdempotencyKey,
	}
	if e.ExpiresAt != 0 {
		l.ExpiresAt = formatTime(e.ExpiresAt)
	}
	return l
}

func (l *exportLine) record() []string {
	return []string{l.ID, l.ProductID, l.Type, itoa(l.Quantity), itoa(l.Delta), itoa(l.OnHand), itoa(l.Reserved),
		itoa(l.Available), itoa(l.Version), l.ReservationID, l.ExpiresAt, l.Reason, l.CreatedBy, l.CreatedAt, l.IdempotencyKey}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// export streams the ledger, one entry a line, as JSON Lines (default) or
// CSV with a header line: every entry, or one product's (--product), or
// those created in [--from, --to). Entries come shard after shard, each
// shard's in log order, so a product's in version order; the entries of a
// cart left in doubt at the end of the logs come last, if a start would
// commit it. Only applied entries are exported: a cart's prepared entries
// appear when it commits, never when it aborts.
//
// Every line is an entry the replay accepted. A problem in a shard's log
// ends that shard's lines there; the other shards are still exported, and
// the export ends with status 1 and the problem on stderr.
func export(args []string, stdout, stderr io.Writer) int {
	var dir, archive, format, product, from, to string
	fs := flags("export", stderr, &dir, &archive)
	fs.StringVar(&format, "format", "jsonl", "jsonl or csv")
	fs.StringVar(&product, "product", "", "export only this product's entries")
	fs.StringVar(&from, "from", "", "export only entries created at or after this RFC 3339 time")
	fs.StringVar(&to, "to", "", "export only entries created before this RFC 3339 time")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	lo, err := parseTime("from", from, math.MinInt64)
	var hi int64
	if err == nil {
		hi, err = parseTime("to", to, math.MaxInt64)
	}
	if err == nil {
		err = checkOutput(format, product)
	}
	if err != nil {
		fmt.Fprintf(stderr, "inventoryctl export: %v\n", err)
		return exitUsage
	}
	d := openReading("export", dir, archive, stderr)
	if d == nil {
		return exitProblem
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	var write func(l *exportLine) error
	if format == "csv" {
		cw := csv.NewWriter(w)
		if err := cw.Write(exportColumns); err != nil {
			fmt.Fprintf(stderr, "inventoryctl export: %v\n", err)
			return exitProblem
		}
		write = func(l *exportLine) error { return cw.Write(l.record()) }
		defer cw.Flush()
	} else {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		write = func(l *exportLine) error { return enc.Encode(l) }
	}
	l, err := d.replay(shard.LedgerOptions{Entry: func(_ int, e *shard.Entry) error {
		if (product != "" && e.ProductID != product) || e.CreatedAt < lo || e.CreatedAt >= hi {
			return nil
		}
		line := lineOf(e)
		return write(&line)
	}})
	if err == nil {
		err = firstProblem(l)
	}
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "inventoryctl export: %v\n", err)
		return exitProblem
	}
	return exitOK
}

func firstProblem(l *shard.Ledger) error {
	if errs := problems(l); len(errs) > 0 {
		return errs[0]
	}
	return nil
}
