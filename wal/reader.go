package wal

import "fmt"

// Reader reads a log read-only, block by block in log order, for offline
// tools and for checks that run beside the log's writer (another process
// or goroutine). It never writes, creates or repairs anything, and checks
// what Open checks: every block's checksums, version and sequence, every
// record's checksum, segments contiguous from index 1.
//
// It reads only what is complete. An invalid block at the end of the last
// segment that Open would cut as a torn tail (a crash's leftover, or a
// block the writer is writing right now) ends a Next without error; Tail
// describes it, and a later Next starts again from it. Invalid data
// anywhere else is a *CorruptError.
//
// A Reader is used by one goroutine at a time.
type Reader struct {
	dir     string
	archive string // "" for none
	seq     uint64 // last block read
	seg     uint64 // first index of the segment holding the next block, 0 before the first
	off     int    // offset of the next block in that segment
	buf     []byte
	tail    Tail
}

// Tail describes an incomplete block at the end of the log.
type Tail struct {
	Segment string // path of the last segment; "" when the log ends cleanly
	Offset  int64  // where the incomplete block starts
	Bytes   int64  // bytes from there to the end of the file
	Reason  string
}

// NewReader returns a Reader of the log in dir, positioned before its
// first block.
func NewReader(dir string) *Reader { return &Reader{dir: dir} }

// NewReaderWithArchive returns a Reader of the log whose older segments
// are in archive and the others in dir (see Options.ArchiveDir): it reads
// the archive's segments first, then dir's, contiguous across both. A
// segment in both is read from dir; temporary files are ignored.
func NewReaderWithArchive(dir, archive string) *Reader {
	return &Reader{dir: dir, archive: archive}
}

// Seq returns the sequence number of the last block read, 0 before any.
func (r *Reader) Seq() uint64 { return r.seq }

// Tail describes the incomplete block the last Next stopped at, if any.
func (r *Reader) Tail() Tail { return r.tail }

// Next reads the blocks after the last one read, up to and including block
// until (0: to the end of what is complete), passing each record in log
// order with its Loc to fn; rec is valid only during the call. It returns
// the number of records passed. An error from fn stops it and is returned.
func (r *Reader) Next(until uint64, fn func(loc uint64, rec []byte) error) (int, error) {
	r.tail = Tail{}
	segs, _, err := listLog(r.dir, r.archive)
	if err != nil {
		return 0, err
	}
	if r.seg == 0 {
		if err := checkFirst(segs, r.dir, r.archive); err != nil {
			return 0, err
		}
	}
	n := 0
	for i, seg := range segs {
		if r.seg != 0 && seg.first < r.seg {
			continue // read already
		}
		if seg.first != r.seg {
			if seg.first != r.seq+1 {
				return n, &CorruptError{Segment: seg.path, Reason: fmt.Sprintf("segment starts at index %d, want %d", seg.first, r.seq+1)}
			}
			if seg.first >= seqLimit {
				return n, &CorruptError{Segment: seg.path, Reason: "segment index out of locator range"}
			}
			r.seg, r.off = seg.first, 0
		}
		data, err := r.read(seg)
		if err != nil {
			return n, err
		}
		if r.off > len(data) {
			return n, &CorruptError{Segment: seg.path, Offset: int64(r.off), Reason: "the segment shrank while it was read"}
		}
		last := i == len(segs)-1
		for r.off < len(data) {
			if until != 0 && r.seq >= until {
				return n, nil
			}
			b := parseBlock(data, r.off, r.seq+1)
			if b.reason != "" {
				if last && b.tear(data, r.off) {
					r.tail = Tail{Segment: seg.path, Offset: int64(r.off), Bytes: int64(len(data) - r.off), Reason: b.reason}
					return n, nil
				}
				return n, &CorruptError{Segment: seg.path, Offset: int64(r.off), Reason: b.reason}
			}
			block := data[r.off+b.frame : b.end]
			for pos := headerBytes; pos < len(block); {
				recOff := r.off + b.frame + pos
				if recOff >= locOffsetLimit {
					return n, &CorruptError{Segment: seg.path, Offset: int64(recOff), Reason: "record offset beyond locator range"}
				}
				var rec []byte
				rec, pos = nextRecord(block, pos)
				if err := fn(makeLoc(seg.first, recOff), rec); err != nil {
					return n, err
				}
				n++
			}
			r.seq++
			r.off = b.end
		}
	}
	return n, nil
}

// read returns the contents of the file at path in a buffer reused across
// segments.
func (r *Reader) read(seg segment) ([]byte, error) {
	s := scanner{buf: r.buf}
	data, err := s.read(seg)
	r.buf = s.buf
	return data, err
}
