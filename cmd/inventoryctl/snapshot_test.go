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
	return writeDirQ(t, dir, 10)
}

// writeDirQ is writeDir with q units added to each product: the
// directories of two q below 128 have the same records at the same
// locators, with other balances.
func writeDirQ(t *testing.T, dir string, q int64) map[string]shard.Stock {
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
			{ProductID: p, Type: shard.TypeAdd, Quantity: q, ExpectedVersion: shard.NoVersion},
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
	// A damaged snapshot is written again, under the same name, and said so.
	infos, _ := shard.ListSnapshots(shard.SnapshotDir(dir, 0))
	if err := os.WriteFile(infos[0].Path, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"snapshot", "--data-dir", dir}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "shard 0: wrote") || !strings.Contains(out.String(), "shard 1: up to date") {
		t.Errorf("run after damage: exit %d, %q; want shard 0 written, shard 1 up to date", code, out.String())
	}
	if _, err := shard.ReadSnapshot(infos[0].Path, 0, 2); err != nil {
		t.Errorf("the snapshot written again: %v", err)
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

// appendOps writes one ADD of 1 to each product of writeDir past what dir
// holds, without snapshots.
func appendOps(t *testing.T, dir string) {
	t.Helper()
	e, err := shard.Open(shard.Config{Shards: 2}, func(i int, replay func(uint64, []byte) error) (shard.Journal, error) {
		l, _, err := wal.Open(shard.ShardDir(dir, i), wal.Options{}, replay)
		if err != nil {
			return nil, err
		}
		return l, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		op := shard.Op{ProductID: fmt.Sprintf("p%d", i), Type: shard.TypeAdd, Quantity: 1, ExpectedVersion: shard.NoVersion, IdempotencyKey: fmt.Sprintf("more-%d", i)}
		if _, err := e.Write(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyComparesSnapshots: verify checks the newest snapshot against
// the log replayed up to the record it ends with, and a damaged snapshot
// file or one that does not fit the log is a problem; inspect lists them.
func TestVerifyComparesSnapshots(t *testing.T) {
	dir := t.TempDir()
	writeDir(t, dir)
	if code, _, errOut := ctl("snapshot", "--data-dir", dir); code != exitOK {
		t.Fatalf("snapshot: %d %s", code, errOut)
	}
	appendOps(t, dir) // the snapshots now end before the log does
	code, out, errOut := ctl("verify", "--data-dir", dir)
	if code != exitOK || strings.Count(out, "matches the log") != 2 {
		t.Fatalf("verify: status %d, want 0 and both snapshots matching the log\n%s%s", code, out, errOut)
	}
	code, out, _ = ctl("inspect", "--data-dir", dir)
	if code != exitOK || strings.Count(out, "active holds, ") != 2 || strings.Contains(out, "unusable") || strings.Contains(out, "set aside") {
		t.Errorf("inspect: status %d, want both snapshots described\n%s", code, out)
	}
	// A snapshot a start set aside is listed as such.
	aside := filepath.Join(shard.SnapshotDir(dir, 1), "snap-00000000000000ff.snap.ahead")
	if err := os.WriteFile(aside, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ = ctl("inspect", "--data-dir", dir); code != exitOK || !strings.Contains(out, "set aside snap-00000000000000ff.snap.ahead") {
		t.Errorf("inspect with a snapshot set aside: status %d\n%s", code, out)
	}
	if err := os.Remove(aside); err != nil {
		t.Fatal(err)
	}

	// A snapshot of another log, with the same records at the same
	// locators but other balances, checks out and differs.
	other := t.TempDir()
	writeDirQ(t, other, 11)
	if code, _, errOut := ctl("snapshot", "--data-dir", other); code != exitOK {
		t.Fatalf("snapshot: %d %s", code, errOut)
	}
	mine, _ := shard.ListSnapshots(shard.SnapshotDir(dir, 0))
	theirs, _ := shard.ListSnapshots(shard.SnapshotDir(other, 0))
	if len(mine) != 1 || len(theirs) != 1 || mine[0].Loc != theirs[0].Loc {
		t.Fatalf("snapshots %v and %v: want one each at the same locator", mine, theirs)
	}
	good, err := os.ReadFile(mine[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := os.ReadFile(theirs[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mine[0].Path, foreign, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = ctl("verify", "--data-dir", dir)
	if code != exitProblem || !strings.Contains(out, "differs from the log") || !strings.Contains(out, "on_hand 8 reserved 2") {
		t.Errorf("verify with a snapshot of another log: status %d, want 1 and the product that differs\n%s", code, out)
	}

	// A flipped byte: the file does not check out.
	good[len(good)/2] ^= 0x40
	if err := os.WriteFile(mine[0].Path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = ctl("verify", "--data-dir", dir)
	if code != exitProblem || !strings.Contains(out, "do not check out") || !strings.Contains(out, "none usable") {
		t.Errorf("verify with a damaged snapshot: status %d, want 1 and the file named\n%s", code, out)
	}
	code, out, _ = ctl("inspect", "--data-dir", dir)
	if code != exitProblem || !strings.Contains(out, "unusable") {
		t.Errorf("inspect with a damaged snapshot: status %d, want 1 and it unusable\n%s", code, out)
	}
}
