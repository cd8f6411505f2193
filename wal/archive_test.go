package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// archivedLog writes a log of many small segments in dir and returns it,
// open, with its records.
func archivedLog(t *testing.T, dir string, opts Options) (*Log, []rec) {
	t.Helper()
	l, _, _ := openLog(t, dir, opts)
	rng := rand.New(rand.NewPCG(5, 6))
	var all []rec
	for range 60 {
		all = append(all, commit(t, l, genBlock(rng, 4, 100))...)
	}
	return l, all
}

// names returns the segment file names in dir (none if it is missing).
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// readerAll reads the whole log with a Reader over dir and archive.
func readerAll(dir, archive string) ([]rec, error) {
	var got []rec
	r := NewReaderWithArchive(dir, archive)
	_, err := r.Next(0, func(loc uint64, data []byte) error {
		got = append(got, rec{loc, bytes.Clone(data)})
		return nil
	})
	return got, err
}

// TestArchive: Archive moves exactly the segments wholly before the one
// holding its locator, never the one being written; every reader then sees
// the same log as before: Read, ReadMany, Reader, Open and OpenAfter with
// the archive. Without the archive, Open and Reader refuse the log with a
// MissingError that names the missing blocks.
func TestArchive(t *testing.T) {
	dir, archive := t.TempDir(), filepath.Join(t.TempDir(), "shard-0000")
	opts := Options{SegmentBytes: 1 << 10, ArchiveDir: archive}
	l, all := archivedLog(t, dir, opts)
	before := mustList(t, dir)
	if len(before) < 8 {
		t.Fatalf("only %d segments", len(before))
	}
	// Nothing before the first segment: nothing moves.
	if n, _, err := l.Archive(all[0].loc); err != nil || n != 0 {
		t.Fatalf("Archive at the first record: %d segments, %v", n, err)
	}
	cut := all[len(all)/2].loc
	cutSeg, _ := splitLoc(cut)
	moved, size, err := l.Archive(cut)
	if err != nil {
		t.Fatal(err)
	}
	var wantLive, wantArch []uint64
	for _, s := range before {
		if s < cutSeg {
			wantArch = append(wantArch, s)
		} else {
			wantLive = append(wantLive, s)
		}
	}
	if got := mustList(t, dir); !slices.Equal(got, wantLive) {
		t.Errorf("live segments %v, want %v", got, wantLive)
	}
	if got := mustList(t, archive); !slices.Equal(got, wantArch) {
		t.Errorf("archived segments %v, want %v", got, wantArch)
	}
	if moved != len(wantArch) || size <= 0 {
		t.Errorf("Archive moved %d segments, %d bytes; want %d segments", moved, size, len(wantArch))
	}
	// The last record: everything but the tail segment moves.
	if _, _, err := l.Archive(all[len(all)-1].loc); err != nil {
		t.Fatal(err)
	}
	live := mustList(t, dir)
	lastSeg, _ := splitLoc(all[len(all)-1].loc)
	if len(live) != 1 || live[0] != before[len(before)-1] || live[0] < lastSeg {
		t.Errorf("after archiving up to the last record the live segments are %v, want only the tail %d", live, before[len(before)-1])
	}
	readAll(t, l, all)
	// Appending goes on; then every way of reading sees the whole log.
	rng := rand.New(rand.NewPCG(1, 2))
	all = append(all, commit(t, l, genBlock(rng, 4, 100))...)
	readAll(t, l, all)
	got, err := readerAll(dir, archive)
	if err != nil {
		t.Fatal(err)
	}
	sameRecs(t, got, all)
	l.Close()

	l, rep2, got := openLog(t, dir, opts)
	sameRecs(t, got, all)
	if rep2.Archived != len(before)-1 || rep2.ArchiveCleaned != 0 {
		t.Errorf("Open report: %d archived, %d cleaned; want %d, 0", rep2.Archived, rep2.ArchiveCleaned, len(before)-1)
	}
	readAll(t, l, all)
	l.Close()
	var tailRecs []rec
	l, _, err = OpenAfter(dir, opts, cut, func(loc uint64, data []byte) error {
		tailRecs = append(tailRecs, rec{loc, bytes.Clone(data)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all, func(r rec) bool { return r.loc == cut })
	sameRecs(t, tailRecs, all[i:])
	l.Close()

	// Without the archive: refused, never a log that begins mid-way.
	noArch := opts
	noArch.ArchiveDir = ""
	var me *MissingError
	if _, _, _, err := tryOpen(dir, noArch); !errors.As(err, &me) || me.First != live[0] || !strings.Contains(err.Error(), "blocks 1 to") {
		t.Errorf("Open without the archive: %v, want a MissingError from block %d", err, live[0])
	}
	if _, err := readerAll(dir, ""); !errors.As(err, &me) {
		t.Errorf("Reader without the archive: %v, want a MissingError", err)
	}
	// An archive that lacks them: the same refusal, naming it.
	if _, err := readerAll(dir, t.TempDir()); !errors.As(err, &me) || me.Archive == "" {
		t.Errorf("Reader with an empty archive: %v, want a MissingError naming it", err)
	}
	// A gap inside the archive is corruption.
	if err := os.Remove(filepath.Join(archive, segmentName(before[2]))); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if _, _, _, err := tryOpen(dir, opts); !errors.As(err, &ce) || filepath.Base(ce.Segment) != segmentName(before[3]) {
		t.Errorf("Open with a gap in the archive: %v, want a CorruptError at %s", err, segmentName(before[3]))
	}
	if _, err := readerAll(dir, archive); !errors.As(err, &ce) {
		t.Errorf("Reader with a gap in the archive: %v, want a CorruptError", err)
	}
}

// TestArchiveCrash stops an Archive before each step of a move, as a crash
// would, then checks that nothing is lost (every record reads back, through
// the running log and a Reader) and that the next Open cleans up: no
// temporary file, no segment in both directories, and the whole log.
func TestArchiveCrash(t *testing.T) {
	steps := []string{stepCopy, stepSyncCopy, stepRename, stepSyncArchive, stepRemove, stepSyncLive}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			dir, archive := t.TempDir(), filepath.Join(t.TempDir(), "shard-0000")
			opts := Options{SegmentBytes: 1 << 10, ArchiveDir: archive}
			l, all := archivedLog(t, dir, opts)
			before := mustList(t, dir)
			crash := segmentName(before[2]) // the third segment moved
			f := func(s, name string) error {
				if s == step && name == crash {
					return errors.New("crash")
				}
				return nil
			}
			archiveFaults.Store(&f)
			_, _, err := l.Archive(all[len(all)-1].loc)
			archiveFaults.Store(nil)
			if err == nil {
				t.Fatal("Archive did not stop")
			}
			readAll(t, l, all)
			got, err := readerAll(dir, archive)
			if err != nil {
				t.Fatalf("Reader after the crash: %v", err)
			}
			sameRecs(t, got, all)
			l.Close()
			if step == stepSyncCopy || step == stepRename {
				if !slices.Contains(names(t, archive), crash+archiveTmpSuffix) {
					t.Errorf("no temporary file left in the archive: %v", names(t, archive))
				}
			}

			l, rep, got := openLog(t, dir, opts)
			sameRecs(t, got, all)
			wantCleaned := map[string]int{stepCopy: 0, stepSyncCopy: 1, stepRename: 1, stepSyncArchive: 1, stepRemove: 1, stepSyncLive: 0}[step]
			if rep.ArchiveCleaned != wantCleaned {
				t.Errorf("Open cleaned %d files, want %d", rep.ArchiveCleaned, wantCleaned)
			}
			for _, n := range names(t, archive) {
				if strings.HasSuffix(n, archiveTmpSuffix) || slices.Contains(names(t, dir), n) {
					t.Errorf("after Open, %s is left in the archive", n)
				}
			}
			if got := len(mustList(t, dir)) + len(mustList(t, archive)); got != len(before) {
				t.Errorf("%d segments in both directories, want %d", got, len(before))
			}
			// The next Archive finishes the move.
			if _, _, err := l.Archive(all[len(all)-1].loc); err != nil {
				t.Fatal(err)
			}
			if live := mustList(t, dir); len(live) != 1 {
				t.Errorf("live segments after a second Archive: %v", live)
			}
			readAll(t, l, all)
			l.Close()
		})
	}
}

// TestArchiveCopiesDiffer: a segment in both directories whose copies
// differ is corruption; Open reports it and removes nothing, not even a
// temporary copy.
func TestArchiveCopiesDiffer(t *testing.T) {
	dir, archive := t.TempDir(), t.TempDir()
	opts := Options{SegmentBytes: 1 << 10, ArchiveDir: archive}
	l, _ := archivedLog(t, dir, opts)
	l.Close()
	first := segmentName(1)
	b, err := os.ReadFile(filepath.Join(dir, first))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(filepath.Join(archive, first), b, 0o640); err != nil {
		t.Fatal(err)
	}
	tmp := segmentName(2) + archiveTmpSuffix
	if err := os.WriteFile(filepath.Join(archive, tmp), b, 0o640); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if _, _, _, err := tryOpen(dir, opts); !errors.As(err, &ce) || ce.Segment != filepath.Join(archive, first) {
		t.Errorf("Open: %v, want a CorruptError naming the archive's copy", err)
	}
	if !slices.Contains(names(t, archive), first) || !slices.Contains(names(t, dir), first) || !slices.Contains(names(t, archive), tmp) {
		t.Errorf("Open of a corrupt log removed files: archive %v", names(t, archive))
	}
}

// TestReadDuringArchive reads every record again and again while Archive
// moves the segments: a read never misses one.
func TestReadDuringArchive(t *testing.T) {
	dir, archive := t.TempDir(), t.TempDir()
	opts := Options{SegmentBytes: 1 << 10, ArchiveDir: archive}
	l, all := archivedLog(t, dir, opts)
	defer l.Close()
	locs := make([]uint64, len(all))
	for i, r := range all {
		locs[i] = r.loc
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				recs, err := l.ReadMany(locs)
				if err != nil {
					t.Error(err)
					return
				}
				for i := range recs {
					if !bytes.Equal(recs[i], all[i].data) {
						t.Errorf("record %d differs", i)
						return
					}
				}
			}
		})
	}
	for i := 0; i < len(all); i += len(all) / 8 {
		if _, _, err := l.Archive(all[i].loc); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

// BenchmarkArchive moves 8 segments of 4 MiB (the default size) to an
// archive directory on the same file system: a copy, three fsyncs and a
// rename each.
func BenchmarkArchive(b *testing.B) {
	recs := benchRecords(1000)
	locs := make([]uint64, len(recs))
	b.SetBytes(8 * segmentBytesDefault)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		l, _, _ := openLog(b, dir, Options{ArchiveDir: b.TempDir()})
		for len(mustListB(b, dir)) < 10 {
			if err := l.Commit(recs, locs); err != nil {
				b.Fatal(err)
			}
		}
		segs := mustListB(b, dir)
		b.StartTimer()
		n, _, err := l.Archive(makeLoc(segs[8], 0))
		if err != nil || n != 8 {
			b.Fatalf("moved %d: %v", n, err)
		}
		b.StopTimer()
		l.Close()
	}
}

// BenchmarkReadManyArchived reads a page of 100 records from a live
// segment and from an archived one (which costs a failed open of the live
// path first), both on the same file system here.
func BenchmarkReadManyArchived(b *testing.B) {
	dir := b.TempDir()
	l, _, _ := openLog(b, dir, Options{SegmentBytes: 1 << 20, ArchiveDir: b.TempDir()})
	defer l.Close()
	recs := benchRecords(100)
	var first, last []uint64
	for len(mustListB(b, dir)) < 3 {
		locs := make([]uint64, len(recs))
		if err := l.Commit(recs, locs); err != nil {
			b.Fatal(err)
		}
		if first == nil {
			first = locs
		}
		last = locs
	}
	segs := mustListB(b, dir)
	if _, _, err := l.Archive(makeLoc(segs[1], 0)); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		locs []uint64
	}{{"live", last}, {"archived", first}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.ReadMany(c.locs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func mustListB(b *testing.B, dir string) []uint64 {
	segs, err := listSegments(dir)
	if err != nil {
		b.Fatal(err)
	}
	var out []uint64
	for _, s := range segs {
		out = append(out, s.first)
	}
	return out
}

// TestArchiveRefusesItsOwnDirectory: an archive directory that is the live
// directory under another name (a symbolic link) is refused by Open, by a
// Reader and by Archive, and nothing is removed.
func TestArchiveRefusesItsOwnDirectory(t *testing.T) {
	dir := t.TempDir()
	l, all := archivedLog(t, dir, Options{SegmentBytes: 1 << 10})
	before := mustList(t, dir)
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(dir, alias); err != nil {
		t.Fatal(err)
	}
	l.opts.ArchiveDir = alias // as if it had been opened with it
	if _, _, err := l.Archive(all[len(all)-1].loc); err == nil || !strings.Contains(err.Error(), "is the log's own directory") {
		t.Errorf("Archive into its own directory: %v", err)
	}
	l.Close()
	if _, _, err := Open(dir, Options{SegmentBytes: 1 << 10, ArchiveDir: alias}, nil); err == nil || !strings.Contains(err.Error(), "is the log's own directory") {
		t.Errorf("Open with its own directory as the archive: %v", err)
	}
	if _, err := readerAll(dir, alias); err == nil {
		t.Error("a Reader with its own directory as the archive: no error")
	}
	if got := mustList(t, dir); !slices.Equal(got, before) {
		t.Fatalf("segments %v, want %v untouched", got, before)
	}
	_, _, got := openLog(t, dir, Options{SegmentBytes: 1 << 10})
	sameRecs(t, got, all)
}

// TestArchiveNeverReplaces: two logs given one archive directory (a data
// directory and a restored copy of it, say) do not overwrite each other's
// segments: the second move fails as corruption and the first log's
// history still reads.
func TestArchiveNeverReplaces(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "shard-0000")
	a, b := t.TempDir(), t.TempDir()
	la, allA := archivedLog(t, a, Options{SegmentBytes: 1 << 10, ArchiveDir: archive})
	defer la.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	lb, _, _ := openLog(t, b, Options{SegmentBytes: 1 << 10, ArchiveDir: archive})
	defer lb.Close()
	var allB []rec
	for range 60 {
		allB = append(allB, commit(t, lb, genBlock(rng, 3, 50))...)
	}
	if n, _, err := la.Archive(allA[len(allA)-1].loc); err != nil || n == 0 {
		t.Fatalf("first log's Archive: %d segments, %v", n, err)
	}
	liveB := mustList(t, b)
	var ce *CorruptError
	if _, _, err := lb.Archive(allB[len(allB)-1].loc); !errors.As(err, &ce) || !strings.Contains(err.Error(), "another log's") {
		t.Fatalf("second log's Archive into the first's archive: %v, want a CorruptError", err)
	}
	if got := mustList(t, b); !slices.Equal(got, liveB) {
		t.Errorf("second log's segments %v, want %v: nothing moved", got, liveB)
	}
	readAll(t, la, allA)
	readAll(t, lb, allB)
}

// TestArchiveTakesACopyFoundAtTheLink: a copy of the segment that appears
// in the archive between the check and the link (here put there at the
// rename step) is taken as the archived copy: the move finishes, with no
// temporary file and no live copy left.
func TestArchiveTakesACopyFoundAtTheLink(t *testing.T) {
	dir, archive := t.TempDir(), filepath.Join(t.TempDir(), "shard-0000")
	l, all := archivedLog(t, dir, Options{SegmentBytes: 1 << 10, ArchiveDir: archive})
	defer l.Close()
	first := segmentName(mustList(t, dir)[0])
	f := func(step, name string) error {
		if step == stepRename && name == first {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				err = os.WriteFile(filepath.Join(archive, name), b, filePerms)
			}
			return err
		}
		return nil
	}
	archiveFaults.Store(&f)
	n, _, err := l.Archive(all[len(all)-1].loc)
	archiveFaults.Store(nil)
	if err != nil || n == 0 {
		t.Fatalf("Archive: %d segments, %v", n, err)
	}
	if slices.Contains(names(t, dir), first) || slices.Contains(names(t, archive), first+archiveTmpSuffix) {
		t.Errorf("left behind: live %v, archive %v", names(t, dir), names(t, archive))
	}
	readAll(t, l, all)
}

// TestArchiveNeedsItsParent: an archive directory whose parent is missing
// (its disk not mounted) fails the move; nothing moves.
func TestArchiveNeedsItsParent(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(t.TempDir(), "unmounted", "shard-0000")
	l, all := archivedLog(t, dir, Options{SegmentBytes: 1 << 10, ArchiveDir: archive})
	defer l.Close()
	before := mustList(t, dir)
	if _, _, err := l.Archive(all[len(all)-1].loc); err == nil || !strings.Contains(err.Error(), "is its disk mounted") {
		t.Errorf("Archive with the archive's parent missing: %v", err)
	}
	if got := mustList(t, dir); !slices.Equal(got, before) {
		t.Errorf("segments %v, want %v", got, before)
	}
	readAll(t, l, all)
}

// TestArchiveRetryFsyncsArchive: a move that failed at the archive's fsync
// and is retried in the same process (the next snapshot) fsyncs the
// archive directory before it removes the live copy, so that a power cut
// cannot take the archive's entry after the live one is gone.
func TestArchiveRetryFsyncsArchive(t *testing.T) {
	dir, archive := t.TempDir(), filepath.Join(t.TempDir(), "shard-0000")
	l, all := archivedLog(t, dir, Options{SegmentBytes: 1 << 10, ArchiveDir: archive})
	defer l.Close()
	crash := segmentName(mustList(t, dir)[1])
	fail := func(s, name string) error {
		if s == stepSyncArchive && name == crash {
			return errors.New("fsync failed")
		}
		return nil
	}
	archiveFaults.Store(&fail)
	_, _, err := l.Archive(all[len(all)-1].loc)
	archiveFaults.Store(nil)
	if err == nil {
		t.Fatal("Archive did not stop")
	}
	var steps []string
	record := func(s, name string) error {
		if name == crash {
			steps = append(steps, s)
		}
		return nil
	}
	archiveFaults.Store(&record)
	_, _, err = l.Archive(all[len(all)-1].loc)
	archiveFaults.Store(nil)
	if err != nil {
		t.Fatal(err)
	}
	i, j := slices.Index(steps, stepSyncArchive), slices.Index(steps, stepRemove)
	if i < 0 || j < 0 || i > j {
		t.Errorf("retried move of %s took steps %v: want the archive fsynced before the live copy is removed", crash, steps)
	}
	readAll(t, l, all)
}
