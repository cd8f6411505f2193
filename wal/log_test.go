package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	tidwall "github.com/tidwall/wal"
)

// rec is a record as Commit or Open reported it.
type rec struct {
	loc  uint64
	data []byte
}

// openLog opens dir and returns the log, the report and the replayed records.
func openLog(t testing.TB, dir string, opts Options) (*Log, Report, []rec) {
	t.Helper()
	l, rep, got, err := tryOpen(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l, rep, got
}

// tryOpen opens dir and collects copies of the replayed records.
func tryOpen(dir string, opts Options) (*Log, Report, []rec, error) {
	var got []rec
	l, rep, err := Open(dir, opts, func(loc uint64, data []byte) error {
		got = append(got, rec{loc, bytes.Clone(data)})
		return nil
	})
	return l, rep, got, err
}

// genBlock returns 1 to countMax records of 1 to sizeMax bytes, printable and
// distinct, so that a record never contains a zero byte.
func genBlock(rng *rand.Rand, countMax, sizeMax int) [][]byte {
	recs := make([][]byte, 1+rng.IntN(countMax))
	for i := range recs {
		size := 1 + rng.IntN(sizeMax)
		r := make([]byte, size)
		for j := range r {
			r[j] = 'a' + byte(rng.IntN(26))
		}
		recs[i] = r
	}
	return recs
}

// commit commits recs and returns them with their locs.
func commit(t testing.TB, l *Log, recs [][]byte) []rec {
	t.Helper()
	locs := make([]uint64, len(recs))
	if err := l.Commit(recs, locs); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	out := make([]rec, len(recs))
	for i := range recs {
		out[i] = rec{locs[i], recs[i]}
	}
	return out
}

// sameRecs reports differences between two record lists.
func sameRecs(t *testing.T, got, want []rec) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d records, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i].loc != want[i].loc || !bytes.Equal(got[i].data, want[i].data) {
			t.Errorf("record %d: got loc %#x %q, want loc %#x %q", i, got[i].loc, got[i].data, want[i].loc, want[i].data)
			return
		}
	}
}

// readAll checks that Read returns every record.
func readAll(t *testing.T, l *Log, recs []rec) {
	t.Helper()
	for i, r := range recs {
		got, err := l.Read(r.loc)
		if err != nil || !bytes.Equal(got, r.data) {
			t.Errorf("Read record %d at %#x: got %q, %v; want %q", i, r.loc, got, err, r.data)
			return
		}
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10, BlockBytesMax: 64 << 10}
	l, rep, got := openLog(t, dir, opts)
	if len(got) != 0 || rep.Segments != 0 || rep.Repaired || l.LastSeq() != 0 {
		t.Fatalf("new log: got %d records, report %+v, LastSeq %d", len(got), rep, l.LastSeq())
	}
	rng := rand.New(rand.NewPCG(1, 1))
	var want []rec
	const blocks = 300
	for b := range blocks {
		recs := genBlock(rng, 20, 300)
		if b%50 == 7 {
			recs = append(recs, bytes.Repeat([]byte{'x'}, 6000)) // block larger than a segment
		}
		want = append(want, commit(t, l, recs)...)
	}
	if got := l.LastSeq(); got != blocks {
		t.Errorf("LastSeq: got %d, want %d", got, blocks)
	}
	readAll(t, l, want)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	l, rep, got = openLog(t, dir, opts)
	defer l.Close()
	sameRecs(t, got, want)
	if rep.Blocks != blocks || rep.Records != uint64(len(want)) || rep.Segments < 10 || rep.Repaired {
		t.Errorf("reopen report: got %+v, want %d blocks, %d records, ≥ 10 segments, no repair", rep, blocks, len(want))
	}
	if got := l.LastSeq(); got != blocks {
		t.Errorf("LastSeq after reopen: got %d, want %d", got, blocks)
	}
	readAll(t, l, want)
}

func TestReadDuringCommit(t *testing.T) {
	l, _, _ := openLog(t, t.TempDir(), Options{SegmentBytes: 4 << 10})
	defer l.Close()
	var (
		mu        sync.Mutex
		committed []rec
		wg        sync.WaitGroup
	)
	done := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for {
				select {
				case <-done:
					return
				default:
				}
				mu.Lock()
				n := len(committed)
				var r rec
				if n > 0 {
					r = committed[rng.IntN(n)]
				}
				mu.Unlock()
				if n == 0 {
					runtime.Gosched()
					continue
				}
				if got, err := l.Read(r.loc); err != nil || !bytes.Equal(got, r.data) {
					t.Errorf("Read %#x: got %q, %v; want %q", r.loc, got, err, r.data)
					return
				}
			}
		})
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for range 200 {
		recs := commit(t, l, genBlock(rng, 10, 200))
		mu.Lock()
		committed = append(committed, recs...)
		mu.Unlock()
	}
	close(done)
	wg.Wait()
}

// TestReadNeverCommitted reads every byte offset of every segment: only the
// locs of committed records may succeed.
func TestReadNeverCommitted(t *testing.T) {
	dir := t.TempDir()
	l, _, _ := openLog(t, dir, Options{SegmentBytes: 1 << 10})
	defer l.Close()
	rng := rand.New(rand.NewPCG(4, 4))
	want := map[uint64][]byte{}
	for range 40 {
		for _, r := range commit(t, l, genBlock(rng, 5, 100)) {
			want[r.loc] = r.data
		}
	}
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	hits := 0
	for _, s := range segs {
		fi, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		for off := range int(fi.Size()) + 2 {
			loc := makeLoc(s.first, off)
			got, err := l.Read(loc)
			if data, ok := want[loc]; ok {
				hits++
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("Read committed %#x: got %q, %v; want %q", loc, got, err, data)
				}
			} else if err == nil {
				t.Errorf("Read never-committed %#x: got %q, want an error", loc, got)
			}
		}
	}
	if hits != len(want) {
		t.Errorf("found %d committed locs in the files, want %d", hits, len(want))
	}
	for _, loc := range []uint64{0, 1, makeLoc(999, 0), makeLoc(1, locOffsetLimit-1), 1<<64 - 1} {
		if got, err := l.Read(loc); err == nil {
			t.Errorf("Read %#x: got %q, want an error", loc, got)
		}
	}
}

// checkMirror compares the mirrored tail state of l with the files on disk.
func checkMirror(t *testing.T, l *Log) {
	t.Helper()
	segs, err := listSegments(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		fi, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		if i < len(segs)-1 {
			if fi.Size() < int64(l.opts.SegmentBytes) {
				t.Errorf("closed segment %s: got %d bytes, want ≥ %d", filepath.Base(s.path), fi.Size(), l.opts.SegmentBytes)
			}
			continue
		}
		if s.first != l.written.first || fi.Size() != int64(l.written.bytes) {
			t.Fatalf("tail on disk: %s with %d bytes; mirrored: %s with %d bytes",
				filepath.Base(s.path), fi.Size(), segmentName(l.written.first), l.written.bytes)
		}
		if l.located != l.written {
			t.Fatalf("located mirror %+v differs from written %+v with nothing in flight", l.located, l.written)
		}
	}
}

// countSyncs makes l count its directory fsyncs.
func countSyncs(l *Log) *int {
	n := new(int)
	l.syncDir = func(dir string) error {
		*n++
		return syncDir(dir)
	}
	return n
}

func TestMirrorMatchesFiles(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 2 << 10, BlockBytesMax: 16 << 10}
	l, _, _ := openLog(t, dir, opts)
	syncs := countSyncs(l)
	rng := rand.New(rand.NewPCG(5, 5))
	var want []rec
	for range 400 {
		want = append(want, commit(t, l, genBlock(rng, 8, 200))...)
		checkMirror(t, l)
	}
	segs, _ := listSegments(dir)
	if *syncs != len(segs)-1 || len(segs) < 20 {
		t.Errorf("got %d directory fsyncs for %d segments, want one per created segment", *syncs, len(segs))
	}
	l.Close()

	// Reopened with a smaller target, the tail is over SegmentBytes and
	// tidwall cycles before writing: the block lands at the start of a new
	// segment named after its own index.
	tailSize := int(l.written.bytes)
	next := l.LastSeq() + 1
	l, _, _ = openLog(t, dir, Options{SegmentBytes: tailSize - 1, BlockBytesMax: opts.BlockBytesMax})
	syncs = countSyncs(l)
	recs := [][]byte{[]byte("first"), []byte("second")}
	got := commit(t, l, recs)
	frame := uvarintBytes(uint64(blockBytes(recs)))
	if want := makeLoc(next, frame+headerBytes); got[0].loc != want {
		t.Errorf("cycle before write: got loc %#x, want %#x", got[0].loc, want)
	}
	checkMirror(t, l)
	if *syncs != 1 {
		t.Errorf("cycle before write: got %d directory fsyncs, want 1", *syncs)
	}
	want = append(want, got...)
	l.Close()

	// Reopened with the tail exactly at SegmentBytes, tidwall appends to it
	// and cycles after the write.
	tailSize = int(l.written.bytes)
	first := l.written.first
	l, _, _ = openLog(t, dir, Options{SegmentBytes: tailSize, BlockBytesMax: opts.BlockBytesMax})
	syncs = countSyncs(l)
	got = commit(t, l, recs)
	if want := makeLoc(first, tailSize+frame+headerBytes); got[0].loc != want {
		t.Errorf("cycle after write: got loc %#x, want %#x", got[0].loc, want)
	}
	checkMirror(t, l)
	if l.written.first != l.LastSeq()+1 || l.written.bytes != 0 || *syncs != 1 {
		t.Errorf("cycle after write: tail %d with %d bytes, %d directory fsyncs; want %d, 0, 1",
			l.written.first, l.written.bytes, *syncs, l.LastSeq()+1)
	}
	want = append(want, got...)
	readAll(t, l, want)
	l.Close()

	l, _, all := openLog(t, dir, opts)
	defer l.Close()
	sameRecs(t, all, want)
}

func TestCommitArguments(t *testing.T) {
	l, _, _ := openLog(t, t.TempDir(), Options{BlockBytesMax: 1 << 10})
	defer l.Close()
	locs := make([]uint64, 4)
	tests := []struct {
		name string
		recs [][]byte
		locs []uint64
		want error
	}{
		{"no records", nil, locs, errNoRecords},
		{"short locs", [][]byte{{1}, {2}}, locs[:1], errShortLocs},
		{"empty record", [][]byte{{1}, {}}, locs, errEmptyRecord},
		{"block too large", [][]byte{make([]byte, 1<<10)}, locs, ErrBlockTooLarge},
	}
	for _, tt := range tests {
		if err := l.Commit(tt.recs, tt.locs); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	if l.LastSeq() != 0 {
		t.Errorf("LastSeq after refused commits: got %d, want 0", l.LastSeq())
	}
	// None of them fails the log.
	commit(t, l, [][]byte{[]byte("ok")})

	l.located.seq = seqLimit - 2
	if err := l.Commit([][]byte{{1}}, locs); !errors.Is(err, errSeqSpace) {
		t.Errorf("sequence space exhausted: got %v, want %v", err, errSeqSpace)
	}
}

func TestClose(t *testing.T) {
	l, _, _ := openLog(t, t.TempDir(), Options{})
	r := commit(t, l, [][]byte{[]byte("kept")})
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	if err := l.Commit([][]byte{{1}}, make([]uint64, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close: got %v, want ErrClosed", err)
	}
	readAll(t, l, r)
}

var errInjected = errors.New("injected fault")

func TestCommitFailure(t *testing.T) {
	tests := []struct {
		name string
		// inject arms a fault in l; it happens during the next commit.
		inject func(l *Log)
		// onDisk reports whether the failed block reached the file.
		onDisk bool
	}{
		{"write fails", func(l *Log) {
			l.write = func(*tidwall.Batch) error { return errInjected }
		}, false},
		{"fsync fails after write", func(l *Log) {
			l.write = func(b *tidwall.Batch) error {
				if err := l.tw.WriteBatch(b); err != nil {
					return err
				}
				return errInjected
			}
		}, true},
		{"directory fsync fails", func(l *Log) {
			l.syncDir = func(string) error { return errInjected }
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentBytes: 4 << 10}
			l, _, _ := openLog(t, dir, opts)
			rng := rand.New(rand.NewPCG(6, 6))
			var want []rec
			for range 5 {
				want = append(want, commit(t, l, genBlock(rng, 5, 100))...)
			}
			tt.inject(l)
			// The failing block fills the tail segment, so tidwall creates
			// the next one and Commit fsyncs the directory.
			failed := append(genBlock(rng, 5, 100), bytes.Repeat([]byte{'y'}, opts.SegmentBytes))
			locs := make([]uint64, len(failed))
			err := l.Commit(failed, locs)
			if !errors.Is(err, ErrFailed) || !errors.Is(err, errInjected) {
				t.Fatalf("failing Commit: got %v, want ErrFailed wrapping the fault", err)
			}
			l.write, l.syncDir = l.tw.WriteBatch, syncDir
			if err := l.Commit([][]byte{[]byte("after")}, locs); !errors.Is(err, ErrFailed) || !errors.Is(err, errInjected) {
				t.Errorf("later Commit: got %v, want ErrFailed wrapping the first fault", err)
			}
			if l.LastSeq() != 5 {
				t.Errorf("LastSeq: got %d, want 5", l.LastSeq())
			}
			l.Close()

			// A block whose commit failed may survive if its bytes hit the
			// file; every acknowledged block must.
			if tt.onDisk {
				for i, r := range failed {
					want = append(want, rec{locs[i], r})
				}
			}
			l, _, got := openLog(t, dir, opts)
			defer l.Close()
			sameRecs(t, got, want)
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"small segments", Options{SegmentBytes: 1 << 10, BlockBytesMax: 4 << 10}, true},
		{"at the locator limit", Options{SegmentBytes: 12 << 20, BlockBytesMax: 4 << 20}, true},
		{"over the locator limit", Options{SegmentBytes: 12 << 20, BlockBytesMax: 4<<20 + 1}, false},
		{"default block over the limit", Options{SegmentBytes: 13 << 20}, false},
		{"negative segment", Options{SegmentBytes: -1}, false},
		{"block below one record", Options{BlockBytesMax: blockBytesMin - 1}, false},
		{"negative block", Options{BlockBytesMax: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.opts.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestOpenCallbackError(t *testing.T) {
	dir := t.TempDir()
	l, _, _ := openLog(t, dir, Options{})
	commit(t, l, [][]byte{[]byte("a"), []byte("b")})
	l.Close()
	_, _, err := Open(dir, Options{}, func(uint64, []byte) error { return errInjected })
	if !errors.Is(err, errInjected) {
		t.Errorf("Open with failing fn: got %v, want the fn error", err)
	}
}

func TestCorruptErrorMessage(t *testing.T) {
	err := fmt.Errorf("context: %w", &CorruptError{Segment: "/d/00000000000000000007", Offset: 42, Reason: "header checksum mismatch"})
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatal("errors.As: no CorruptError")
	}
	const want = "context: wal: corrupt segment /d/00000000000000000007 at offset 42: header checksum mismatch"
	if got := err.Error(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestPipelinedLocateWrite locates blocks on one goroutine while another
// writes them, as a pipelined shard does: the Locs are those Commit would
// give, and every record reads back.
func TestPipelinedLocateWrite(t *testing.T) {
	dir := t.TempDir()
	l, _, err := Open(dir, Options{SegmentBytes: 4096}, nil)
	if err != nil {
		t.Fatal(err)
	}
	type block struct {
		recs [][]byte
		locs []uint64
	}
	queue := make(chan block, 2)
	done := make(chan error)
	go func() {
		for b := range queue {
			if err := l.Write(b.recs); err != nil {
				done <- err
				return
			}
			for i, loc := range b.locs {
				got, err := l.Read(loc)
				if err != nil || string(got) != string(b.recs[i]) {
					done <- fmt.Errorf("read %#x: %q %v", loc, got, err)
					return
				}
			}
		}
		done <- nil
	}()
	for n := 0; n < 300; n++ {
		recs := make([][]byte, 1+n%7)
		for i := range recs {
			recs[i] = []byte(strings.Repeat(string(rune('a'+i)), 1+(n*31+i)%400))
		}
		locs := make([]uint64, len(recs))
		if err := l.Locate(recs, locs); err != nil {
			t.Fatal(err)
		}
		queue <- block{recs, locs}
	}
	close(queue)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkMirror(t, l)
	l.Close()
}

// TestReadMany reads records from several segments in shuffled order, with
// runs in one segment and jumps between segments, and checks that one bad
// locator fails the whole read.
func TestReadMany(t *testing.T) {
	dir := t.TempDir()
	l, _, _ := openLog(t, dir, Options{SegmentBytes: 4096})
	defer l.Close()
	rng := rand.New(rand.NewPCG(11, 12))
	var all []rec
	for i := 0; i < 200; i++ {
		all = append(all, commit(t, l, genBlock(rng, 4, 100))...)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "0*")); len(segs) < 3 {
		t.Fatalf("want records over 3 or more segments, got %d", len(segs))
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	all = append(all, all[:50]...) // the same record twice is fine
	locs := make([]uint64, len(all))
	for i, r := range all {
		locs[i] = r.loc
	}
	got, err := l.ReadMany(locs)
	if err != nil {
		t.Fatalf("ReadMany: %v", err)
	}
	for i, r := range all {
		if !bytes.Equal(got[i], r.data) {
			t.Fatalf("record %d at %#x: got %q, want %q", i, r.loc, got[i], r.data)
		}
	}
	bad := append([]uint64{locs[0]}, locs[0]+1, locs[1])
	if got, err := l.ReadMany(bad); err == nil {
		t.Errorf("ReadMany with a locator inside a record: got %d records, want an error", len(got))
	}
	if got, err := l.ReadMany(nil); err != nil || len(got) != 0 {
		t.Errorf("ReadMany(nil): %d records, %v", len(got), err)
	}
}
