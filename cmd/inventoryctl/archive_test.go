package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// archivedDir writes a 2-shard data directory as inventoryd --archive-dir
// leaves it: small segments, a snapshot every 50 entries, and the segments
// before each shard's oldest kept snapshot moved to the archive. It returns
// the data and archive directories.
func archivedDir(t *testing.T) (dir, arch string) {
	t.Helper()
	dir, arch = t.TempDir(), t.TempDir()
	if err := shard.PrepareDir(dir, 2); err != nil {
		t.Fatal(err)
	}
	openAfter := func(i int, after uint64, fn func(uint64, []byte) error) (shard.Journal, error) {
		o := wal.Options{SegmentBytes: 2 << 10, ArchiveDir: shard.ShardDir(arch, i)}
		l, _, err := wal.OpenAfter(shard.ShardDir(dir, i), o, after, fn)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	var now atomic.Int64
	now.Store(t0.UnixNano())
	e, err := shard.Open(shard.Config{
		Shards: 2, Clock: now.Load, SnapshotEntries: 50,
		SnapshotDir: func(i int) string { return shard.SnapshotDir(dir, i) },
		OpenAfter:   openAfter,
	}, func(i int, fn func(uint64, []byte) error) (shard.Journal, error) { return openAfter(i, 0, fn) })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 600 {
		now.Store(t0.Add(time.Duration(i) * time.Second).UnixNano())
		op := shard.Op{ProductID: fmt.Sprintf("p%d", i%7), Type: shard.TypeAdd, Quantity: int64(1 + i%3),
			IdempotencyKey: fmt.Sprintf("k%d", i), ExpectedVersion: shard.NoVersion, Actor: "test"}
		if _, err := e.Write(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		ents, _ := os.ReadDir(shard.ShardDir(arch, i))
		if len(ents) == 0 {
			t.Fatalf("shard %d: nothing archived", i)
		}
		if _, err := os.Stat(filepath.Join(shard.ShardDir(dir, i), fmt.Sprintf("%020d", 1))); !os.IsNotExist(err) {
			t.Fatalf("shard %d: segment 1 is still live (%v)", i, err)
		}
	}
	return dir, arch
}

// unarchived returns a copy of dir with the archived segments put back.
func unarchived(t *testing.T, dir, arch string) string {
	t.Helper()
	flat := t.TempDir()
	if err := os.CopyFS(flat, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := os.CopyFS(shard.ShardDir(flat, i), os.DirFS(shard.ShardDir(arch, i))); err != nil {
			t.Fatal(err)
		}
	}
	return flat
}

// TestToolsReadTheArchive: verify, export, stock and inspect read the
// archive's segments before the live ones, given by --archive-dir,
// INVENTORY_ARCHIVE_DIR or the manifest, and answer as they do for the same
// log kept in one directory; without any, they refuse the log, naming the
// missing blocks.
func TestToolsReadTheArchive(t *testing.T) {
	dir, arch := archivedDir(t)
	flat := unarchived(t, dir, arch)
	outputs := func(d string, extra ...string) map[string]string {
		t.Helper()
		got := map[string]string{}
		for _, args := range [][]string{
			{"export"},
			{"stock"},
			{"stock", "--as-of", at(300)},
			{"export", "--product", "p3", "--from", at(10), "--to", at(200)},
		} {
			code, out, errOut := ctl(append(append(args, "--data-dir", d), extra...)...)
			if code != exitOK || out == "" {
				t.Fatalf("%v on %s: status %d, %s", args, d, code, errOut)
			}
			got[strings.Join(args, " ")] = out
		}
		return got
	}
	want := outputs(flat)
	for name, got := range outputs(dir, "--archive-dir", arch) {
		if got != want[name] {
			t.Errorf("%s with --archive-dir:\n%.300s\nwant\n%.300s", name, got, want[name])
		}
	}
	code, out, errOut := ctl("verify", "--data-dir", dir, "--archive-dir", arch)
	if code != exitOK || !strings.Contains(out, "verify: OK") {
		t.Errorf("verify with --archive-dir: status %d\n%s%s", code, out, errOut)
	}
	code, out, _ = ctl("inspect", "--data-dir", dir, "--archive-dir", arch)
	if code != exitOK || !strings.Contains(out, "archive "+shard.ShardDir(arch, 0)+": ") || strings.Contains(out, "PROBLEM") {
		t.Errorf("inspect with --archive-dir: status %d\n%s", code, out)
	}

	// Without the archive: a refusal naming the missing blocks.
	for _, cmd := range []string{"verify", "export", "stock", "inspect"} {
		code, out, errOut := ctl(cmd, "--data-dir", dir)
		if code != exitProblem || !strings.Contains(out+errOut, "are missing") {
			t.Errorf("%s without the archive: status %d\n%s%s", cmd, code, out, errOut)
		}
	}

	// The environment, then the manifest, stand in for the flag.
	t.Setenv("INVENTORY_ARCHIVE_DIR", arch)
	for name, got := range outputs(dir) {
		if got != want[name] {
			t.Errorf("%s with INVENTORY_ARCHIVE_DIR differs", name)
		}
	}
	t.Setenv("INVENTORY_ARCHIVE_DIR", "")
	if _, err := shard.RecordArchiveDir(dir, arch); err != nil {
		t.Fatal(err)
	}
	for name, got := range outputs(dir) {
		if got != want[name] {
			t.Errorf("%s with the manifest's archive differs", name)
		}
	}
	if _, _, errOut := ctl("stock", "--data-dir", dir); !strings.Contains(errOut, "from the manifest") {
		t.Errorf("stock does not say where the archive came from: %q", errOut)
	}
}

// TestSnapshotCommandReadsTheArchive: with every snapshot damaged, the
// snapshot command replays the whole log, archive first; without the
// archive it refuses.
func TestSnapshotCommandReadsTheArchive(t *testing.T) {
	dir, arch := archivedDir(t)
	for i := range 2 {
		infos, _ := shard.ListSnapshots(shard.SnapshotDir(dir, i))
		for _, info := range infos {
			if err := os.WriteFile(info.Path, []byte("damaged"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if code, out, errOut := ctl("snapshot", "--data-dir", dir); code == exitOK {
		t.Errorf("snapshot without the archive: status 0\n%s%s", out, errOut)
	}
	code, out, errOut := ctl("snapshot", "--data-dir", dir, "--archive-dir", arch, "--segment-bytes", "2048")
	if code != exitOK || strings.Count(errOut, "replaying the whole journal") != 2 {
		t.Fatalf("snapshot with the archive: status %d\n%s%s", code, out, errOut)
	}
	if got, _ := shard.ManifestArchiveDir(dir); got != arch {
		t.Errorf("the manifest records the archive %q, want %q (given to snapshot)", got, arch)
	}
	// The new snapshots fit the log; the damaged ones kept beside them
	// (two are kept) are still reported.
	code, out, errOut = ctl("verify", "--data-dir", dir, "--archive-dir", arch)
	if code != exitProblem || strings.Count(out, "matches the log") != 2 || strings.Count(out, "do not check out") != 2 {
		t.Errorf("verify after: status %d, want 1 for the damaged snapshots left and the new ones matching the log\n%s%s", code, out, errOut)
	}
}
