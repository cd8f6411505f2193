package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	tidwall "github.com/tidwall/wal"
)

// segmentNameBytes is the length of tidwall's segment file names: %020d.
const segmentNameBytes = 20

// Open opens the log in dir, creating dir if missing. It validates every
// segment in order and calls fn, if not nil, for every record in log order
// with its Loc; rec is valid only during the call. It cuts a torn tail off the
// last segment, then opens the log for appending. See doc.go for which
// damage is repaired and which is reported as a *CorruptError.
//
// If Open fails, fn may have seen part of the log: discard what it built.
func Open(dir string, opts Options, fn func(loc uint64, rec []byte) error) (*Log, Report, error) {
	return OpenAfter(dir, opts, 0, fn)
}

// OpenAfter is Open for a caller that holds the state of the log up to the
// record at locator after (a snapshot): fn sees only the records at after
// and later, and the segments whose records all lie before after are
// neither read nor validated (their names are still checked for
// contiguity). The torn-tail repair of the last segment is the same as
// Open's. fn seeing a record at after itself tells the caller that the log
// still holds the record its snapshot ends with.
func OpenAfter(dir string, opts Options, after uint64, fn func(loc uint64, rec []byte) error) (*Log, Report, error) {
	start := time.Now()
	var rep Report
	if err := opts.Validate(); err != nil {
		return nil, rep, err
	}
	opts = opts.withDefaults()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	if opts.ArchiveDir != "" {
		if opts.ArchiveDir, err = filepath.Abs(opts.ArchiveDir); err != nil {
			return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
		}
	}
	if err := makeDir(dir); err != nil {
		return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	segs, dups, err := listLog(dir, opts.ArchiveDir)
	if err != nil {
		return nil, rep, err
	}
	if err := checkFirst(segs, dir, opts.ArchiveDir); err != nil {
		return nil, rep, err
	}
	rep.Segments = len(segs)
	for _, seg := range segs {
		if seg.archived {
			rep.Archived++
		}
	}

	s := scanner{fn: fn, rep: &rep, after: after}
	afterSeg, _ := splitLoc(after)
	tailFirst, tailBytes := uint64(1), 0
	for i, seg := range segs {
		last := i == len(segs)-1
		if seg.first != s.seq+1 {
			return nil, rep, &CorruptError{Segment: seg.path, Reason: fmt.Sprintf("segment starts at index %d, want %d", seg.first, s.seq+1)}
		}
		if seg.first >= seqLimit {
			return nil, rep, &CorruptError{Segment: seg.path, Reason: "segment index out of locator range"}
		}
		if !last && segs[i+1].first <= afterSeg {
			// Every record of seg lies before after: not read.
			s.seq = segs[i+1].first - 1
			rep.Skipped++
			continue
		}
		size, err := s.scanSegment(seg, last)
		if err != nil {
			return nil, rep, err
		}
		rep.Bytes += int64(size)
		tailFirst, tailBytes = seg.first, size
	}

	if opts.ArchiveDir != "" {
		// Only a log found sound is cleaned: a corrupt one is left as it is.
		if rep.ArchiveCleaned, err = cleanArchive(opts.ArchiveDir, dups); err != nil {
			return nil, rep, err
		}
	}

	tw, err := openTidwall(dir, opts)
	if err != nil {
		return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	if len(segs) == 0 {
		// tidwall created the first segment file.
		if err := syncDir(dir); err != nil {
			tw.Close()
			return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
		}
	}
	last, err := tw.LastIndex()
	if err == nil && last != s.seq {
		err = fmt.Errorf("tidwall last index %d, scanned %d", last, s.seq)
	}
	if err != nil {
		tw.Close()
		return nil, rep, fmt.Errorf("wal: open %s: %w", dir, err)
	}

	l := &Log{
		dir:     dir,
		opts:    opts,
		tw:      tw,
		located: tail{seq: s.seq, first: tailFirst, bytes: tailBytes},
		written: tail{seq: s.seq, first: tailFirst, bytes: tailBytes},
		syncDir: syncDir,
	}
	l.write = func(b *tidwall.Batch) error { return l.tw.WriteBatch(b) }
	l.lastSeq.Store(s.seq)
	rep.Blocks = s.seq
	rep.Duration = time.Since(start)
	return l, rep, nil
}

// openTidwall opens tidwall's log in dir with the options this package
// always uses.
func openTidwall(dir string, opts Options) (*tidwall.Log, error) {
	return tidwall.Open(dir, &tidwall.Options{
		NoSync:           false,
		SegmentSize:      opts.SegmentBytes,
		LogFormat:        tidwall.Binary,
		SegmentCacheSize: 1,
		NoCopy:           true,
		AllowEmpty:       false,
		DirPerms:         dirPerms,
		FilePerms:        filePerms,
	})
}

// makeDir creates dir if missing and then fsyncs its parent, so that the new
// directory entry is durable.
func makeDir(dir string) error {
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, dirPerms); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// segment is a segment file found by listSegments.
type segment struct {
	path     string
	first    uint64 // index of its first block, from its name
	alt      string // where it may be found too: the archive's path of a live segment
	archived bool   // path is in the archive directory
}

// listSegments returns dir's segment files in index order, naming them as
// tidwall does. tidwall's .START and .END files are leftovers of truncations
// this package never performs, so they are reported as corruption rather than
// letting tidwall act on them.
func listSegments(dir string) ([]segment, error) {
	entries, err := os.ReadDir(dir) // sorted by name, so by index
	if err != nil {
		return nil, fmt.Errorf("wal: list segments: %w", err)
	}
	var segs []segment
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || len(name) < segmentNameBytes {
			continue
		}
		first, err := strconv.ParseUint(name[:segmentNameBytes], 10, 64)
		if err != nil || first == 0 {
			continue
		}
		path := filepath.Join(dir, name)
		rest := name[segmentNameBytes:]
		switch {
		case rest == "":
			segs = append(segs, segment{path: path, first: first})
		case rest == ".START" || rest == ".END":
			return nil, &CorruptError{Segment: path, Reason: "leftover tidwall truncation file " + strings.TrimPrefix(rest, ".")}
		}
	}
	return segs, nil
}

// scanner replays segments in order.
type scanner struct {
	fn    func(loc uint64, rec []byte) error
	after uint64 // fn sees records at this locator and later
	rep   *Report
	buf   []byte // segment contents, reused across segments
	seq   uint64 // sequence of the last valid block
}

// scanSegment validates seg and replays its records. For the last segment it
// cuts off a torn tail. It returns the segment's size after any repair.
func (s *scanner) scanSegment(seg segment, last bool) (int, error) {
	data, err := s.read(seg)
	if err != nil {
		return 0, err
	}
	pos := 0
	for pos < len(data) {
		b := parseBlock(data, pos, s.seq+1)
		if b.reason == "" {
			if err := s.replay(seg, data[pos+b.frame:b.end], pos+b.frame); err != nil {
				return 0, err
			}
			pos = b.end
			continue
		}
		if !last || !b.tear(data, pos) {
			return 0, &CorruptError{Segment: seg.path, Offset: int64(pos), Reason: b.reason}
		}
		if err := cutTail(seg.path, pos); err != nil {
			return 0, err
		}
		s.rep.Repaired, s.rep.RepairSegment, s.rep.RepairReason = true, seg.path, b.reason
		s.rep.RepairOffset, s.rep.RepairCutBytes = int64(pos), int64(len(data)-pos)
		return pos, nil
	}
	if last && len(data) > 0 {
		// After a crash of the process (not of the machine) the tail may
		// hold blocks written and never fsynced, which the replay has just
		// read and the service will act on: make them durable first, so
		// that a power cut later cannot take back what was replayed.
		if err := syncFile(seg.path); err != nil {
			return 0, err
		}
	}
	return len(data), nil
}

// parsed is what parseBlock found at one offset of a segment.
type parsed struct {
	frame, end int    // the block's payload is data[pos+frame:end]
	reason     string // "" for a valid block
	// definite: the header checksum is valid but its content is wrong,
	// which no torn write produces. pastEOF: the block's frame runs past
	// the end of the file. endsAtEOF: an invalid block ends exactly there.
	definite, pastEOF, endsAtEOF bool
}

// parseBlock checks the tidwall entry at data[pos:], which must be the
// block with sequence seq.
func parseBlock(data []byte, pos int, seq uint64) parsed {
	var b parsed
	size, vn := binary.Uvarint(data[pos:])
	switch {
	case vn == 0:
		b.reason, b.pastEOF = "block length runs past end of file", true
	case vn < 0:
		b.reason = "bad block length"
	case size > uint64(len(data)-pos-vn):
		b.reason, b.pastEOF = "block runs past end of file", true
		if _, r, intact := checkHeader(data[pos+vn:], seq); r != "" && intact {
			b.reason, b.definite = r, true
		}
	default:
		b.frame, b.end = vn, pos+vn+int(size)
		b.reason, b.definite = checkBlock(data[pos+vn:b.end], seq)
		b.endsAtEOF = b.reason != "" && b.end == len(data)
	}
	return b
}

// tear reports whether the invalid block b at data[pos:], in the last
// segment, is a torn tail (doc.go, Open and repair) rather than corruption.
func (b parsed) tear(data []byte, pos int) bool {
	return !b.definite && (b.pastEOF || b.endsAtEOF || allZero(data[pos:]))
}

// syncFile fsyncs the file at path.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: sync %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wal: sync %s: %w", path, err)
	}
	return f.Close()
}

// replay hands the records of a valid block at byte offset off in seg to fn.
func (s *scanner) replay(seg segment, block []byte, off int) error {
	s.seq++
	for pos := headerBytes; pos < len(block); {
		recOff := off + pos
		if recOff >= locOffsetLimit {
			return &CorruptError{Segment: seg.path, Offset: int64(recOff), Reason: "record offset beyond locator range"}
		}
		var rec []byte
		rec, pos = nextRecord(block, pos)
		s.rep.Records++
		loc := makeLoc(seg.first, recOff)
		if s.fn == nil || loc < s.after {
			continue
		}
		if err := s.fn(loc, rec); err != nil {
			return fmt.Errorf("wal: replay block %d: %w", s.seq, err)
		}
	}
	return nil
}

// read returns the contents of seg's file in s.buf, which is reused.
func (s *scanner) read(seg segment) ([]byte, error) {
	path := seg.path
	f, err := openSegment(seg)
	if err != nil {
		return nil, fmt.Errorf("wal: read segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("wal: read segment: %w", err)
	}
	size := int(st.Size())
	if cap(s.buf) < size {
		s.buf = make([]byte, size)
	}
	data := s.buf[:size]
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("wal: read segment %s: %w", path, err)
	}
	return data, nil
}

// allZero reports whether b holds only zero bytes: space a file system
// allocated for a write whose data never reached the disk.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// cutTail truncates the segment at path to size bytes and makes that durable.
func cutTail(path string, size int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: repair torn tail: %w", err)
	}
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return fmt.Errorf("wal: repair torn tail: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wal: repair torn tail: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: repair torn tail: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("wal: repair torn tail: %w", err)
	}
	return nil
}
