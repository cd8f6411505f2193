package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// Archive directories. A log may keep its older sealed segments in a second
// directory, Options.ArchiveDir (a slow, cheap disk, say), under the same
// file names. The log is then the archive's segments followed by the live
// directory's, contiguous from index 1 across both: Open, OpenAfter, Read,
// ReadMany and a Reader made with NewReaderWithArchive all read both, and a
// gap between them is corruption like any other.
//
// Archive moves segments one at a time, crash-safely:
//
//  1. copy the segment to NAME.tmp in the archive, and fsync it;
//  2. rename it to NAME, and fsync the archive directory;
//  3. remove NAME from the live directory, and fsync it.
//
// A crash at any step leaves the segment whole in at least one directory.
// Open, as the log's owner, cleans up what a crash left once it has found
// the log sound (a corrupt log is left as it is): a NAME.tmp in the
// archive is removed, and a segment in both directories is checked to be
// the same bytes in both and then removed from the archive (the live copy
// is kept; the next Archive moves it again). Two copies that differ are
// corruption, reported and left alone. A Reader, which never writes, reads
// the live copy of a segment found in both, and ignores temporary files.
//
// A log whose first segment does not start at index 1 is missing its
// oldest segments: Open and Reader refuse it with a *MissingError, never
// replaying a ledger that begins mid-way.

// archiveTmpSuffix marks a segment being copied into the archive.
const archiveTmpSuffix = ".tmp"

// The steps of moving one segment, in order, for fault tests (archiveStep).
const (
	stepCopy        = "copy"
	stepSyncCopy    = "fsync-copy"
	stepRename      = "rename"
	stepSyncArchive = "fsync-archive"
	stepRemove      = "remove"
	stepSyncLive    = "fsync-live"
)

// archiveFaults, when set by a test, is called before each step of a move;
// an error stops Archive there, as a crash would, leaving the files as they
// are.
var archiveFaults atomic.Pointer[func(step, name string) error]

func archiveStep(step, name string) error {
	if f := archiveFaults.Load(); f != nil {
		return (*f)(step, name)
	}
	return nil
}

// MissingError reports a log whose segments do not start at index 1: its
// older segments were moved to an archive directory that was not given (or
// does not hold them), or were deleted. It is a kind of corruption: it
// unwraps to a *CorruptError naming the first segment found.
type MissingError struct {
	Dir     string // the live directory
	Archive string // the archive directory given, "" for none
	First   uint64 // index of the first segment found
	Segment string // its path
}

// Unwrap returns the corruption as a *CorruptError.
func (e *MissingError) Unwrap() error {
	return &CorruptError{Segment: e.Segment, Reason: fmt.Sprintf("segment starts at index %d, want 1", e.First)}
}

// Error names the blocks missing and where they were looked for.
func (e *MissingError) Error() string {
	where := "no archive directory was given"
	if e.Archive != "" {
		where = fmt.Sprintf("the archive directory %s does not hold them", e.Archive)
	}
	return fmt.Sprintf("wal: %s: the log's first segment starts at block %d: the segments holding blocks 1 to %d (files %s up to the one before %s) are missing, and %s",
		e.Dir, e.First, e.First-1, segmentName(1), segmentName(e.First), where)
}

// listLog returns the segments of the log in dir with archive (may be ""),
// in index order, each from the live directory if it is in both. dups are
// the archive's copies of segments also in the live directory, with alt
// set to the live copy's path.
func listLog(dir, archive string) (segs, dups []segment, err error) {
	live, err := listSegments(dir)
	if err != nil || archive == "" {
		return live, nil, err
	}
	if err := checkDistinct(dir, archive); err != nil {
		return nil, nil, err
	}
	arch, err := listSegments(archive)
	if errors.Is(err, fs.ErrNotExist) {
		arch, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for i := range live {
		live[i].alt = filepath.Join(archive, filepath.Base(live[i].path))
	}
	// Merge two sorted lists; the live copy wins a tie.
	segs = make([]segment, 0, len(live)+len(arch))
	i, j := 0, 0
	for i < len(live) || j < len(arch) {
		switch {
		case j == len(arch) || (i < len(live) && live[i].first < arch[j].first):
			segs = append(segs, live[i])
			i++
		case i == len(live) || arch[j].first < live[i].first:
			a := arch[j]
			a.archived = true
			segs = append(segs, a)
			j++
		default:
			d := arch[j]
			d.alt = live[i].path
			dups = append(dups, d)
			segs = append(segs, live[i])
			i++
			j++
		}
	}
	if len(segs) > 0 && segs[len(segs)-1].archived {
		return nil, nil, &CorruptError{Segment: segs[len(segs)-1].path,
			Reason: fmt.Sprintf("the archive holds the log's last segment, but the live directory %s holds none after it", dir)}
	}
	return segs, dups, nil
}

// checkFirst reports a log whose first segment is not index 1.
func checkFirst(segs []segment, dir, archive string) error {
	if len(segs) > 0 && segs[0].first != 1 {
		return &MissingError{Dir: dir, Archive: archive, First: segs[0].first, Segment: segs[0].path}
	}
	return nil
}

// cleanArchive removes what an interrupted Archive left in archive:
// temporary copies, and the archive's copies of segments still in the live
// directory. It first checks that every such copy holds the same bytes as
// the live one, and removes nothing if one differs (corruption). It
// returns how many files it removed. Called by Open only.
func cleanArchive(archive string, dups []segment) (int, error) {
	for _, d := range dups {
		switch kind, err := compareCopy(d.alt, d.path); {
		case err != nil:
			return 0, fmt.Errorf("wal: clean archive: %w", err)
		case kind == copyIsLive:
			return 0, fmt.Errorf("wal: clean archive: %w", &CorruptError{Segment: d.path, Reason: fmt.Sprintf("the archive's copy is the live file %s itself (a link)", d.alt)})
		case kind == copyDiffers:
			return 0, &CorruptError{Segment: d.path, Reason: fmt.Sprintf("the segment is in both the archive and %s, with different contents", d.alt)}
		}
	}
	ents, err := os.ReadDir(archive)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("wal: clean archive: %w", err)
	}
	var remove []string
	for _, e := range ents {
		name := e.Name()
		if len(name) == segmentNameBytes+len(archiveTmpSuffix) && strings.HasSuffix(name, archiveTmpSuffix) {
			remove = append(remove, filepath.Join(archive, name))
		}
	}
	for _, d := range dups {
		remove = append(remove, d.path)
	}
	for i, path := range remove {
		if err := os.Remove(path); err != nil {
			return i, fmt.Errorf("wal: clean archive: %w", err)
		}
	}
	if len(remove) > 0 {
		if err := syncDir(archive); err != nil {
			return len(remove), fmt.Errorf("wal: clean archive: %w", err)
		}
	}
	return len(remove), nil
}

// What a file found in the archive is to the live segment it would be a
// copy of (compareCopy).
const (
	copySame    = iota // a separate file with the same bytes
	copyIsLive         // the live file itself, under another name (a link)
	copyDiffers        // a separate file with other bytes
)

// compareCopy tells what the file at dup is to the live file at live,
// looking each up once.
func compareCopy(dup, live string) (int, error) {
	fc, fl, err := statBoth(dup, live)
	switch {
	case err != nil:
		return 0, err
	case os.SameFile(fc, fl):
		return copyIsLive, nil
	case fc.Size() != fl.Size():
		return copyDiffers, nil
	}
	dc, err := os.ReadFile(dup)
	if err != nil {
		return 0, err
	}
	dl, err := os.ReadFile(live)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(dc, dl) {
		return copyDiffers, nil
	}
	return copySame, nil
}

// oneFile reports whether the paths a and b name one file (hard links,
// or one directory under two names).
func oneFile(a, b string) (bool, error) {
	fa, fb, err := statBoth(a, b)
	return err == nil && os.SameFile(fa, fb), err
}

func statBoth(a, b string) (fa, fb os.FileInfo, err error) {
	if fa, err = os.Stat(a); err == nil {
		fb, err = os.Stat(b)
	}
	return fa, fb, err
}

// checkDistinct refuses an archive directory that is the live directory
// dir under another name (a symbolic link, a bind mount): every segment
// would be "in both", and moving or cleaning one would delete it. A
// missing archive is distinct.
func checkDistinct(dir, archive string) error {
	one, err := oneFile(dir, archive)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if one {
		return fmt.Errorf("wal: the archive directory %s is the log's own directory %s", archive, dir)
	}
	return nil
}

// openSegment opens seg's file, or its other copy if it moved meanwhile
// (an Archive running beside a reader).
func openSegment(seg segment) (*os.File, error) {
	f, err := os.Open(seg.path)
	if err != nil && seg.alt != "" && errors.Is(err, fs.ErrNotExist) {
		if f, err2 := os.Open(seg.alt); err2 == nil {
			return f, nil
		}
	}
	return f, err
}

// ArchiveDir returns the archive directory, "" when the log has none.
func (l *Log) ArchiveDir() string { return l.opts.ArchiveDir }

// Archive moves to the archive directory the sealed segments whose records
// all lie before the record at loc: those before the segment holding it,
// which OpenAfter(loc) would skip. The segment being written is never
// moved, as loc is a record already written. Without an archive directory
// it does nothing.
//
// Archive may run on any one goroutine at a time, beside Commit (it never
// touches the segment being written nor tidwall's state) and Read (which
// finds a moved segment in the archive), but not after Close. A failure
// leaves every segment readable in at least one directory and the Log
// usable; Open cleans up after it.
func (l *Log) Archive(loc uint64) (segments int, bytes int64, err error) {
	archive := l.opts.ArchiveDir
	if archive == "" {
		return 0, 0, nil
	}
	segs, err := listSegments(l.dir)
	if err != nil {
		return 0, 0, err
	}
	upto, _ := splitLoc(loc)
	var move []segment
	for i := 0; i+1 < len(segs) && segs[i+1].first <= upto; i++ {
		move = append(move, segs[i])
	}
	if len(move) == 0 {
		return 0, 0, nil
	}
	if err := makeArchiveDir(archive); err != nil {
		return 0, 0, fmt.Errorf("wal: archive: %w", err)
	}
	if err := checkDistinct(l.dir, archive); err != nil {
		return 0, 0, err
	}
	for _, seg := range move {
		n, err := moveSegment(seg.path, archive)
		if err != nil {
			return segments, bytes, fmt.Errorf("wal: archive %s: %w", seg.path, err)
		}
		segments++
		bytes += n
	}
	return segments, bytes, nil
}

// moveSegment moves the file at path into dir with the steps of the
// package's archive contract, and returns its size.
func moveSegment(path, dir string) (int64, error) {
	name := filepath.Base(path)
	final := filepath.Join(dir, name)
	tmp := final + archiveTmpSuffix
	if err := archiveStep(stepCopy, name); err != nil {
		return 0, err
	}
	switch n, err := archived(path, final); {
	case err != nil:
		return 0, err
	case n >= 0:
		// A move interrupted after its copy: finish it, making the
		// archive's entry durable first (the interruption may have been
		// its fsync) before the live copy goes.
		if err := archiveStep(stepSyncArchive, name); err != nil {
			return 0, err
		}
		if err := syncDir(dir); err != nil {
			return 0, err
		}
		return n, removeLive(path, name)
	}
	src, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return 0, err
	}
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, filePerms)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(dst, src)
	if err == nil && n != st.Size() {
		err = fmt.Errorf("copied %d bytes of %d", n, st.Size())
	}
	if err == nil {
		err = archiveStep(stepSyncCopy, name)
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if err := archiveStep(stepRename, name); err != nil {
		return 0, err
	}
	// A link, unlike a rename, never replaces a file already there: two
	// logs given one archive directory must not overwrite each other. A
	// file found there is taken only if it is a copy of this segment; the
	// move then goes on as if the link had made it.
	found := false // a file was at final already
	switch err := os.Link(tmp, final); {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		found = true
	default: // a file system without hard links: check, then rename
		_, err := os.Lstat(final)
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, fs.ErrNotExist):
			return 0, err
		default:
			if err := os.Rename(tmp, final); err != nil {
				return 0, err
			}
		}
	}
	if found {
		if err := existing(final, path); err != nil {
			return 0, err
		}
	}
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	if err := archiveStep(stepSyncArchive, name); err != nil {
		return 0, err
	}
	if err := syncDir(dir); err != nil {
		return 0, err
	}
	return n, removeLive(path, name)
}

// removeLive removes the live copy of a segment whose archived copy is
// durable, and makes the removal durable.
func removeLive(path, name string) error {
	if err := archiveStep(stepRemove, name); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	if err := archiveStep(stepSyncLive, name); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// archived returns the size of final, the archive's copy of the live
// segment at path, if it is there already with the same bytes (a move
// interrupted after its copy, which Open had not cleaned up yet), and -1
// if there is none. A different file there, or the live file itself under
// another name, is an error: the archive directory holds another log's
// segments, and nothing may be replaced or removed.
func archived(path, final string) (int64, error) {
	fi, err := os.Stat(final)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return 0, err
	}
	if err := existing(final, path); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// existing checks the file found at final, where a move of the live
// segment at path would put its copy: nil if it is a separate file with
// the same bytes, else a *CorruptError.
func existing(final, path string) error {
	kind, err := compareCopy(final, path)
	if err != nil {
		return err
	}
	if kind != copySame {
		return &CorruptError{Segment: final, Reason: fmt.Sprintf("the archive already holds a segment of this name that is not a copy of %s: is the archive directory another log's?", path)}
	}
	return nil
}

// makeArchiveDir creates the archive directory dir if it is missing, and
// makes the new entry durable. Its parent must exist: an archive disk that
// is not mounted must fail the move, not fill the disk under its mount
// point.
func makeArchiveDir(dir string) error {
	err := os.Mkdir(dir, dirPerms)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the archive directory's parent %s does not exist (is its disk mounted?)", filepath.Dir(dir))
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// CheckHead reports a *MissingError if the log in dir, with its archive
// (may be ""), does not start at index 1, and any error listing them. It
// reads no segment: a start checks it before a long replay.
func CheckHead(dir, archive string) error {
	segs, _, err := listLog(dir, archive)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new log
	}
	if err != nil {
		return err
	}
	return checkFirst(segs, dir, archive)
}
