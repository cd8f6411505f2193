package shard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockName is the file in a data directory that its owning process holds
// locked for as long as it runs.
const LockName = "LOCK"

// DirLock is the exclusive hold of one process on a data directory.
type DirLock struct {
	f *os.File
}

// ErrDirLocked is returned by LockDir when another process holds the lock.
var ErrDirLocked = errors.New("data directory is in use")

// LockDir creates dir if it is missing (fsyncing its parent, so that the new
// entry is durable) and takes an exclusive lock on its LOCK file, or refuses
// at once if another process holds it: two processes appending to the same
// logs would each overwrite the other's acknowledged writes.
//
// The lock is flock(2) on a file kept open: the kernel drops it when the
// process exits, however it exits, so a crash never leaves a stale lock. The
// file holds the owner's PID, for the refusal message only; it is never
// deleted (deleting it would let a third process lock a new file while the
// second still holds the old one).
func LockDir(dir string) (*DirLock, error) {
	if err := MakeDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = fmt.Sprintf("process %d", pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is locked by %s (%s); two processes on one data directory would lose acknowledged writes", ErrDirLocked, dir, holder, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Only the holder writes its PID, and only after it holds the lock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// Release drops the lock. The process exiting drops it too.
func (l *DirLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	err = errors.Join(err, l.f.Close())
	l.f = nil
	return err
}

// MakeDir creates dir and any missing parents, fsyncing the parent of each
// directory it creates, so that a crash cannot lose the new entries. An
// existing dir is left as it is.
func MakeDir(dir string) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("data dir %s is not a directory", dir)
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MakeDir(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create data dir: %w", err)
	}
	return dirSynced(parent)
}

// dirSynced fsyncs a directory; a variable so that a test can watch which
// directories are synced.
var dirSynced = syncDir

// syncDir fsyncs directory dir, making entries created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
