package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// writeDir makes a data directory of 2 shards with known content, as an
// inventoryd without snapshots would leave it, and returns each product's
// stock.
func writeDir(t *testing.T, dir string) map[string]shard.Stock {
	t.Helper()
	if err := shard.PrepareDir(dir, 2); err != nil {
		t.Fatal(err)
	}
	open := func(i int, replay func(uint64, []byte) error) (shard.Journal, error) {
		l, _, err := wal.Open(shard.ShardDir(dir, i), wal.Options{}, replay)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	e, err := shard.Open(shard.Config{Shards: 2}, open)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]shard.Stock{}
	for i := range 10 {
		p := fmt.Sprintf("p%d", i)
		ops := []shard.Op{
			{ProductID: p, Type: shard.TypeAdd, Quantity: 10, ExpectedVersion: shard.NoVersion},
			{ProductID: p, Type: shard.TypeReserve, Quantity: 3, ReservationID: "r1", TTLSeconds: 600, ExpectedVersion: shard.NoVersion},
			{ProductID: p, Type: shard.TypeCommit, ReservationID: "r1", ExpectedVersion: shard.NoVersion},
			{ProductID: p, Type: shard.TypeReserve, Quantity: 2, ReservationID: "r2", TTLSeconds: 600, ExpectedVersion: shard.NoVersion},
		}
		for j, op := range ops {
			op.IdempotencyKey = fmt.Sprintf("k%s-%d", p, j)
			res, err := e.Write(ctx, op)
			if err != nil {
				t.Fatalf("%s: %v", op.Type, err)
			}
			want[p] = res.Stock
		}
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return want
}

func TestSnapshotCommand(t *testing.T) {
	dir := t.TempDir()
	want := writeDir(t, dir)
	var out, errOut bytes.Buffer
	if code := run([]string{"snapshot", "--data-dir", dir}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if n := strings.Count(out.String(), "wrote"); n != 2 {
		t.Errorf("output %q: want a snapshot written for each of 2 shards", out.String())
	}
	got := map[string]shard.Stock{}
	for i := range 2 {
		infos, err := shard.ListSnapshots(shard.SnapshotDir(dir, i))
		if err != nil || len(infos) != 1 {
			t.Fatalf("shard %d: snapshots %v %v", i, infos, err)
		}
		sum, err := shard.ReadSnapshot(infos[0].Path, i, 2)
		if err != nil {
			t.Fatal(err)
		}
		if sum.ActiveHolds != len(sum.Products) || sum.Settled != len(sum.Products) || sum.Keys != 4*len(sum.Products) {
			t.Errorf("shard %d: %d holds, %d settled, %d keys for %d products, want 1, 1 and 4 each",
				i, sum.ActiveHolds, sum.Settled, sum.Keys, len(sum.Products))
		}
		for p, s := range sum.Products {
			got[p] = s
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("snapshots hold %v, want %v", got, want)
	}
	out.Reset()
	if code := run([]string{"snapshot", "--data-dir", dir}, &out, &errOut); code != 0 || strings.Count(out.String(), "up to date") != 2 {
		t.Errorf("second run: exit %d, %q; want both shards up to date", code, out.String())
	}
}

func TestSnapshotCommandRefuses(t *testing.T) {
	dir := t.TempDir()
	writeDir(t, dir)
	lock, err := shard.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"snapshot", "--data-dir", dir}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "running") {
		t.Errorf("on a held directory: exit %d, %q; want 1 and a word on inventoryd running", code, errOut.String())
	}
	lock.Release()
	ents, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
	if len(ents) != 0 {
		t.Errorf("snapshots written into a held directory: %v", ents)
	}
	for _, args := range [][]string{{"snapshot", "--data-dir", t.TempDir()}, {"nope"}, {}} {
		if code := run(args, &out, &errOut); code == 0 {
			t.Errorf("%q: exit 0", args)
		}
	}
}
