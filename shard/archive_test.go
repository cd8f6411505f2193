package shard

import (
	"context"
	"slices"
	"testing"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// TestArchiveAfterSnapshot: once a snapshot is durable the journal is
// asked to archive up to the locator of the oldest snapshot the shard
// keeps, never past it (so the fallback snapshot keeps its log), in
// non-decreasing order. A failing archive is counted and the shard goes
// on writing.
func TestArchiveAfterSnapshot(t *testing.T) {
	dir := t.TempDir()
	te := &testEngine{t: t, js: shardtest.Journals(1), clock: newFakeClock()}
	te.cfg = Config{Shards: 1, Clock: te.clock.now, SnapshotEntries: 20,
		SnapshotDir: func(i int) string { return SnapshotDir(dir, i) }}
	te.open()
	for range 100 {
		te.write(add("p", 1))
	}
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := te.js[0].Archived()
	infos, err := ListSnapshots(SnapshotDir(dir, 0))
	if err != nil || len(infos) != SnapshotsKept {
		t.Fatalf("snapshots: %v, %v", infos, err)
	}
	if len(calls) < 2 || !slices.IsSorted(calls) {
		t.Fatalf("archive calls %v: want two at least, in order", calls)
	}
	oldest, newest := infos[len(infos)-1].Loc, infos[0].Loc
	if last := calls[len(calls)-1]; last != oldest || last >= newest {
		t.Errorf("last archive up to %d, want the oldest kept snapshot's %d (newest %d)", last, oldest, newest)
	}
	if got := counterValue(t, te.m.snapshots.archiveFailures); got != 0 {
		t.Errorf("%v archive failures", got)
	}

	te.js[0].FailArchive(errInjected)
	te.open()
	for range 50 {
		te.write(add("p", 1))
	}
	if err := te.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, te.m.snapshots.archiveFailures); got < 1 {
		t.Errorf("%v archive failures counted, want at least 1", got)
	}
	if n := len(te.js[0].Archived()); n <= len(calls) {
		t.Errorf("no archive attempted after the restart")
	}
	te.open()
	if s := te.stock("p"); s.Version != 150 || s.OnHand != 150 {
		t.Errorf("after a failing archive: %+v", s)
	}
}
