package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/inventory-ledger/inventory/shard"
)

// TestDiskFull runs one shard's WAL on a 256 KiB tmpfs and writes to it
// until the disk is full: that shard answers 503 unavailable, the others
// keep working, and after a restart with room every acknowledged write is
// there. It needs root and mount(8); elsewhere it is skipped.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	s := start(t, dir)
	s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done

	full := shard.ShardDir(dir, 0)
	saved := full + ".saved"
	if err := os.Rename(full, saved); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(full, 0o750)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", full).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", full).Run() })
	if out, err := exec.Command("sh", "-c", "cp -a "+saved+"/. "+full+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}

	var onFull, onOther string
	for i := 0; onFull == "" || onOther == ""; i++ {
		p := fmt.Sprintf("p%d", i)
		if shard.Route(p, 4) == 0 && onFull == "" {
			onFull = p
		} else if shard.Route(p, 4) != 0 && onOther == "" {
			onOther = p
		}
	}
	s = start(t, dir)
	reason := fmt.Sprintf("%0200d", 0) // big entries fill the disk sooner
	var acked []string
	for i := 0; ; i++ {
		if i > 20000 {
			t.Fatal("the disk never filled")
		}
		key := fmt.Sprintf("k%d", i)
		r := s.write(onFull, key, map[string]any{"type": "ADD", "quantity": 1, "reason": reason})
		if r.status == 201 {
			acked = append(acked, key)
			continue
		}
		if r.status != 503 || r.body["code"] != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("write %d on a full disk: %d %s", i, r.status, r.raw)
		}
		break
	}
	if r := s.write(onFull, "after", map[string]any{"type": "ADD", "quantity": 1}); r.status != 503 {
		t.Errorf("the failed shard took a write: %d", r.status)
	}
	if r := s.do("GET", "/v1/products/"+onFull, nil); r.status != 503 {
		t.Errorf("the failed shard answered a read: %d", r.status)
	}
	if r := s.write(onOther, "other", map[string]any{"type": "ADD", "quantity": 1}); r.status != 201 {
		t.Errorf("another shard: %d %s", r.status, r.raw)
	}
	// Readiness tells the load balancer, naming the failed shard.
	if r := s.do("GET", "/readyz", nil); r.status != 503 || r.body["code"] != "unavailable" ||
		fmt.Sprint(r.body["shards"]) != "[0]" || !strings.Contains(fmt.Sprint(r.body["detail"]), "failed") {
		t.Errorf("/readyz with shard 0 failed: %d %s", r.status, r.raw)
	}
	s.kill()

	// Give the shard room again, as an operator would, and restart.
	roomy := t.TempDir()
	exec.Command("sh", "-c", "cp -a "+full+"/. "+roomy+"/").Run()
	exec.Command("umount", full).Run()
	os.RemoveAll(full)
	if out, err := exec.Command("sh", "-c", "cp -a "+roomy+" "+full).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	s = start(t, dir)
	r := s.do("GET", "/v1/products/"+onFull, nil)
	if got := num(r.body["on_hand"]); r.status != 200 || got < int64(len(acked)) {
		t.Fatalf("after restart: %d, on hand %d, %d acknowledged", r.status, got, len(acked))
	}
	for _, key := range acked {
		if r := s.write(onFull, key, map[string]any{"type": "ADD", "quantity": 1, "reason": reason}); r.status != 200 {
			t.Fatalf("acknowledged %s: %d after restart", key, r.status)
		}
	}
	t.Logf("%d writes acknowledged before the disk filled; all present after restart", len(acked))
}
