package shard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Snapshot files. One directory per shard (SnapshotDir) holds files named
// snap-<locator, 16 hex digits>.snap, the locator being that of the last
// journal record the snapshot covers, so that names sort by age. A file is
//
//	header   := magic "INVSNAP\x00" | version u32 | shard u32 | shards u32 | loc u64 | at i64
//	body     := counters products holds keys parts outcomes settled
//	products := count | idBytes | ids (idBytes, concatenated) |
//	            count × (idLen onHand reserved version updatedAt) |
//	            locators (8 B each, version of them per product, in product order)
//	settled  := count | runBytes | run (runBytes) | Bloom blocks | words (64 B a block) |
//	            index count | count × (hash u64 | offset u64)
//	trailer  := crc u32 | magic "SNAPEND\x00"
//
// integers in the header, trailer, locators, Bloom words and index
// little-endian, the others uvarints (varints when signed), strings a
// uvarint length and bytes; crc is the CRC32C (Castagnoli) of every byte
// before it. Products are sorted by id, the run by stable hash. A file is
// trusted only if its size, both magics, its version, its shard and shard
// count, and its crc are right, and its body parses to the end exactly:
// anything else (a torn write, a flipped bit, a file of another version or
// shard) is skipped for an older snapshot or a full replay, logged and
// counted. The load checks the crc over the whole file, then parses all but
// the locators and the run, which it passes over (they are read when used):
// the Bloom filter and the sparse index are stored, not rebuilt.
//
// Version 1 (before 2026-12-03) interleaved ids, balances and locators and
// stored no filter or index; this build skips such a file (a full replay,
// which writes a version 2 snapshot).

const (
	snapMagic   = "INVSNAP\x00"
	snapEnd     = "SNAPEND\x00"
	snapVersion = 2
	// snapHeaderBytes is magic, version, shard, shards, loc, at.
	snapHeaderBytes  = 8 + 4 + 4 + 4 + 8 + 8
	snapTrailerBytes = 4 + 8
	snapPrefix       = "snap-"
	snapSuffix       = ".snap"
	snapTmpSuffix    = ".tmp"
	snapAheadSuffix  = ".ahead" // a snapshot the journal fell behind (Engine.setAside)
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

// ListSetAside returns the paths of the snapshots a start set aside in a
// shard's snapshot directory because they were ahead of its journal.
func ListSetAside(dir string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, "*"+snapSuffix+snapAheadSuffix))
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
	if size >= gcPauseBytes {
		defer pauseGC(size)()
	}
	// Pass 1: the checksum over every byte, in large reads.
	end := size - snapTrailerBytes
	if got, err := fileCRC(f, end); err != nil {
		return fail("read: %v", err)
	} else if want := binary.LittleEndian.Uint32(tail[:4]); got != want {
		return fail("checksum %08x, want %08x", got, want)
	}
	// Pass 2: parse. The locators and the run of settled reservations are
	// not read: the checksum vouches for them, and they are read when used.
	r := newSnapReader(f, snapHeaderBytes, end)
	if err := st.restore(r, keysFrom); err != nil {
		return fail("body: %v", err)
	}
	store, err := r.settledSection(f)
	if err != nil {
		return fail("settled reservations: %v", err)
	}
	if r.pos != end {
		return fail("%d bytes left after the body", end-r.pos)
	}
	st.store = store
	keep = true
	return h, nil
}

// gcPauseBytes is the snapshot size from which its load runs with the
// collector paused.
const gcPauseBytes = 16 << 20

// gcPaused counts the snapshot loads under way with the collector paused,
// and keeps the settings to restore when the last ends.
var gcPaused struct {
	sync.Mutex
	n       int
	percent int
	limit   int64
}

// gcPauseRoom is the memory a paused load may take, in multiples of its
// file's size, before the collector runs.
const gcPauseRoom = 8

// pauseGC turns the collector off for the load of a snapshot of size
// bytes, and returns the function that turns it back on. A load allocates
// what the state keeps and next to no garbage, so a collection during it
// only marks the growing state again: 0.15-0.2 s of the 0.6 s a load of
// 1M products took (2026-12-03, GOGC=off against 100). The process-wide
// setting also covers other shards replaying meanwhile; a memory limit of
// what the process holds plus eight times each file's size (never above
// the limit set before) makes the collector run if they need it. The state
// a load builds is about 5.8 times its file (products and idempotency
// keys); a limit of twice the file made the collector run over and over
// and a load of 1M products with 1M keys twice as slow as without a pause.
func pauseGC(size int64) func() {
	gcPaused.Lock()
	defer gcPaused.Unlock()
	if gcPaused.n == 0 {
		gcPaused.percent = debug.SetGCPercent(-1)
		gcPaused.limit = debug.SetMemoryLimit(-1)
		sample := []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}}
		rtmetrics.Read(sample)
		held := int64(0)
		if sample[0].Value.Kind() == rtmetrics.KindUint64 {
			held = int64(sample[0].Value.Uint64())
		}
		debug.SetMemoryLimit(min(gcPaused.limit, held+gcPauseRoom*size))
	} else {
		debug.SetMemoryLimit(min(gcPaused.limit, debug.SetMemoryLimit(-1)+gcPauseRoom*size))
	}
	gcPaused.n++
	return func() {
		gcPaused.Lock()
		defer gcPaused.Unlock()
		if gcPaused.n--; gcPaused.n == 0 {
			debug.SetMemoryLimit(gcPaused.limit)
			debug.SetGCPercent(gcPaused.percent)
		}
	}
}

// fileCRC returns the CRC32C of the first n bytes of f.
func fileCRC(f *os.File, n int64) (uint32, error) {
	buf := make([]byte, min(n, 1<<20))
	var crc uint32
	for off := int64(0); off < n; {
		b := buf[:min(int64(len(buf)), n-off)]
		if _, err := f.ReadAt(b, off); err != nil {
			return 0, err
		}
		crc = crc32.Update(crc, crcTable, b)
		off += int64(len(b))
	}
	return crc, nil
}

// settledSection reads the end of a body: the run of settled reservations
// (skipped: only its place is kept), then the Bloom filter and the sparse
// index over it, as snapCapture.writeSettled wrote them.
func (r *snapReader) settledSection(f *os.File) (*settledStore, error) {
	n := r.count(int(min(r.end-r.pos, math.MaxInt32)))
	runBytes := int64(r.count(int(r.end - r.pos)))
	if r.err != nil {
		return nil, r.err
	}
	if int64(n) > runBytes || (n == 0) != (runBytes == 0) {
		return nil, fmt.Errorf("%d records in %d bytes", n, runBytes)
	}
	store := &settledStore{f: f, start: r.pos, end: r.pos + runBytes, n: n}
	r.skip(runBytes)
	blocks := r.uvarint()
	if want := newBloomBlocks(n); r.err == nil && blocks != want {
		return nil, fmt.Errorf("Bloom filter of %d blocks, want %d", blocks, want)
	}
	raw := r.take(int(8 * bloomBlockWords * blocks))
	points := r.count(int(min(r.end-r.pos, math.MaxInt32)))
	if want := (n + settledIndexEvery - 1) / settledIndexEvery; r.err == nil && points != want {
		return nil, fmt.Errorf("index of %d points, want %d", points, want)
	}
	idx := r.take(16 * points)
	if r.err != nil {
		return nil, r.err
	}
	store.filter = bloom{words: make([]uint64, len(raw)/8), blocks: blocks}
	for i := range store.filter.words {
		store.filter.words[i] = binary.LittleEndian.Uint64(raw[8*i:])
	}
	store.index = make([]settledPoint, points)
	for i := range store.index {
		p := settledPoint{hash: binary.LittleEndian.Uint64(idx[16*i:]), off: int64(binary.LittleEndian.Uint64(idx[16*i+8:]))}
		if p.off < 0 || p.off >= runBytes || (i > 0 && (p.hash < store.index[i-1].hash || p.off <= store.index[i-1].off)) || (i == 0 && p.off != 0) {
			return nil, fmt.Errorf("index point %d out of order", i)
		}
		store.index[i] = p
	}
	return store, nil
}

// snapReader parses a body from a file with large reads; the first error
// sticks and later reads return zeros. pos is the file offset of the next
// byte, end that of the first byte past the body.
type snapReader struct {
	f   io.ReaderAt
	buf []byte
	b   []byte // buffered bytes, from pos on
	pos int64
	end int64
	err error
}

func newSnapReader(f io.ReaderAt, from, end int64) *snapReader {
	return &snapReader{f: f, buf: make([]byte, min(256<<10, max(end-from, 16))), pos: from, end: end}
}

var errSnapCut = errors.New("body cut short")

// fill buffers at least n bytes (n <= len(buf)), or fewer if the body
// ends first; it reports whether n are there.
func (r *snapReader) fill(n int) bool {
	if len(r.b) >= n {
		return true
	}
	if r.err != nil {
		return false
	}
	k := copy(r.buf, r.b)
	want := int(min(int64(len(r.buf)), r.end-r.pos))
	if want > k {
		if _, err := r.f.ReadAt(r.buf[k:want], r.pos+int64(k)); err != nil {
			r.err = err
			return false
		}
	}
	r.b = r.buf[:max(want, k)]
	return len(r.b) >= n
}

// take returns the next n bytes, in a new slice.
func (r *snapReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || int64(n) > r.end-r.pos {
		r.err = errSnapCut
		return nil
	}
	out := make([]byte, n)
	k := copy(out, r.b)
	r.b = r.b[k:]
	if k < n {
		if _, err := r.f.ReadAt(out[k:], r.pos+int64(k)); err != nil {
			r.err = err
			return nil
		}
	}
	r.pos += int64(n)
	return out
}

// skip passes over the next n bytes without reading them.
func (r *snapReader) skip(n int64) {
	if r.err != nil {
		return
	}
	if n < 0 || n > r.end-r.pos {
		r.err = errSnapCut
		return
	}
	if n <= int64(len(r.b)) {
		r.b = r.b[n:]
	} else {
		r.b = nil
	}
	r.pos += n
}

// copyTo writes the next n bytes to w.
func (r *snapReader) copyTo(w io.Writer, n int64) error {
	for n > 0 && r.err == nil {
		if !r.fill(1) {
			if r.err == nil {
				r.err = errSnapCut
			}
			break
		}
		b := r.b[:min(int64(len(r.b)), n)]
		w.Write(b)
		r.b = r.b[len(b):]
		r.pos += int64(len(b))
		n -= int64(len(b))
	}
	return r.err
}

func (r *snapReader) u64() uint64 {
	if r.err != nil || !r.fill(8) {
		if r.err == nil {
			r.err = errSnapCut
		}
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	r.pos += 8
	return v
}

// record returns the bytes of the next record of a run, valid until the
// next read: a hash, two strings and two varints.
func (r *snapReader) record() []byte {
	k := 8
	for i := range 4 {
		r.fill(k + binary.MaxVarintLen64)
		if r.err != nil {
			return nil
		}
		if len(r.b) <= k {
			r.err = errSnapCut
			return nil
		}
		v, m := binary.Uvarint(r.b[k:])
		if m <= 0 || (i < 2 && v > snapStringBytesMax) {
			r.err = errors.New("bad varint in a settled reservation")
			return nil
		}
		k += m
		if i < 2 {
			k += int(v)
		}
	}
	if !r.fill(k) {
		if r.err == nil {
			r.err = errSnapCut
		}
		return nil
	}
	raw := r.b[:k]
	r.b = r.b[k:]
	r.pos += int64(k)
	return raw
}

// settled reads the next record of a run into rec, its ids copied.
func (r *snapReader) settled(rec *settledRec) {
	if raw := r.record(); r.err == nil {
		r.err = (&snapDecoder{b: raw}).settled(rec)
	}
}

func (r *snapReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	r.fill(binary.MaxVarintLen64)
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errSnapCut
		if k < 0 {
			r.err = errors.New("varint overflows 64 bits")
		}
		return 0
	}
	r.b = r.b[k:]
	r.pos += int64(k)
	return v
}

func (r *snapReader) varint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// left is the count of body bytes not read yet.
func (r *snapReader) left() int { return int(r.end - r.pos) }

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
	return r.take(int(n))
}

func (r *snapReader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > snapStringBytesMax {
		r.err = fmt.Errorf("string of %d bytes", n)
		return ""
	}
	if !r.fill(int(n)) {
		if r.err == nil {
			r.err = errSnapCut
		}
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	r.pos += int64(n)
	return s
}

// block returns the next n bytes as one string, read in large pieces.
func (r *snapReader) block(n int) string {
	if r.err != nil {
		return ""
	}
	if n < 0 || int64(n) > r.end-r.pos {
		r.err = errSnapCut
		return ""
	}
	var sb strings.Builder
	sb.Grow(n)
	for sb.Len() < n && r.err == nil {
		if !r.fill(1) {
			break
		}
		b := r.b[:min(len(r.b), n-sb.Len())]
		sb.Write(b)
		r.b = r.b[len(b):]
		r.pos += int64(len(b))
	}
	return sb.String()
}

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
// run of settled reservations, open for lookups. A run with an error means
// the snapshot is durable and only the pruning failed: the caller owns the
// run (its open file) either way.
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
	run, err := c.writeSettled(w)
	if err != nil {
		return nil, info, err
	}
	fileEnd := w.n
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
	info = SnapshotInfo{Path: final, Loc: c.loc, Bytes: fileEnd + snapTrailerBytes, ModTime: time.Now()}
	run.f = tmp
	if err := snapStep(stepPrune); err != nil {
		return run, info, err
	}
	return run, info, pruneSnapshots(dir, SnapshotsKept)
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
	removeTemps(dir)
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
