package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	tidwall "github.com/tidwall/wal"
)

// Limits. Relations between them are checked in Options.Validate.
const (
	// segmentBytesDefault is the default target segment size. tidwall keeps
	// the whole tail segment in RAM for every open log, i.e. per shard, so a
	// few MiB bounds memory while keeping the directory small.
	segmentBytesDefault = 4 << 20

	// blockBytesMaxDefault is the default largest block: a generous group
	// commit of small records. Commit keeps a block buffer and tidwall a batch
	// buffer of this size per shard.
	blockBytesMaxDefault = 4 << 20

	// locOffsetBits is the number of low Loc bits holding the byte offset.
	locOffsetBits = 24

	// locOffsetLimit bounds a record's byte offset within its segment file
	// (exclusive). SegmentBytes + BlockBytesMax must not exceed it.
	locOffsetLimit = 1 << locOffsetBits

	// seqLimit bounds block sequence numbers (exclusive). A segment's first
	// index takes the 40 high bits of a Loc; tidwall may create the segment
	// seq+1 after writing block seq, so seq stays below seqLimit-1.
	seqLimit = 1 << (64 - locOffsetBits)
)

// File permissions handed to tidwall: shard data is private to the service.
const (
	dirPerms  = 0o750
	filePerms = 0o640
)

var (
	// ErrFailed marks a Log that hit a write, fsync or other I/O error during
	// Commit. The Log refuses all further commits: after a failed write the
	// file and tidwall's memory may disagree, so the only recovery is Close,
	// then Open, which repairs and replays.
	ErrFailed = errors.New("wal: log failed")

	// ErrClosed is returned by Commit after Close.
	ErrClosed = errors.New("wal: log closed")

	// ErrBlockTooLarge is returned by Commit for a block over
	// Options.BlockBytesMax. Nothing is written and the Log stays usable.
	ErrBlockTooLarge = errors.New("wal: block too large")

	errNoRecords   = errors.New("wal: commit of no records")
	errShortLocs   = errors.New("wal: fewer locs than records")
	errEmptyRecord = errors.New("wal: empty record")
	errSeqSpace    = errors.New("wal: sequence space exhausted")
)

// CorruptError reports invalid bytes in a segment file: found by Open, which
// then modifies nothing, or by Read.
type CorruptError struct {
	Segment string // path of the segment file
	Offset  int64  // byte offset of the bad block or record in the file
	Reason  string
}

// Error names the segment, the offset and the reason.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt segment %s at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// Loc locates a record: the first index of its segment in the high 40 bits,
// the byte offset of its frame in the segment file in the low 24 bits.
// Methods take and return plain uint64 so that other packages can declare
// interfaces over a Log without importing wal.
type Loc = uint64

// makeLoc packs a segment's first index and a byte offset into a Loc.
func makeLoc(segFirst uint64, off int) uint64 {
	if off < 0 || off >= locOffsetLimit || segFirst == 0 || segFirst >= seqLimit {
		panic(fmt.Sprintf("wal: locator out of range: segment %d offset %d", segFirst, off))
	}
	return segFirst<<locOffsetBits | uint64(off)
}

// splitLoc unpacks a Loc.
func splitLoc(loc uint64) (segFirst uint64, off int64) {
	return loc >> locOffsetBits, int64(loc & (locOffsetLimit - 1))
}

// segmentName is tidwall's file name for the segment starting at index first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%020d", first)
}

// Options configures a Log. The zero value selects the defaults. Keep the
// values stable across runs of one log: Read rejects records longer than the
// current BlockBytesMax.
type Options struct {
	// SegmentBytes is the target segment file size; default 4 MiB because
	// tidwall keeps the whole tail segment in RAM, for every shard.
	SegmentBytes int

	// BlockBytesMax is the largest block, header and record frames included,
	// that Commit accepts; default 4 MiB.
	BlockBytesMax int

	// ArchiveDir, if not empty, is the directory of the log's archived
	// segments (see archive.go): Open and Read read it too, Open cleans up
	// an interrupted move, and Archive moves old sealed segments there.
	// Empty: the log is its directory alone, and must start at index 1.
	ArchiveDir string
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = segmentBytesDefault
	}
	if o.BlockBytesMax == 0 {
		o.BlockBytesMax = blockBytesMaxDefault
	}
	return o
}

// Validate reports whether o, with defaults filled in, describes a usable
// log: every record offset must fit the 24 offset bits of a Loc.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case o.SegmentBytes < 0:
		return fmt.Errorf("wal: SegmentBytes %d is negative", o.SegmentBytes)
	case o.BlockBytesMax < blockBytesMin:
		return fmt.Errorf("wal: BlockBytesMax %d is below %d", o.BlockBytesMax, blockBytesMin)
	case o.SegmentBytes+o.BlockBytesMax > locOffsetLimit:
		return fmt.Errorf("wal: SegmentBytes %d + BlockBytesMax %d exceed %d", o.SegmentBytes, o.BlockBytesMax, locOffsetLimit)
	}
	return nil
}

// Report describes what Open found, for logging and metrics.
type Report struct {
	Segments int    // segment files found
	Skipped  int    // segments OpenAfter did not read: all before its locator
	Blocks   uint64 // valid blocks replayed
	Records  uint64 // valid records replayed
	Bytes    int64  // segment bytes kept, after any repair
	Archived int    // of Segments, those found in the archive directory

	// ArchiveCleaned counts the files an interrupted Archive left that Open
	// removed: temporary copies, and archive copies of live segments.
	ArchiveCleaned int

	Repaired       bool   // a torn tail was cut off the last segment
	RepairSegment  string // path of the repaired segment
	RepairOffset   int64  // where the segment now ends
	RepairCutBytes int64  // bytes cut off
	RepairReason   string // why the first cut block was invalid

	Duration time.Duration // time Open took
}

// Log is a write-ahead log of one shard. Open, Commit and Close are called
// only from the owning goroutine; Read, LastSeq and Dir from any goroutine.
// A pipelined writer may split Commit into Locate, on the goroutine that
// orders blocks, and Write, on one other goroutine (see Locate).
type Log struct {
	dir  string  // absolute; immutable
	opts Options // defaults filled in; immutable

	tw      *tidwall.Log
	batch   tidwall.Batch // reused: one entry per Write
	block   []byte        // reused block buffer
	lastSeq atomic.Uint64

	// tidwall's segment cycling, mirrored twice: located is where the next
	// Locate places a block, written where the next Write lands. They are
	// equal whenever no located block waits to be written.
	located tail // owned by the Locate goroutine
	written tail // owned by the Write goroutine

	failed  error  // first Write failure, wrapping ErrFailed
	stalled *stall // a Write interrupted by a failed open, to resume
	closed  bool

	// Seams for fault tests; tw.WriteBatch and syncDir in production.
	write   func(*tidwall.Batch) error
	syncDir func(dir string) error
}

// tail mirrors tidwall's tail segment to compute where blocks land.
type tail struct {
	seq   uint64 // last block placed
	first uint64 // first index of the tail segment
	bytes int    // size of the tail segment file
}

// place advances t past the next block, of n bytes, and returns where its
// payload starts: tidwall cycles a tail already over segmentBytes before a
// write, and a tail reaching segmentBytes right after it. created reports
// that the write creates a segment file.
func (t *tail) place(n, segmentBytes int) (seq, first uint64, base int, created bool) {
	seq = t.seq + 1
	if t.bytes > segmentBytes {
		t.first, t.bytes, created = seq, 0, true
	}
	frame := uvarintBytes(uint64(n))
	first, base = t.first, t.bytes+frame
	t.bytes += frame + n
	if t.bytes >= segmentBytes {
		t.first, t.bytes, created = seq+1, 0, true
	}
	t.seq = seq
	return seq, first, base, created
}

// Commit appends recs as one block, with one write and one fsync, plus an
// fsync of the directory when tidwall created a segment file. It stores the
// Loc of recs[i] in locs[i]. On return without error the block is durable.
// It is Locate followed by Write.
//
// An empty recs, an empty record or too few locs is refused without writing.
// A block over BlockBytesMax returns ErrBlockTooLarge and the Log stays
// usable. A *RetryError (a failed open, see Write) leaves the Log usable
// too: call Commit again with the same recs and locs. Any other failure
// fails the Log for good: this and every later Commit return an error
// wrapping ErrFailed and the first cause.
//
// Commit is called only from the owning goroutine. It does not allocate in
// steady state; tidwall grows its in-memory copy of the tail segment by
// append, which costs a few allocations per segment.
func (l *Log) Commit(recs [][]byte, locs []uint64) error {
	switch {
	case l.closed:
		return ErrClosed
	case l.failed != nil:
		return l.failed
	}
	if l.stalled != nil {
		// The last Commit returned a *RetryError: these are its records,
		// already located.
		return l.Write(recs)
	}
	if err := l.Locate(recs, locs); err != nil {
		return err
	}
	return l.Write(recs)
}

// Locate computes the Loc of every record of recs as the next block after
// those already located, without any I/O, and stores it in locs. Write must
// then write the same recs, blocks in the order they were located. Locate
// and Write may run on two goroutines at once (Locate touches only the
// located mirror), so that a shard can decide its next batch while the last
// one is being written; a block that fails to write fails the Log, and every
// block located after it is then lost, never acknowledged.
//
// Refusals (no records, an empty record, too few locs, ErrBlockTooLarge) do
// not fail the Log and locate nothing.
func (l *Log) Locate(recs [][]byte, locs []uint64) error {
	switch {
	case len(recs) == 0:
		return errNoRecords
	case len(locs) < len(recs):
		return errShortLocs
	}
	n := headerBytes
	for i, r := range recs {
		if len(r) == 0 {
			return errEmptyRecord
		}
		locs[i] = uint64(n)
		n += uvarintBytes(uint64(len(r))) + recordCRCBytes + len(r)
	}
	if n > l.opts.BlockBytesMax {
		return fmt.Errorf("wal: block of %d bytes over %d: %w", n, l.opts.BlockBytesMax, ErrBlockTooLarge)
	}
	if l.located.seq+1 >= seqLimit-1 {
		return errSeqSpace
	}
	_, first, base, _ := l.located.place(n, l.opts.SegmentBytes)
	for i := range recs {
		locs[i] = makeLoc(first, base+int(locs[i]))
	}
	return nil
}

// Write writes the oldest located block, which must hold recs, with one
// write and one fsync, plus an fsync of the directory when tidwall created a
// segment file. On return without error the block is durable. Write is
// called from one goroutine at a time, in Locate order.
//
// A failed open (of the segment file tidwall creates when the tail is full,
// or of the directory to fsync it), typically EMFILE when the process is out
// of file descriptors, wrote nothing that the log depends on: Write returns a
// *RetryError and the log stays usable. The caller calls Write again with
// the same recs, later; that call finishes the interrupted work (creating
// the segment, fsyncing the directory, reopening tidwall) and writes the
// block unless it was already durable. Any other failure (a write, an fsync,
// a close) fails the Log for good (ErrFailed): after a failed write or fsync
// neither the file nor tidwall's memory can be trusted.
func (l *Log) Write(recs [][]byte) error {
	switch {
	case l.closed:
		return ErrClosed
	case l.failed != nil:
		return l.failed
	}
	var seq uint64
	var created bool
	if p := l.stalled; p != nil {
		if err := l.resume(); err != nil {
			return err
		}
		l.stalled = nil
		if p.written {
			l.lastSeq.Store(p.seq)
			return nil
		}
		seq, created = p.seq, p.created
	} else {
		seq, _, _, created = l.written.place(blockBytes(recs), l.opts.SegmentBytes)
	}
	l.block = appendBlock(l.block[:0], seq, recs, nil)
	l.batch.Clear()
	l.batch.Write(seq, l.block)
	if err := l.write(&l.batch); err != nil {
		if !isOpenError(err) {
			return l.fail(seq, err)
		}
		// tidwall cycles segments by fsyncing and closing the tail, then
		// opening the next file. A failed open leaves it without a tail
		// file: it must be reopened. The block is durable if tidwall had
		// written it before cycling (a write that filled the tail), and
		// unwritten if the cycle came first (a tail already over size).
		last, _ := l.tw.LastIndex()
		l.stalled = &stall{seq: seq, created: created, written: last == seq, reopen: true}
		return &RetryError{Err: err}
	}
	if created {
		if err := l.syncDir(l.dir); err != nil {
			if !isOpenError(err) {
				return l.fail(seq, err)
			}
			l.stalled = &stall{seq: seq, created: created, written: true}
			return &RetryError{Err: err}
		}
		// Drop the segment tidwall just cached: we never read through
		// tidwall, and it would double the memory a shard holds.
		if err := l.tw.ClearCache(); err != nil {
			return l.fail(seq, err)
		}
	}
	l.lastSeq.Store(seq)
	return nil
}

// stall is a Write interrupted by a failed open; the next Write resumes it.
type stall struct {
	seq     uint64 // the interrupted block
	created bool   // the block's placement created a segment file
	written bool   // the block is durable: only the segment work is left
	reopen  bool   // tidwall lost its tail file: create it and reopen
}

// resume finishes what an interrupted Write left: the next segment file,
// the directory fsync and a fresh tidwall handle. Every step can be
// repeated, so a resume that fails with another open error simply stalls
// again.
func (l *Log) resume() error {
	p := l.stalled
	if p.reopen {
		next := p.seq // the first index of the segment tidwall failed to create
		if p.written {
			next++
		}
		f, err := os.OpenFile(filepath.Join(l.dir, segmentName(next)), os.O_CREATE|os.O_RDWR, filePerms)
		if err != nil {
			return &RetryError{Err: err}
		}
		if err := f.Close(); err != nil {
			return l.fail(p.seq, err)
		}
	}
	if err := l.syncDir(l.dir); err != nil {
		if isOpenError(err) {
			return &RetryError{Err: err}
		}
		return l.fail(p.seq, err)
	}
	if !p.reopen {
		if err := l.tw.ClearCache(); err != nil {
			return l.fail(p.seq, err)
		}
		return nil
	}
	tw, err := openTidwall(l.dir, l.opts)
	if err != nil {
		if isOpenError(err) {
			return &RetryError{Err: err}
		}
		return l.fail(p.seq, err)
	}
	want := p.seq - 1
	if p.written {
		want = p.seq
	}
	if last, err := tw.LastIndex(); err != nil || last != want {
		tw.Close()
		return l.fail(p.seq, fmt.Errorf("reopened at index %d (%v), want %d", last, err, want))
	}
	// The old handle's tail file is already closed; it holds no descriptor.
	l.tw = tw
	p.reopen = false
	return nil
}

// isOpenError reports whether err is a failure to open a file or directory,
// which creates nothing and writes nothing.
func isOpenError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Op == "open"
}

// RetryError is a Write that stopped at a failed open and wrote nothing the
// log depends on. The Log is not failed: call Write again with the same
// records once the cause (most often: no free file descriptor) has passed.
type RetryError struct {
	Err error
}

func (e *RetryError) Error() string { return "wal: write interrupted, retry: " + e.Err.Error() }

// Unwrap returns the failed open's error.
func (e *RetryError) Unwrap() error { return e.Err }

// Retryable reports true: callers outside this package recognise the error
// by this method.
func (e *RetryError) Retryable() bool { return true }

// fail records the first Commit failure and returns it.
func (l *Log) fail(seq uint64, cause error) error {
	l.failed = fmt.Errorf("%w: commit block %d: %w", ErrFailed, seq, cause)
	return l.failed
}

// readHeadBytes is how much Read reads first: enough for typical records,
// so most reads take one system call.
const readHeadBytes = 512

// Read returns a copy of the committed record at loc after checking its
// checksum. A loc that Commit or Open never returned yields an error: its
// bytes would have to pass a CRC32C check by chance (odds 2^-32).
// Read is safe to call from any goroutine, also during Commit and after
// Close: it reads the segment file by path and touches no mutable state.
func (l *Log) Read(loc uint64) ([]byte, error) {
	recs, err := l.ReadMany([]uint64{loc})
	if err != nil {
		return nil, err
	}
	return recs[0], nil
}

// ReadMany is Read for several locs, returning their records in order. It
// opens each segment file once for a run of locs in it, so that a page of
// history costs one open, not one per entry.
func (l *Log) ReadMany(locs []uint64) ([][]byte, error) {
	recs := make([][]byte, len(locs))
	var f *os.File
	var open uint64 // first index of the segment f reads, 0 for none
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for i, loc := range locs {
		segFirst, _ := splitLoc(loc)
		if segFirst == 0 || segFirst >= seqLimit {
			return nil, fmt.Errorf("wal: read loc %#x: no such segment", loc)
		}
		if segFirst != open {
			if f != nil {
				f.Close()
			}
			var err error
			name := segmentName(segFirst)
			seg := segment{path: filepath.Join(l.dir, name)}
			if a := l.opts.ArchiveDir; a != "" {
				seg.alt = filepath.Join(a, name)
			}
			if f, err = openSegment(seg); err != nil {
				return nil, fmt.Errorf("wal: read loc %#x: %w", loc, err)
			}
			open = segFirst
		}
		rec, err := l.readAt(f, loc)
		if err != nil {
			return nil, err
		}
		recs[i] = rec
	}
	return recs, nil
}

// readAt reads the record at loc from f, its segment file.
func (l *Log) readAt(f *os.File, loc uint64) ([]byte, error) {
	_, off := splitLoc(loc)
	var head [readHeadBytes]byte
	n, err := f.ReadAt(head[:], off)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("wal: read loc %#x: %w", loc, err)
	}
	corrupt := func(reason string) error {
		return fmt.Errorf("wal: read loc %#x: %w", loc, &CorruptError{Segment: f.Name(), Offset: off, Reason: reason})
	}
	size, vn := binary.Uvarint(head[:n])
	switch {
	case vn <= 0 || vn != uvarintBytes(size):
		return nil, corrupt("bad record length")
	case size == 0 || size > uint64(l.opts.BlockBytesMax):
		return nil, corrupt(fmt.Sprintf("record length %d out of range", size))
	case n < vn+recordCRCBytes:
		return nil, corrupt("record runs past end of file")
	}
	sum := binary.LittleEndian.Uint32(head[vn:])
	data := make([]byte, size)
	have := copy(data, head[vn+recordCRCBytes:n])
	if have < len(data) {
		if _, err := f.ReadAt(data[have:], off+int64(vn+recordCRCBytes+have)); err != nil {
			if err == io.EOF {
				return nil, corrupt("record runs past end of file")
			}
			return nil, fmt.Errorf("wal: read loc %#x: %w", loc, err)
		}
	}
	if crc32.Checksum(data, castagnoli) != sum {
		return nil, corrupt("record checksum mismatch")
	}
	return data, nil
}

// LastSeq returns the sequence number (tidwall index) of the last committed
// block, or 0 if the log holds none. Safe from any goroutine.
func (l *Log) LastSeq() uint64 { return l.lastSeq.Load() }

// Dir returns the absolute path of the log directory.
func (l *Log) Dir() string { return l.dir }

// Close syncs and closes the log. Later calls return nil; later Commits
// return ErrClosed. Called only from the owning goroutine.
func (l *Log) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	if l.stalled != nil && l.stalled.reopen {
		return nil // tidwall's tail file is already closed
	}
	if err := l.tw.Close(); err != nil {
		return fmt.Errorf("wal: close %s: %w", l.dir, err)
	}
	return nil
}

// syncDir fsyncs directory dir, making entries created or changed in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return d.Close()
}
