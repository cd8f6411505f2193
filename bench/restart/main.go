// Command restart measures a restart of inventoryd on a large ledger: how
// long until /readyz answers 200, and the process's resident memory then.
//
//	go run ./bench/restart -gen -dir /tmp/ledger -entries 3000000 -products 1000
//	go run ./bench/restart -dir /tmp/ledger -bin /tmp/inventoryd -runs 5 [-no-snapshot]
//
// With -gen it writes the ledger first, in process, through the engine and
// the WAL: one ADD per product, then (entries-products)/2 holds, each
// RESERVE followed by its COMMIT, round-robin over the products, every
// write with its own idempotency key, in batches of 1000 ops. Each run
// then starts the binary with --retention 1s (so no key is inside the
// window), polls /readyz every millisecond from the moment it started the
// process, reads VmRSS and VmHWM from /proc once ready, and stops it with
// SIGTERM. -no-snapshot removes the snapshots before each run (a full
// replay); otherwise the first run's graceful stop leaves one if none is
// there. It prints one line per run and the medians.
//
// With -history PRODUCT, each run, once ready, also times pages of 100
// history entries of PRODUCT over HTTP (GET .../transactions?after=N
// &limit=100, the body read whole): the oldest page, one from the middle,
// the newest the snapshot holds, and, after writing 300 entries to it, a
// page of those (still in RAM); -pages requests each, median and 99th
// percentile printed per kind.
//
//	go run ./bench/restart -gen -dir /tmp/hot -entries 10000000 -products 1
//	go run ./bench/restart -dir /tmp/hot -bin /tmp/inventoryd -runs 3 -history sku-0
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

var (
	history string
	pages   int
)

func main() {
	dir := flag.String("dir", "", "data directory")
	gen := flag.Bool("gen", false, "write the ledger first (the directory must not exist)")
	entries := flag.Int("entries", 3_000_000, "entries to write with -gen")
	products := flag.Int("products", 1000, "products to write with -gen")
	bin := flag.String("bin", "", "inventoryd binary to measure")
	runs := flag.Int("runs", 5, "restarts to measure")
	noSnap := flag.Bool("no-snapshot", false, "remove snapshots before each run")
	flag.StringVar(&history, "history", "", "product whose history pages to time once ready")
	flag.IntVar(&pages, "pages", 200, "requests per kind of history page")
	flag.Parse()
	if err := run(*dir, *gen, *entries, *products, *bin, *runs, *noSnap); err != nil {
		fmt.Fprintln(os.Stderr, "restart:", err)
		os.Exit(1)
	}
}

func run(dir string, gen bool, entries, products int, bin string, runs int, noSnap bool) error {
	if dir == "" {
		return errors.New("-dir is required")
	}
	if gen {
		t := time.Now()
		if err := generate(dir, entries, products); err != nil {
			return err
		}
		fmt.Printf("wrote %d entries over %d products in %s\n", entries, products, time.Since(t).Round(time.Millisecond))
	}
	if bin == "" {
		return nil
	}
	var ready, rss, hwm []float64
	for i := range runs {
		if noSnap {
			if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
				return err
			}
		}
		d, r, h, err := measure(bin, dir)
		if err != nil {
			return err
		}
		fmt.Printf("run %d: ready %.3f s, RSS %.1f MiB, peak RSS %.1f MiB\n", i+1, d.Seconds(), r, h)
		ready, rss, hwm = append(ready, d.Seconds()), append(rss, r), append(hwm, h)
	}
	fmt.Printf("median of %d: ready %.3f s, RSS %.1f MiB, peak RSS %.1f MiB\n", runs, median(ready), median(rss), median(hwm))
	return nil
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// generate writes the ledger described in the package comment.
func generate(dir string, entries, products int) error {
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists", dir)
	}
	if err := shard.PrepareDir(dir, 1); err != nil {
		return err
	}
	open := func(i int, replay func(uint64, []byte) error) (shard.Journal, error) {
		l, _, err := wal.Open(shard.ShardDir(dir, i), wal.Options{SegmentBytes: 4 << 20}, replay)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	e, err := shard.Open(shard.Config{Shards: 1, Retention: time.Second}, open)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := e.Wait(ctx); err != nil {
		return err
	}
	holds := (entries - products) / 2
	perProduct := holds/products + 1
	var batch []shard.Op
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := e.Batch(ctx, batch, false)
		if err != nil {
			return err
		}
		for j, r := range res {
			if r.Err != nil {
				return fmt.Errorf("%s %s: %v", batch[j].Type, batch[j].ProductID, r.Err)
			}
		}
		batch = batch[:0]
		return nil
	}
	key := 0
	op := func(o shard.Op) error {
		key++
		o.IdempotencyKey = "k" + strconv.Itoa(key)
		o.ExpectedVersion = shard.NoVersion
		batch = append(batch, o)
		if len(batch) == shard.BatchRequestOpsMax {
			return flush()
		}
		return nil
	}
	for p := range products {
		if err := op(shard.Op{ProductID: pid(p), Type: shard.TypeAdd, Quantity: int64(perProduct)}); err != nil {
			return err
		}
	}
	for h := range holds {
		p, id := pid(h%products), "order-"+strconv.Itoa(h)
		if err := op(shard.Op{ProductID: p, Type: shard.TypeReserve, Quantity: 1, ReservationID: id, TTLSeconds: 900}); err != nil {
			return err
		}
		if err := op(shard.Op{ProductID: p, Type: shard.TypeCommit, ReservationID: id}); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return e.Close(ctx)
}

func pid(p int) string { return "sku-" + strconv.Itoa(p) }

// measure starts bin on dir and returns the time to ready and the RSS
// and peak RSS then, in MiB.
func measure(bin, dir string) (time.Duration, float64, float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--data-dir", dir, "--addr", addr, "--retention", "1s", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	client := &http.Client{Timeout: time.Second}
	for {
		if time.Since(start) > 5*time.Minute {
			return 0, 0, 0, errors.New("not ready after 5 minutes")
		}
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(time.Millisecond)
	}
	d := time.Since(start)
	rss, hwm, err := memory(cmd.Process.Pid)
	if err == nil && history != "" {
		err = timeHistory(client, "http://"+addr, history)
	}
	return d, rss, hwm, err
}

// timeHistory times pages of 100 entries of product's history, as the
// package comment says.
func timeHistory(client *http.Client, base, product string) error {
	var stock struct {
		Version int64 `json:"version"`
	}
	if err := getJSON(client, base+"/v1/products/"+product, &stock); err != nil {
		return err
	}
	v := stock.Version
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for b := range 3 {
		var ops []string
		for i := range 100 {
			ops = append(ops, fmt.Sprintf(`{"product_id":%q,"type":"ADD","quantity":1,"idempotency_key":"h%s-%d-%d"}`, product, run, b, i))
		}
		body := `{"atomic":false,"ops":[` + strings.Join(ops, ",") + `]}`
		resp, err := client.Post(base+"/v1/batch", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("batch: status %d", resp.StatusCode)
		}
	}
	kinds := []struct {
		name  string
		after int64
	}{
		{"oldest", 0}, {"middle", v / 2}, {"newest in the snapshot", v - 100}, {"written since the start", v + 100},
	}
	for _, k := range kinds {
		var ds []float64
		for range pages {
			t := time.Now()
			var page struct {
				Transactions []json.RawMessage `json:"transactions"`
			}
			if err := getJSON(client, fmt.Sprintf("%s/v1/products/%s/transactions?after=%d&limit=100", base, product, k.after), &page); err != nil {
				return err
			}
			ds = append(ds, float64(time.Since(t).Microseconds())/1000)
			if len(page.Transactions) != 100 {
				return fmt.Errorf("page after %d: %d entries", k.after, len(page.Transactions))
			}
		}
		med := median(ds) // sorts ds
		fmt.Printf("  history page of 100, %s (after=%d of %d): median %.2f ms, p99 %.2f ms\n",
			k.name, k.after, v+300, med, ds[len(ds)*99/100])
	}
	return nil
}

func getJSON(client *http.Client, url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}

// memory reads VmRSS and VmHWM of process pid, in MiB.
func memory(pid int) (rss, hwm float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm, sc.Err()
}
