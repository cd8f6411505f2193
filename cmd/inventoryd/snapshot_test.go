package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
)

// TestSnapshotKillAndRestart runs the real binary with a snapshot every
// 1000 entries: after SIGKILL, and after the newest snapshot of a shard is
// damaged, a restart shows the same stock, history pages and reservations,
// and refuses reused reservation ids that left memory.
func TestSnapshotKillAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir, "--snapshot-entries", "1000")
	products := []string{"a", "b", "c", "d", "e"}
	for i := range 4 {
		if r := s.do("POST", "/v1/batch", string(addBatch(products, 5, fmt.Sprintf("add%d", i)))); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.raw)
		}
	}
	var resvs [][2]string
	for i := range 40 {
		p, id := products[i%len(products)], fmt.Sprintf("order-%d", i)
		s.write(p, "r"+id, map[string]any{"type": "RESERVE", "quantity": 2, "reservation_id": id})
		if i%4 != 0 {
			s.write(p, "c"+id, map[string]any{"type": "COMMIT", "reservation_id": id})
		}
		resvs = append(resvs, [2]string{p, id})
	}
	read := func(s *server) string {
		out := ""
		for _, p := range products {
			out += string(s.do("GET", "/v1/products/"+p, nil).raw)
			out += string(s.do("GET", "/v1/products/"+p+"/transactions?after=100&limit=100", nil).raw)
		}
		for _, r := range resvs {
			out += string(s.do("GET", "/v1/products/"+r[0]+"/reservations/"+r[1], nil).raw)
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n < 2; {
		n = 0
		for i := range 4 {
			infos, _ := shard.ListSnapshots(shard.SnapshotDir(dir, i))
			n += len(infos)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d snapshots after 10 s, want 2 at least", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := read(s)
	s.kill()
	s = start(t, dir)
	if after := read(s); after != before {
		t.Fatalf("after SIGKILL:\n%s\nwant\n%s", after, before)
	}
	for _, r := range resvs {
		got := s.write(r[0], "again"+r[1], map[string]any{"type": "RESERVE", "quantity": 1, "reservation_id": r[1]})
		if got.status != 409 {
			t.Fatalf("reused %v: %d %s", r, got.status, got.raw)
		}
	}
	before = read(s)
	s.kill()
	for i := range 4 {
		infos, _ := shard.ListSnapshots(shard.SnapshotDir(dir, i))
		if len(infos) == 0 {
			continue
		}
		b, err := os.ReadFile(infos[0].Path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(infos[0].Path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = start(t, dir)
	if !strings.Contains(s.logs.String(), "snapshot skipped") {
		t.Errorf("no damaged snapshot reported:\n%s", s.logs)
	}
	if after := read(s); after != before {
		t.Fatalf("after damaged snapshots:\n%s\nwant\n%s", after, before)
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
}
