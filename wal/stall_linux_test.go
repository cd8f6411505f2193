package wal

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	tidwall "github.com/tidwall/wal"
)

// exhaustDescriptors lowers the soft RLIMIT_NOFILE to a little above what
// the process has open, then opens /dev/null until open fails with EMFILE.
// It returns a function that closes those files again; the limit is
// restored when the test ends.
func exhaustDescriptors(t *testing.T) (release func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = uint64(len(ents) + 32)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	var held []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatalf("filling descriptors: %v", err)
			}
			break
		}
		held = append(held, f)
	}
	release = func() {
		for _, f := range held {
			f.Close()
		}
		held = nil
	}
	t.Cleanup(release)
	return release
}

// TestWriteStallsWithoutDescriptors runs a log out of file descriptors at a
// segment rollover: Commit must return a *RetryError and leave the log
// usable, and once descriptors are free the same Commit must finish, every
// record exactly once, with the locators it returned.
func TestWriteStallsWithoutDescriptors(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10, BlockBytesMax: 16 << 10}
	l, _, _ := openLog(t, dir, opts)
	rng := rand.New(rand.NewPCG(7, 7))
	var want []rec
	for range 5 {
		want = append(want, commit(t, l, genBlock(rng, 4, 300))...)
	}

	release := exhaustDescriptors(t)
	stalls := 0
	for range 200 { // at ~1 KiB a block, a 4 KiB segment fills within a few
		recs := genBlock(rng, 4, 300)
		locs := make([]uint64, len(recs))
		err := l.Commit(recs, locs)
		if err == nil {
			want = append(want, recsAt(recs, locs)...)
			continue
		}
		var re *RetryError
		if !errors.As(err, &re) || errors.Is(err, ErrFailed) {
			t.Fatalf("Commit without descriptors: got %v, want a *RetryError", err)
		}
		var pe *fs.PathError
		if !errors.As(err, &pe) || !errors.Is(pe.Err, syscall.EMFILE) {
			t.Errorf("RetryError wraps %v, want the failed open's EMFILE", re.Err)
		}
		stalls++
		// Still no descriptor: the retry stalls again, and nothing breaks.
		if err := l.Commit(recs, locs); !errors.As(err, &re) {
			t.Fatalf("retry without descriptors: got %v, want a *RetryError", err)
		}
		release()
		if err := l.Commit(recs, locs); err != nil {
			t.Fatalf("retry with descriptors free: %v", err)
		}
		want = append(want, recsAt(recs, locs)...)
		break
	}
	if stalls != 1 {
		t.Fatalf("got %d stalls, want 1: the log never rolled over", stalls)
	}
	for range 20 { // more rollovers after the stall
		want = append(want, commit(t, l, genBlock(rng, 4, 300))...)
	}
	checkReopened(t, l, dir, opts, want)
}

// TestWriteStallsAtDirectorySync fails the directory fsync's open after a
// rollover: the block is durable, the retry only syncs the directory.
func TestWriteStallsAtDirectorySync(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 2 << 10, BlockBytesMax: 16 << 10}
	l, _, _ := openLog(t, dir, opts)
	fails := 1
	syncs := 0
	l.syncDir = func(d string) error {
		if fails > 0 {
			fails--
			return &fs.PathError{Op: "open", Path: d, Err: syscall.EMFILE}
		}
		syncs++
		return syncDir(d)
	}
	rng := rand.New(rand.NewPCG(8, 8))
	var want []rec
	retried := false
	for len(want) < 200 {
		recs := genBlock(rng, 4, 300)
		locs := make([]uint64, len(recs))
		err := l.Commit(recs, locs)
		if err != nil {
			var re *RetryError
			if !errors.As(err, &re) {
				t.Fatalf("Commit: got %v, want a *RetryError", err)
			}
			if err := l.Commit(recs, locs); err != nil {
				t.Fatalf("retry: %v", err)
			}
			retried = true
		}
		want = append(want, recsAt(recs, locs)...)
	}
	if !retried || syncs == 0 {
		t.Fatalf("retried %v, %d directory syncs: the stall never happened", retried, syncs)
	}
	checkReopened(t, l, dir, opts, want)
}

// TestWriteFailureStaysFatal checks that a failed write is not mistaken for a
// failed open.
func TestWriteFailureStaysFatal(t *testing.T) {
	l, _, _ := openLog(t, t.TempDir(), Options{})
	defer l.Close()
	l.write = func(*tidwall.Batch) error {
		return &fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}
	}
	err := l.Commit([][]byte{[]byte("a")}, make([]uint64, 1))
	var re *RetryError
	if errors.As(err, &re) || !errors.Is(err, ErrFailed) {
		t.Fatalf("got %v, want ErrFailed", err)
	}
}

// blockSegment puts a directory where the segment starting at index first
// will be created, so that opening it fails as a real open can (EISDIR here,
// EMFILE when another goroutine takes the descriptor tidwall just freed).
func blockSegment(t *testing.T, dir string, first uint64) (unblock func()) {
	t.Helper()
	path := filepath.Join(dir, segmentName(first))
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// stallTwice expects Commit of recs to return a *RetryError twice, the
// failed open named in it.
func stallTwice(t *testing.T, l *Log, recs [][]byte, locs []uint64) {
	t.Helper()
	for range 2 {
		err := l.Commit(recs, locs)
		var re *RetryError
		if !errors.As(err, &re) || errors.Is(err, ErrFailed) {
			t.Fatalf("Commit: got %v, want a *RetryError", err)
		}
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Op != "open" {
			t.Fatalf("RetryError wraps %v, want the failed open", re.Err)
		}
	}
}

// TestWriteStallsAtSegmentCreate fails tidwall's open of the next segment
// when a write fills the tail: the block is durable, tidwall has no tail
// file, and the retry creates it, reopens tidwall and acknowledges.
func TestWriteStallsAtSegmentCreate(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10, BlockBytesMax: 16 << 10}
	l, _, _ := openLog(t, dir, opts)
	rng := rand.New(rand.NewPCG(10, 10))
	var want []rec
	want = append(want, commit(t, l, genBlock(rng, 4, 300))...)
	// The next segment starts after the block that fills this one.
	var recs [][]byte
	var locs []uint64
	for {
		recs = genBlock(rng, 4, 300)
		probe := l.written
		if _, _, _, created := probe.place(blockBytes(recs), opts.SegmentBytes); created {
			break
		}
		want = append(want, commit(t, l, recs)...)
	}
	unblock := blockSegment(t, dir, l.LastSeq()+2)
	locs = make([]uint64, len(recs))
	stallTwice(t, l, recs, locs)
	if !l.stalled.written || !l.stalled.reopen {
		t.Fatalf("stall %+v: want the block written and tidwall to reopen", *l.stalled)
	}
	unblock()
	if err := l.Commit(recs, locs); err != nil {
		t.Fatalf("retry: %v", err)
	}
	want = append(want, recsAt(recs, locs)...)
	for range 20 {
		want = append(want, commit(t, l, genBlock(rng, 4, 300))...)
	}
	checkReopened(t, l, dir, opts, want)
}

// TestWriteStallsBeforeWriting fails the open when tidwall cycles before it
// writes (a tail already over SegmentBytes): nothing was written, and the
// retry writes the block into the new segment.
func TestWriteStallsBeforeWriting(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10, BlockBytesMax: 16 << 10}
	l, _, _ := openLog(t, dir, opts)
	rng := rand.New(rand.NewPCG(9, 9))
	var want []rec
	for range 5 {
		want = append(want, commit(t, l, genBlock(rng, 4, 300))...)
	}
	l.Close()
	small := Options{SegmentBytes: l.written.bytes - 1, BlockBytesMax: opts.BlockBytesMax}
	l, _, _ = openLog(t, dir, small)
	next := l.LastSeq() + 1

	unblock := blockSegment(t, dir, next)
	recs := genBlock(rng, 4, 300)
	locs := make([]uint64, len(recs))
	stallTwice(t, l, recs, locs)
	if l.stalled.written {
		t.Fatalf("stall %+v: want the block unwritten", *l.stalled)
	}
	unblock()
	if err := l.Commit(recs, locs); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if first, _ := splitLoc(locs[0]); first != next {
		t.Errorf("block landed in segment %d, want the new segment %d", first, next)
	}
	want = append(want, recsAt(recs, locs)...)
	checkReopened(t, l, dir, small, want)
}

func recsAt(recs [][]byte, locs []uint64) []rec {
	out := make([]rec, len(recs))
	for i := range recs {
		out[i] = rec{locs[i], recs[i]}
	}
	return out
}

// checkReopened checks that l's files match its mirror and hold want, read
// through l, and again after a close and a reopen with opts.
func checkReopened(t *testing.T, l *Log, dir string, opts Options, want []rec) {
	t.Helper()
	checkMirror(t, l)
	readAll(t, l, want)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _, got := openLog(t, dir, opts)
	defer l.Close()
	sameRecs(t, got, want)
}
