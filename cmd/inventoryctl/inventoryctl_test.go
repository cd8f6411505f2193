package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// at is t0 plus s seconds, in RFC 3339.
func at(s float64) string {
	return t0.Add(time.Duration(s * float64(time.Second))).Format(time.RFC3339Nano)
}

// products on different shards of a 2-shard directory.
func twoShardProducts() (a, b string) {
	for i := 0; a == "" || b == ""; i++ {
		id := "sku-" + strconv.Itoa(i)
		switch shard.Route(id, 2) {
		case 0:
			if a == "" {
				a = id
			}
		case 1:
			if b == "" {
				b = id
			}
		}
	}
	return a, b
}

// knownDir writes a 2-shard data directory with known content through the
// engine on the real WAL, one write a second from t0, and returns it:
//
//	t0+0  a: ADD 10           a v1 (10, 0)
//	t0+1  a: RESERVE 4 (r1)   a v2 (10, 4)
//	t0+2  a: COMMIT 1 of r1   a v3 (9, 3), v4 RELEASE (9, 0)
//	t0+3  b: ADD 5            b v1 (5, 0)
//	t0+4  cart: a REMOVE 2, b RESERVE 1 (r2)   a v5 (7, 0), b v2 (5, 1)
//	t0+5  b: RELEASE r2       b v3 (5, 0)
func knownDir(t *testing.T) (dir, a, b string) {
	t.Helper()
	dir = t.TempDir()
	a, b = twoShardProducts()
	if err := shard.PrepareDir(dir, 2); err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	e, err := shard.Open(shard.Config{Shards: 2, Clock: now.Load}, func(i int, fn func(uint64, []byte) error) (shard.Journal, error) {
		l, _, err := wal.Open(shard.ShardDir(dir, i), wal.Options{}, fn)
		return l, err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	op := func(product string, typ shard.Type, q int64, resv string) shard.Op {
		n++
		o := shard.Op{ProductID: product, Type: typ, Quantity: q, ReservationID: resv,
			IdempotencyKey: "k" + strconv.Itoa(n), ExpectedVersion: shard.NoVersion, Actor: "test"}
		if typ == shard.TypeReserve {
			o.TTLSeconds = 600
		}
		return o
	}
	write := func(sec int, o shard.Op) {
		t.Helper()
		now.Store(t0.Add(time.Duration(sec) * time.Second).UnixNano())
		if _, err := e.Write(ctx, o); err != nil {
			t.Fatalf("write %+v: %v", o, err)
		}
	}
	write(0, op(a, shard.TypeAdd, 10, ""))
	write(1, op(a, shard.TypeReserve, 4, "r1"))
	write(2, op(a, shard.TypeCommit, 1, "r1"))
	write(3, op(b, shard.TypeAdd, 5, ""))
	now.Store(t0.Add(4 * time.Second).UnixNano())
	if _, err := e.Batch(ctx, []shard.Op{op(a, shard.TypeRemove, 2, ""), op(b, shard.TypeReserve, 1, "r2")}, true); err != nil {
		t.Fatalf("cart: %v", err)
	}
	write(5, op(b, shard.TypeRelease, 0, "r2"))
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return dir, a, b
}

// ctl runs inventoryctl with args and returns its status and outputs.
func ctl(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVerifyKnownDirectory(t *testing.T) {
	dir, _, _ := knownDir(t)
	code, out, errOut := ctl("verify", "--data-dir", dir)
	if code != exitOK || !strings.Contains(out, "verify: OK") {
		t.Fatalf("verify: status %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"shard 0: ", "shard 1: ", "snapshots: none usable"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Running beside the process that holds the directory is allowed and said.
	l, err := shard.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	code, _, errOut = ctl("verify", "--data-dir", dir)
	if code != exitOK || !strings.Contains(errOut, "in use by process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("verify of a directory in use: status %d, stderr %q", code, errOut)
	}
}

func TestExport(t *testing.T) {
	dir, a, b := knownDir(t)
	code, out, errOut := ctl("export", "--data-dir", dir)
	if code != exitOK {
		t.Fatalf("export: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d lines, want 8 entries:\n%s", len(lines), out)
	}
	type row = map[string]any
	byProduct := map[string][]row{}
	for _, ln := range lines {
		var r row
		if err := json.Unmarshal([]byte(ln), &r); err != nil {
			t.Fatalf("line %q: %v", ln, err)
		}
		byProduct[r["product_id"].(string)] = append(byProduct[r["product_id"].(string)], r)
	}
	if got := len(byProduct[a]); got != 5 {
		t.Errorf("%d entries of %s, want 5", got, a)
	}
	for i, r := range byProduct[a] { // version order
		if r["version"] != float64(i+1) {
			t.Errorf("%s entry %d has version %v", a, i, r["version"])
		}
	}
	commit := byProduct[a][2]
	if commit["type"] != "COMMIT" || commit["quantity"] != float64(1) || commit["on_hand"] != float64(9) ||
		commit["reserved"] != float64(3) || commit["available"] != float64(6) || commit["delta"] != float64(0) ||
		commit["reservation_id"] != "r1" || commit["created_at"] != "2026-12-02T10:00:02.000000000Z" ||
		commit["created_by"] != "test" || commit["idempotency_key"] != "k3" {
		t.Errorf("COMMIT line: %v", commit)
	}
	if rel := byProduct[a][3]; rel["type"] != "RELEASE" || rel["idempotency_key"] != nil || rel["quantity"] != float64(3) {
		t.Errorf("RELEASE of the rest: %v", rel)
	}
	if add := byProduct[b][0]; add["reservation_id"] != nil || add["expires_at"] != nil {
		t.Errorf("ADD line carries reservation fields: %v", add)
	}

	// One product, a time range: [t0+1, t0+4) of a is v2, v3, v4.
	code, out, _ = ctl("export", "--data-dir", dir, "--product", a, "--from", at(1), "--to", at(4), "--format", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != exitOK || err != nil || len(recs) != 4 {
		t.Fatalf("csv export: status %d, err %v, %d rows:\n%s", code, err, len(recs), out)
	}
	if strings.Join(recs[0], ",") != strings.Join(exportColumns, ",") {
		t.Errorf("csv header %v", recs[0])
	}
	for i, r := range recs[1:] {
		if r[1] != a || r[8] != strconv.Itoa(i+2) {
			t.Errorf("csv row %d: %v", i, r)
		}
	}
	if code, _, _ := ctl("export", "--data-dir", dir, "--from", "yesterday"); code != exitUsage {
		t.Errorf("bad --from: status %d", code)
	}
}

func TestStockAsOf(t *testing.T) {
	dir, a, b := knownDir(t)
	stocks := func(args ...string) []map[string]any {
		t.Helper()
		code, out, errOut := ctl(append([]string{"stock", "--data-dir", dir}, args...)...)
		if code != exitOK {
			t.Fatalf("stock %v: %d %s", args, code, errOut)
		}
		var got []map[string]any
		for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
			if ln == "" {
				continue
			}
			var m map[string]any
			json.Unmarshal([]byte(ln), &m)
			got = append(got, m)
		}
		return got
	}
	s := stocks("--as-of", at(2.5))
	if len(s) != 1 || s[0]["product_id"] != a || s[0]["version"] != float64(4) || s[0]["on_hand"] != float64(9) || s[0]["reserved"] != float64(0) {
		t.Errorf("as of t0+2.5s: %v", s)
	}
	s = stocks("--as-of", at(4))
	want := map[string][3]float64{a: {5, 7, 0}, b: {2, 5, 1}}
	if len(s) != 2 {
		t.Fatalf("as of t0+4s: %v", s)
	}
	for _, m := range s {
		w := want[m["product_id"].(string)]
		if m["version"] != w[0] || m["on_hand"] != w[1] || m["reserved"] != w[2] || m["available"] != w[1]-w[2] {
			t.Errorf("as of t0+4s: %v, want version/on_hand/reserved %v", m, w)
		}
	}
	s = stocks("--product", b)
	if len(s) != 1 || s[0]["version"] != float64(3) || s[0]["reserved"] != float64(0) || s[0]["updated_at"] != "2026-12-02T10:00:05.000000000Z" {
		t.Errorf("now, one product: %v", s)
	}
	if code, _, errOut := ctl("stock", "--data-dir", dir, "--product", b, "--as-of", at(1)); code != exitProblem || !strings.Contains(errOut, "no entries") {
		t.Errorf("a product without entries by then: status %d, %q", code, errOut)
	}
	for _, bad := range []string{"2026-12-02", "2026-12-02T10:00:00+24:00"} {
		if code, _, _ := ctl("stock", "--data-dir", dir, "--as-of", bad); code != exitUsage {
			t.Errorf("bad --as-of %s: status %d", bad, code)
		}
	}
}

func TestInspect(t *testing.T) {
	dir, _, _ := knownDir(t)
	code, out, errOut := ctl("inspect", "--data-dir", dir)
	if code != exitOK {
		t.Fatalf("inspect: %d %s %s", code, out, errOut)
	}
	// Shard of a: 5 entries and the cart's PREPARE and COMMIT records; shard of b: 3 entries, the same 2.
	a, _ := twoShardProducts()
	sa := shard.Route(a, 2)
	for _, want := range []string{"2 shards", "not in use", "shard " + strconv.Itoa(sa) + ": 1 segments",
		"5 entries, 2 cart records", "3 entries, 2 cart records", "snapshots: none",
		"entries created 2026-12-02T10:00:00.000000000Z .. 2026-12-02T10:00:04.000000000Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
}

// segment returns the path of shard i's only segment.
func segment(t *testing.T, dir string, i int) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(shard.ShardDir(dir, i), strings.Repeat("[0-9]", 20)))
	if len(m) != 1 {
		t.Fatalf("shard %d: segments %v", i, m)
	}
	return m[0]
}

func TestVerifyFindsAFlippedByte(t *testing.T) {
	dir, a, _ := knownDir(t)
	path := segment(t, dir, shard.Route(a, 2))
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	code, out, _ := ctl("verify", "--data-dir", dir)
	if code != exitProblem || !strings.Contains(out, "PROBLEM") || !strings.Contains(out, "corrupt segment") {
		t.Errorf("verify of a flipped byte: status %d\n%s", code, out)
	}
	if code, _, _ := ctl("export", "--data-dir", dir); code != exitProblem {
		t.Errorf("export of a corrupt log: status %d", code)
	}
	if code, _, _ := ctl("inspect", "--data-dir", dir); code != exitProblem {
		t.Errorf("inspect of a corrupt log: status %d", code)
	}
}

// writeLog writes entries as a 1-shard data directory, one block each,
// through the WAL: the seam for logs the service would never write.
func writeLog(t *testing.T, entries ...shard.Entry) string {
	t.Helper()
	dir := t.TempDir()
	if err := shard.PrepareDir(dir, 1); err != nil {
		t.Fatal(err)
	}
	l, _, err := wal.Open(shard.ShardDir(dir, 0), wal.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if err := l.Commit([][]byte{shard.EncodeEntry(&entries[i])}, make([]uint64, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func add(version, q, onHand int64, sec int, key string) shard.Entry {
	return shard.Entry{ProductID: "p", Type: shard.TypeAdd, Quantity: q, Delta: q, OnHand: onHand, Version: version,
		CreatedAt: t0.Add(time.Duration(sec) * time.Second).UnixNano(), IdempotencyKey: key, Fingerprint: uint64(version), CreatedBy: "t"}
}

func TestVerifyFindsBrokenInvariants(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []shard.Entry
		args    []string
		want    string
	}{
		{"a valid log", []shard.Entry{add(1, 5, 5, 0, "k1"), add(2, 3, 8, 1, "k2")}, nil, ""},
		{"a wrong running balance", []shard.Entry{add(1, 5, 5, 0, "k1"), add(2, 3, 9, 1, "k2")}, nil, "balances do not add up"},
		{"a version gap", []shard.Entry{add(1, 5, 5, 0, "k1"), add(3, 3, 8, 1, "k2")}, nil, "version gap"},
		{"a key applied twice within retention", []shard.Entry{add(1, 5, 5, 0, "k1"), add(2, 3, 8, 60, "k1")}, nil, "applied twice"},
		{"a key used again after retention", []shard.Entry{add(1, 5, 5, 0, "k1"), add(2, 3, 8, 60, "k1")}, []string{"--retention", "30s"}, ""},
		{"created before the entry before", []shard.Entry{add(1, 5, 5, 10, "k1"), add(2, 3, 8, 1, "k2")}, nil, "created_at"},
		{"a hold settled twice", []shard.Entry{add(1, 5, 5, 0, "k1"), hold(2, "r1", 2, 1, 5, 2), hold(3, "r2", 2, 2, 5, 4),
			release(4, "r1", 2, 3, 5, 2), release(5, "r1", 2, 4, 5, 0)}, nil, "not active"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeLog(t, c.entries...)
			code, out, errOut := ctl(append([]string{"verify", "--data-dir", dir}, c.args...)...)
			if c.want == "" {
				if code != exitOK {
					t.Errorf("status %d, want 0:\n%s%s", code, out, errOut)
				}
				return
			}
			if code != exitProblem || !strings.Contains(out, c.want) {
				t.Errorf("status %d, want 1 and a problem naming %q:\n%s%s", code, c.want, out, errOut)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"verify", "extra"}, {"export", "--format", "xml", "--data-dir", t.TempDir()}} {
		if code, _, _ := ctl(args...); code != exitUsage {
			t.Errorf("%q: status %d, want %d", args, code, exitUsage)
		}
	}
	if code, _, errOut := ctl("verify", "--data-dir", t.TempDir()); code != exitProblem || !strings.Contains(errOut, "not a data directory") {
		t.Errorf("a directory without a manifest: %d %q", code, errOut)
	}
}

func hold(version int64, id string, q int64, sec int, onHand, reserved int64) shard.Entry {
	at := t0.Add(time.Duration(sec) * time.Second).UnixNano()
	return shard.Entry{ProductID: "p", Type: shard.TypeReserve, Quantity: q, Delta: -q, OnHand: onHand, Reserved: reserved,
		Version: version, ReservationID: id, ExpiresAt: at + int64(time.Hour), CreatedAt: at, IdempotencyKey: "h" + id, Fingerprint: 1}
}

func release(version int64, id string, q int64, sec int, onHand, reserved int64) shard.Entry {
	return shard.Entry{ProductID: "p", Type: shard.TypeRelease, Quantity: q, Delta: q, OnHand: onHand, Reserved: reserved,
		Version: version, ReservationID: id, CreatedAt: t0.Add(time.Duration(sec) * time.Second).UnixNano()}
}

// TestTornTailIsNotAProblem: a block cut short at the end of a log (a
// crash, or a block being written beside the tools) is reported, left as
// it is, and everything before it is read.
func TestTornTailIsNotAProblem(t *testing.T) {
	dir, a, _ := knownDir(t)
	path := segment(t, dir, shard.Route(a, 2))
	whole, _ := os.ReadFile(path)
	torn := append(bytes.Clone(whole), 0xe8, 0x07, 1, 2, 3, 4, 5) // a frame of 1000 bytes, 5 of them there
	if err := os.WriteFile(path, torn, 0o640); err != nil {
		t.Fatal(err)
	}
	code, out, _ := ctl("verify", "--data-dir", dir)
	if code != exitOK || !strings.Contains(out, "torn tail: 7 bytes at offset "+strconv.Itoa(len(whole))) {
		t.Errorf("verify: status %d\n%s", code, out)
	}
	if code, out, _ := ctl("export", "--data-dir", dir, "--product", a); code != exitOK || strings.Count(out, "\n") != 5 {
		t.Errorf("export: status %d, %d lines", code, strings.Count(out, "\n"))
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, torn) {
		t.Error("the tools changed the segment")
	}
}
