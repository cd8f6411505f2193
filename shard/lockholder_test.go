package shard

import (
	"os"
	"testing"
)

func TestLockHolder(t *testing.T) {
	dir := t.TempDir()
	if _, held, err := LockHolder(dir); held || err != nil {
		t.Fatalf("new directory: held %v, err %v", held, err)
	}
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pid, held, err := LockHolder(dir)
	if !held || err != nil || pid != os.Getpid() {
		t.Errorf("locked: pid %d held %v err %v, want %d", pid, held, err, os.Getpid())
	}
	l.Release()
	if _, held, err := LockHolder(dir); held || err != nil {
		t.Errorf("released: held %v, err %v", held, err)
	}
}
