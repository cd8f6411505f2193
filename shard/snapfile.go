package shard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Snapshot files. One directory per shard (SnapshotDir) holds files named
// snap-<locator, 16 hex digits>.snap, the locator being that of the last
// journal record the snapshot covers, so that names sort by age. A file is
//
//	header  := magic "INVSNAP\x00" | version u32 | shard u32 | shards u32 | loc u64 | at i64
//	body    := counters products holds keys parts outcomes settled
//	trailer := crc u32 | magic "SNAPEND\x00"
//
// integers in the header and trailer little-endian, in the body uvarints
// (varints when signed), strings a uvarint length and bytes; crc is the
// CRC32C (Castagnoli) of every byte before it. A file is trusted only if its
// size, both magics, its version, its shard and shard count, and its crc
// are right, and its body parses to the end exactly: anything else (a torn
// write, a flipped bit, a file of another version or shard) is skipped for
// an older snapshot or a full replay, logged and counted.

const (
	snapMagic   = "INVSNAP\x00"
	snapEnd     = "SNAPEND\x00"
	snapVersion = 1
	// snapHeaderBytes is magic, version, shard, shards, loc, at.
	snapHeaderBytes  = 8 + 4 + 4 + 4 + 8 + 8
	snapTrailerBytes = 4 + 8
	snapPrefix       = "snap-"
	snapSuffix       = ".snap"
	snapTmpSuffix    = ".tmp"
	// SnapshotsKept is how many snapshots a shard keeps: the newest and
	// one to fall back on should the newest be damaged.
	SnapshotsKept = 2
	// snapStringBytesMax bounds one string of a snapshot: far above any id
	// the API admits, so that a damaged length cannot allocate gigabytes.
	snapStringBytesMax = 1 << 16
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// SnapshotDir returns the directory of shard i's snapshots in data directory dir.
func SnapshotDir(dir string, i int) string {
	return filepath.Join(dir, "snapshots", fmt.Sprintf("shard-%04d", i))
}

// SnapshotInfo describes one snapshot file, as ListSnapshots finds it.
type SnapshotInfo struct {
	Path    string
	Loc     uint64 // locator of the last journal record it covers
	Bytes   int64
	ModTime time.Time
}

// ListSnapshots returns the snapshot files in a shard's snapshot directory,
// newest (highest locator) first, without reading them; a missing directory
// has none. Temporary files of unfinished writes are not listed.
func ListSnapshots(dir string) ([]SnapshotInfo, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []SnapshotInfo
	for _, e := range ents {
		name := e.Name()
		hex, ok := strings.CutPrefix(name, snapPrefix)
		if !ok || e.IsDir() {
			continue
		}
		if hex, ok = strings.CutSuffix(hex, snapSuffix); !ok || len(hex) != 16 {
			continue
		}
		loc, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, SnapshotInfo{Path: filepath.Join(dir, name), Loc: loc, Bytes: fi.Size(), ModTime: fi.ModTime()})
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int { return -cmpU64(a.Loc, b.Loc) })
	return out, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func snapName(loc uint64) string { return fmt.Sprintf("%s%016x%s", snapPrefix, loc, snapSuffix) }

// SnapshotSummary is what a snapshot holds, for offline tools (inventoryctl
// verify and inspect) to compare with a replay of the log.
type SnapshotSummary struct {
	Path          string
	Shard, Shards int
	Loc           uint64    // last journal record covered
	At            time.Time // the shard's clock when it was taken
	Entries       uint64    // ledger entries applied in the covered prefix
	Products      map[string]Stock
	ActiveHolds   int
	Keys          int // idempotency keys kept (inside retention when taken)
	Settled       int // settled reservations in its run
	PendingTxs    int // tx parts prepared and not resolved
}

// ReadSnapshot checks and reads the snapshot file at path of shard shard
// of shards, and returns what it holds. It refuses a damaged file or one of
// another version, shard or shard count with an error saying why.
func ReadSnapshot(path string, shard, shards int) (*SnapshotSummary, error) {
	st := NewState(shard, int64(RetentionDefault))
	h, err := loadSnapshot(path, shard, shards, st, 0)
	if err != nil {
		return nil, err
	}
	defer st.store.close()
	sum := &SnapshotSummary{
		Path: path, Shard: shard, Shards: shards, Loc: h.loc, At: time.Unix(0, h.at),
		Entries: st.entries, Products: make(map[string]Stock, len(st.products)),
		ActiveHolds: st.ActiveHolds(), Keys: st.ages.len(), PendingTxs: len(st.txs),
	}
	if st.store != nil {
		sum.Settled = st.store.n
	}
	for id, p := range st.products {
		sum.Products[id] = p.stock(id)
	}
	return sum, nil
}

// LoadSnapshot fills the empty state of shard shard of shards from the
// newest valid snapshot in dir (SnapshotDir) and returns the locator of the
// last record it covers: replay the journal after it. found is false when
// no snapshot is valid (replay from the start); skipped lists the files
// passed over and why. It is what start-up does; offline tools use it to
// build a shard's state as the service would.
func LoadSnapshot(dir string, shard, shards int, st *State) (loc uint64, found bool, skipped []error, err error) {
	infos, err := ListSnapshots(dir)
	if err != nil {
		return 0, false, nil, err
	}
	for _, info := range infos {
		h, err := loadSnapshot(info.Path, shard, shards, st, st.keysFrom)
		if err == nil {
			return h.loc, true, skipped, nil
		}
		skipped = append(skipped, err)
		st.resetLoaded()
	}
	return 0, false, skipped, nil
}

type snapHeader struct {
	version, shard, shards uint32
	loc                    uint64
	at                     int64
}

// loadSnapshot checks the file at path and fills st from it, dropping
// idempotency keys older than keysFrom. On error st holds part of it: reset.
func loadSnapshot(path string, shard, shards int, st *State, keysFrom int64) (snapHeader, error) {
	var h snapHeader
	f, err := os.Open(path)
	if err != nil {
		return h, fmt.Errorf("snapshot %s: %w", path, err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	fail := func(format string, args ...any) (snapHeader, error) {
		return h, fmt.Errorf("snapshot %s: %s", path, fmt.Sprintf(format, args...))
	}
	fi, err := f.Stat()
	if err != nil {
		return fail("%v", err)
	}
	size := fi.Size()
	if size < snapHeaderBytes+snapTrailerBytes {
		return fail("%d bytes, too short (torn?)", size)
	}
	var head [snapHeaderBytes]byte
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return fail("read header: %v", err)
	}
	if string(head[:8]) != snapMagic {
		return fail("not a snapshot file (bad magic)")
	}
	h.version = binary.LittleEndian.Uint32(head[8:])
	h.shard = binary.LittleEndian.Uint32(head[12:])
	h.shards = binary.LittleEndian.Uint32(head[16:])
	h.loc = binary.LittleEndian.Uint64(head[20:])
	h.at = int64(binary.LittleEndian.Uint64(head[28:]))
	var tail [snapTrailerBytes]byte
	if _, err := f.ReadAt(tail[:], size-snapTrailerBytes); err != nil {
		return fail("read trailer: %v", err)
	}
	switch {
	case string(tail[4:]) != snapEnd:
		return fail("no end marker (torn write?)")
	case h.version != snapVersion:
		return fail("format version %d, this build reads %d", h.version, snapVersion)
	case int(h.shard) != shard || int(h.shards) != shards:
		return fail("of shard %d of %d, not shard %d of %d", h.shard, h.shards, shard, shards)
	}
	// Pass 1: the checksum, in large reads.
	crc := crc32.New(crcTable)
	if _, err := io.Copy(crc, io.NewSectionReader(f, 0, size-snapTrailerBytes)); err != nil {
		return fail("read: %v", err)
	}
	if got, want := crc.Sum32(), binary.LittleEndian.Uint32(tail[:4]); got != want {
		return fail("checksum %08x, want %08x", got, want)
	}
	// Pass 2: parse.
	r := &snapReader{br: bufio.NewReaderSize(io.NewSectionReader(f, snapHeaderBytes, size-snapHeaderBytes-snapTrailerBytes), 256<<10), pos: snapHeaderBytes}
	if err := st.restore(r, keysFrom); err != nil {
		return fail("body: %v", err)
	}
	n := int(r.uvarint())
	store := &settledStore{f: f, start: r.pos, n: n, filter: newBloom(n)}
	for i := range n {
		off := r.pos - store.start
		hash := r.skipSettled()
		if r.err != nil {
			return fail("settled reservation %d: %v", i, r.err)
		}
		store.filter.add(hash)
		if i%settledIndexEvery == 0 {
			store.index = append(store.index, settledPoint{hash: hash, off: off})
		}
	}
	store.end = r.pos
	if r.err != nil {
		return fail("%v", r.err)
	}
	if store.end != size-snapTrailerBytes {
		return fail("%d bytes left after the body", size-snapTrailerBytes-store.end)
	}
	st.store = store
	keep = true
	return h, nil
}

// snapReader parses a body; the first error sticks and later reads return
// zeros. pos is the file offset of the next byte.
type snapReader struct {
	br  *bufio.Reader
	pos int64
	err error
}

// skipSettled reads past one record of a run and returns its hash: the
// load needs no ids, and allocates none.
func (r *snapReader) skipSettled() uint64 {
	var h [8]byte
	if r.err == nil {
		_, r.err = io.ReadFull(r.br, h[:])
		r.pos += 8
	}
	for range 2 {
		n := r.uvarint()
		if r.err == nil && n > snapStringBytesMax {
			r.err = fmt.Errorf("string of %d bytes", n)
		}
		if r.err == nil {
			_, r.err = r.br.Discard(int(n))
			r.pos += int64(n)
		}
	}
	r.uvarint()
	r.varint()
	return binary.LittleEndian.Uint64(h[:])
}

func (r *snapReader) settled(rec *settledRec) {
	var h [8]byte
	if r.err == nil {
		_, r.err = io.ReadFull(r.br, h[:])
		r.pos += 8
	}
	rec.hash = binary.LittleEndian.Uint64(h[:])
	rec.productID = r.str()
	rec.id = r.str()
	rec.meta = r.uvarint()
	rec.settle = r.varint()
}

func (r *snapReader) ReadByte() (byte, error) {
	b, err := r.br.ReadByte()
	if err == nil {
		r.pos++
	}
	return b, err
}

func (r *snapReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(r)
	r.err = err
	return v
}

func (r *snapReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(r)
	r.err = err
	return v
}

func (r *snapReader) count(max int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(max) {
		r.err = fmt.Errorf("count %d above %d", n, max)
		return 0
	}
	return int(n)
}

func (r *snapReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > snapStringBytesMax {
		r.err = fmt.Errorf("string of %d bytes", n)
		return nil
	}
	b := make([]byte, n)
	_, r.err = io.ReadFull(r.br, b)
	r.pos += int64(n)
	return b
}

func (r *snapReader) str() string { return string(r.bytes()) }

// snapWriter writes a body through a buffer into the file and the checksum.
type snapWriter struct {
	bw  *bufio.Writer
	crc hash.Hash32
	n   int64 // bytes written
	tmp [binary.MaxVarintLen64]byte
}

func (w *snapWriter) Write(b []byte) (int, error) {
	w.n += int64(len(b))
	return w.bw.Write(b)
}

func (w *snapWriter) uvarint(v uint64) { w.Write(binary.AppendUvarint(w.tmp[:0], v)) }
func (w *snapWriter) varint(v int64)   { w.Write(binary.AppendVarint(w.tmp[:0], v)) }
func (w *snapWriter) str(s string) {
	w.uvarint(uint64(len(s)))
	w.bw.WriteString(s)
	w.n += int64(len(s))
}

func (w *snapWriter) settled(r *settledRec) {
	w.Write(binary.LittleEndian.AppendUint64(w.tmp[:0], r.hash))
	w.str(r.productID)
	w.str(r.id)
	w.uvarint(r.meta)
	w.varint(r.settle)
}

// snapFaults, when set by a test, is called before each step of a snapshot
// write; an error stops the write there, as a crash would, leaving the
// files as they are.
var snapFaults atomic.Pointer[func(step string) error]

func snapStep(step string) error {
	if f := snapFaults.Load(); f != nil {
		return (*f)(step)
	}
	return nil
}

// The steps of a snapshot write, in order.
const (
	stepCreate = "create"
	stepWrite  = "write"
	stepSync   = "fsync"
	stepWait   = "wait-durable"
	stepRename = "rename"
	stepDir    = "fsync-dir"
	stepPrune  = "prune"
)

var errNotDurable = errors.New("the records it covers never became durable")

// writeSnapshot writes c into dir atomically: a temporary file, fsync, and,
// once durable reports the records it covers durable, rename and fsync of
// the directory; then it prunes old snapshots. It returns the new file's
// run of settled reservations, open for lookups.
func writeSnapshot(dir string, c *snapCapture, durable func() bool) (*settledStore, SnapshotInfo, error) {
	var info SnapshotInfo
	if err := MakeDir(dir); err != nil {
		return nil, info, err
	}
	if err := snapStep(stepCreate); err != nil {
		return nil, info, err
	}
	final := filepath.Join(dir, snapName(c.loc))
	tmp, err := os.OpenFile(final+snapTmpSuffix, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, info, fmt.Errorf("snapshot: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			if snapFaults.Load() == nil { // a test's crash leaves the file
				os.Remove(tmp.Name())
			}
		}
	}()
	if err := snapStep(stepWrite); err != nil {
		return nil, info, err
	}
	crc := crc32.New(crcTable)
	w := &snapWriter{bw: bufio.NewWriterSize(io.MultiWriter(tmp, crc), 256<<10), crc: crc}
	var head [snapHeaderBytes]byte
	copy(head[:], snapMagic)
	binary.LittleEndian.PutUint32(head[8:], snapVersion)
	binary.LittleEndian.PutUint32(head[12:], uint32(c.shard))
	binary.LittleEndian.PutUint32(head[16:], uint32(c.shards))
	binary.LittleEndian.PutUint64(head[20:], c.loc)
	binary.LittleEndian.PutUint64(head[28:], uint64(c.at))
	w.Write(head[:])
	if err := c.encode(w); err != nil {
		return nil, info, err
	}
	n, err := c.writeSettled(w)
	runStart := c.runStart
	if err != nil {
		return nil, info, err
	}
	runEnd := w.n
	if err := w.bw.Flush(); err != nil {
		return nil, info, fmt.Errorf("snapshot: %w", err)
	}
	var tail [snapTrailerBytes]byte
	binary.LittleEndian.PutUint32(tail[:], crc.Sum32())
	copy(tail[4:], snapEnd)
	if _, err := tmp.Write(tail[:]); err != nil {
		return nil, info, fmt.Errorf("snapshot: %w", err)
	}
	if err := snapStep(stepSync); err != nil {
		return nil, info, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, info, fmt.Errorf("snapshot: %w", err)
	}
	if err := snapStep(stepWait); err != nil {
		return nil, info, err
	}
	if !durable() {
		return nil, info, errNotDurable
	}
	if err := snapStep(stepRename); err != nil {
		return nil, info, err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return nil, info, fmt.Errorf("snapshot: %w", err)
	}
	if err := snapStep(stepDir); err != nil {
		done = true
		tmp.Close()
		return nil, info, err
	}
	if err := syncDir(dir); err != nil {
		done = true
		tmp.Close()
		return nil, info, fmt.Errorf("snapshot: %w", err)
	}
	done = true
	info = SnapshotInfo{Path: final, Loc: c.loc, Bytes: runEnd + snapTrailerBytes, ModTime: time.Now()}
	store, err := c.openRun(tmp, runStart, runEnd, n)
	if err != nil {
		tmp.Close()
		return nil, info, err
	}
	if err := snapStep(stepPrune); err != nil {
		return store, info, err
	}
	return store, info, pruneSnapshots(dir, SnapshotsKept)
}

// pruneSnapshots removes all but the keep newest snapshots of dir, and
// temporary files that unfinished writes left.
func pruneSnapshots(dir string, keep int) error {
	infos, err := ListSnapshots(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, info := range infos[min(keep, len(infos)):] {
		if err := os.Remove(info.Path); err != nil {
			errs = append(errs, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), snapSuffix+snapTmpSuffix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return errors.Join(errs...)
}

// removeTemps removes what unfinished snapshot writes left in dir.
func removeTemps(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), snapSuffix+snapTmpSuffix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
