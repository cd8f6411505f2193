package shard

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMakeDirSyncsParents creates a data directory two levels deep: the
// parent of each directory created must be fsynced (so that a power cut
// cannot lose the new entries), and the data directory itself once the
// manifest is in it.
func TestMakeDirSyncsParents(t *testing.T) {
	var synced []string
	old := dirSynced
	dirSynced = func(dir string) error {
		synced = append(synced, dir)
		return syncDir(dir)
	}
	defer func() { dirSynced = old }()
	root := t.TempDir()
	data := filepath.Join(root, "a", "data")
	if err := PrepareDir(data, 2); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{root, filepath.Join(root, "a"), data} {
		if !slices.Contains(synced, want) {
			t.Errorf("%s was not fsynced; synced: %v", want, synced)
		}
	}
}

// TestLockDir takes a data directory's lock twice: the second is refused,
// naming the directory and the holder's PID, until the first is released.
func TestLockDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	if !errors.Is(err, ErrDirLocked) || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second lock: %v, want ErrDirLocked naming %s and pid %d", err, dir, os.Getpid())
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := LockDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Release()
	// The lock file does not make a new directory look used.
	if err := PrepareDir(dir, 2); err != nil {
		t.Errorf("prepare a directory holding only its lock file: %v", err)
	}
}
