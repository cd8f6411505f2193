package shard

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockHolder reports whether a process holds dir's lock (LockDir), and
// its PID, without taking the lock or writing anything: it looks the LOCK
// file's inode up in /proc/locks. Read-only tools use it to say that they
// read a directory a running inventoryd writes; taking the lock, even for
// a moment, could make that inventoryd's start fail. A directory without a
// LOCK file has no holder.
func LockHolder(dir string) (pid int, held bool, err error) {
	fi, err := os.Stat(filepath.Join(dir, LockName))
	if os.IsNotExist(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false, fmt.Errorf("lock holder: no inode for %s", dir)
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0, false, fmt.Errorf("lock holder: %w", err)
	}
	defer f.Close()
	// Lines read "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF",
	// the fifth field the PID and the sixth major:minor:inode.
	want := ":" + strconv.FormatUint(st.Ino, 10)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || !strings.HasSuffix(fields[5], want) {
			continue
		}
		dev := strings.TrimSuffix(fields[5], want)
		if maj, mnr, ok := strings.Cut(dev, ":"); !ok || !sameDev(maj, mnr, uint64(st.Dev)) {
			continue
		}
		pid, _ := strconv.Atoi(fields[4])
		return pid, true, nil
	}
	return 0, false, sc.Err()
}

// sameDev reports whether the hexadecimal major and minor numbers of
// /proc/locks name device dev.
func sameDev(maj, mnr string, dev uint64) bool {
	a, err1 := strconv.ParseUint(maj, 16, 32)
	b, err2 := strconv.ParseUint(mnr, 16, 32)
	if err1 != nil || err2 != nil {
		return false
	}
	major := (dev >> 8 & 0xfff) | (dev >> 32 & ^uint64(0xfff))
	minor := (dev & 0xff) | (dev >> 12 & ^uint64(0xff))
	return a == major && b == minor
}
