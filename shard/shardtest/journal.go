// Package shardtest provides the one fake shard.Journal, for tests and
// benchmarks of the engine and of the code above it: a journal in memory
// that records every block written, and that can fail, block, restart and
// lose its tail on demand.
//
// It cannot import package shard (shard's own tests import it), so it
// names no shard type: Journal implements shard.Journal, and Opener is
// instantiated with shard.Journal to give a shard.OpenJournal.
package shardtest

import (
	"errors"
	"fmt"
	"sync"
)

// Journal is a shard.Journal in memory. A block is durable once Write
// returns, for as long as the Journal lives: reopening it (Open, or an
// engine opened again with Opener) replays every block written, which is a
// restart. Locators number the records from 1 in log order.
//
// On demand it fails a Write (Fail), holds Writes until the test releases
// them (Hold), and loses blocks at the end of the log (Cut), as a power cut
// does. The zero value is an empty, open journal. Safe for concurrent use.
type Journal struct {
	mu      sync.Mutex
	recs    [][]byte // records written, in log order
	ends    []int    // ends[b] is the number of records in blocks 0..b
	located uint64   // records located, written or not
	pending []int    // sizes of the blocks located and not yet written
	fault   *Fault   // armed by Fail, not yet reached
	failed  error    // set by the Write that failed; every later Write returns it
	hold    *hold
	closed  bool

	archived   []uint64 // the locs Archive was called with
	archiveErr error    // what Archive returns, set by FailArchive
}

// Fault describes a Write that fails, for Fail.
type Fault struct {
	// After is how many Writes succeed before the failing one: 0 fails the
	// next Write.
	After int
	// Err is what the failing Write returns, and every Write after it until
	// the journal is reopened: like the real journal, a failed one stays
	// failed. Any error value will do.
	Err error
	// Written keeps the failing Write's block in the log, as when the data
	// reached the disk but the fsync failed. Otherwise the block is lost, as
	// when the write itself failed.
	Written bool
	// Transient, if positive, makes the fault pass: the failing Write and
	// the Transient-1 after it return Err, write nothing and leave the
	// journal usable, with the block still located, so that the caller can
	// write it again (a retryable error); the Write after them succeeds.
	Transient int
}

// hold is what Hold armed: Writes wait until released is closed.
type hold struct {
	started  chan struct{}
	released chan struct{}
	once     sync.Once
}

var errClosed = errors.New("shardtest: journal closed")

// Journals returns n empty journals: one per shard, for Opener.
func Journals(n int) []*Journal {
	js := make([]*Journal, n)
	for i := range js {
		js[i] = &Journal{}
	}
	return js
}

// journal is the method set of shard.Journal.
type journal interface {
	Locate(recs [][]byte, locs []uint64) error
	Write(recs [][]byte) error
	ReadMany(locs []uint64) ([][]byte, error)
	Close() error
}

// Opener returns a shard.OpenJournal over js when J is shard.Journal: it
// opens js[i] for shard i with Open. Opening an engine with it again, on
// the same js, is a restart that keeps every block written.
func Opener[J journal](js []*Journal) func(shard int, replay func(loc uint64, rec []byte) error) (J, error) {
	return func(i int, replay func(uint64, []byte) error) (J, error) {
		if err := js[i].Open(replay); err != nil {
			var none J
			return none, err
		}
		return any(js[i]).(J), nil
	}
}

// Open reopens the journal as a restarted process would: it passes every
// record written to replay (if not nil), in log order with its locator,
// and returns the first error replay returns. What the last run left is
// forgotten: a failure that happened, a Close, blocks located but not
// written. A Fault not yet reached and a Hold not yet released stay armed.
func (j *Journal) Open(replay func(loc uint64, rec []byte) error) error {
	j.mu.Lock()
	j.failed, j.closed, j.pending = nil, false, nil
	j.located = uint64(len(j.recs))
	recs := append([][]byte(nil), j.recs...)
	j.mu.Unlock()
	if replay == nil {
		return nil
	}
	for i, r := range recs {
		if err := replay(uint64(i+1), r); err != nil {
			return err
		}
	}
	return nil
}

// Locate implements shard.Journal: recs get the next len(recs) locators.
func (j *Journal) Locate(recs [][]byte, locs []uint64) error {
	if len(recs) == 0 || len(locs) < len(recs) {
		return fmt.Errorf("shardtest: locate %d records into %d locators", len(recs), len(locs))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range recs {
		j.located++
		locs[i] = j.located
	}
	j.pending = append(j.pending, len(recs))
	return nil
}

// Write implements shard.Journal: it keeps a copy of recs as one block. A
// Hold makes it wait first; then an armed Fault may fail it. It panics if
// recs is not the oldest block located and not yet written, which the
// shard.Journal contract forbids.
func (j *Journal) Write(recs [][]byte) error {
	j.mu.Lock()
	h := j.hold
	j.mu.Unlock()
	if h != nil {
		select {
		case h.started <- struct{}{}:
		default:
		}
		<-h.released
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case j.closed:
		return errClosed
	case j.failed != nil:
		return j.failed
	case len(j.pending) == 0:
		panic(fmt.Sprintf("shardtest: Write of %d records, no block located", len(recs)))
	case j.pending[0] != len(recs):
		panic(fmt.Sprintf("shardtest: Write of %d records, the block located first has %d", len(recs), j.pending[0]))
	}
	if f := j.fault; f != nil && f.After == 0 && f.Transient > 0 {
		if f.Transient--; f.Transient == 0 {
			j.fault = nil
		}
		return f.Err
	}
	j.pending = j.pending[1:]
	var fail error
	if f := j.fault; f != nil {
		if f.After > 0 {
			f.After--
		} else {
			j.fault, j.failed, fail = nil, f.Err, f.Err
			if !f.Written {
				return fail
			}
		}
	}
	for _, r := range recs {
		j.recs = append(j.recs, append([]byte(nil), r...))
	}
	j.ends = append(j.ends, len(j.recs))
	return fail
}

// ReadMany implements shard.Journal: the records written at locs.
func (j *Journal) ReadMany(locs []uint64) ([][]byte, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	recs := make([][]byte, len(locs))
	for i, loc := range locs {
		if loc == 0 || loc > uint64(len(j.recs)) {
			return nil, fmt.Errorf("shardtest: no record at %d", loc)
		}
		recs[i] = j.recs[loc-1]
	}
	return recs, nil
}

// Close implements shard.Journal. The records stay, for Open; Writes fail
// until then.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	return nil
}

// Closed reports whether Close was called since the journal was last
// opened.
func (j *Journal) Closed() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.closed
}

// Fail arms f: the Write it names fails with f.Err, and so does every Write
// after it until the journal is reopened. It replaces a Fault armed before
// and not yet reached.
func (j *Journal) Fail(f Fault) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.fault = &f
}

// Disarm drops a Fault armed and not yet over.
func (j *Journal) Disarm() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.fault = nil
}

// Hold makes every Write from now on wait until release is called, before
// it fails or records anything: a disk that does not answer. started
// receives when a Write begins to wait (it buffers one signal), so a test
// knows the writer is stuck. release may be called more than once; Writes
// after it no longer wait.
func (j *Journal) Hold() (started <-chan struct{}, release func()) {
	h := &hold{started: make(chan struct{}, 1), released: make(chan struct{})}
	j.mu.Lock()
	j.hold = h
	j.mu.Unlock()
	return h.started, func() {
		h.once.Do(func() {
			j.mu.Lock()
			if j.hold == h {
				j.hold = nil
			}
			j.mu.Unlock()
			close(h.released)
		})
	}
}

// Append adds recs to the log as one block already written, as a journal
// holds them when it is opened; it is for building a log before Open.
func (j *Journal) Append(recs ...[]byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, r := range recs {
		j.recs = append(j.recs, append([]byte(nil), r...))
	}
	j.ends = append(j.ends, len(j.recs))
	j.located += uint64(len(recs))
}

// Records returns the records written, in log order.
func (j *Journal) Records() [][]byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([][]byte(nil), j.recs...)
}

// Blocks returns the blocks written, in log order, each as its records.
func (j *Journal) Blocks() [][][]byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	blocks := make([][][]byte, len(j.ends))
	start := 0
	for b, end := range j.ends {
		blocks[b] = append([][]byte(nil), j.recs[start:end]...)
		start = end
	}
	return blocks
}

// Cut keeps the first n blocks and drops the rest, as a power cut leaves
// the log once its torn tail is cut back to the last whole block: Cut(0)
// empties it, Cut(len(Blocks())-1) loses the last block. Call it while no
// engine has the journal open, then Open it.
func (j *Journal) Cut(n int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if n < 0 || n > len(j.ends) {
		panic(fmt.Sprintf("shardtest: Cut(%d) of a log of %d blocks", n, len(j.ends)))
	}
	keep := 0
	if n > 0 {
		keep = j.ends[n-1]
	}
	clear(j.recs[keep:])
	j.recs, j.ends = j.recs[:keep], j.ends[:n]
	j.located = uint64(keep)
}

// LastSeq returns the number of blocks written: the last durable block, as
// wal.Log.LastSeq numbers them from 1.
func (j *Journal) LastSeq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return uint64(len(j.ends))
}

// Cursor returns a reader of the journal's blocks from the first, as
// wal.Reader reads a log beside its writer.
func (j *Journal) Cursor() *Cursor { return &Cursor{j: j} }

// Cursor reads a Journal's blocks in order; see Journal.Cursor.
type Cursor struct {
	j   *Journal
	seq uint64 // blocks read
}

// Next passes the records of the blocks after those read, up to and
// including block until (0: every block written), to fn, with their
// locators, and returns how many it passed.
func (c *Cursor) Next(until uint64, fn func(loc uint64, rec []byte) error) (int, error) {
	c.j.mu.Lock()
	ends := append([]int(nil), c.j.ends...)
	recs := append([][]byte(nil), c.j.recs...)
	c.j.mu.Unlock()
	if until == 0 || until > uint64(len(ends)) {
		until = uint64(len(ends))
	}
	n := 0
	for ; c.seq < until; c.seq++ {
		start := 0
		if c.seq > 0 {
			start = ends[c.seq-1]
		}
		for i := start; i < ends[c.seq]; i++ {
			if err := fn(uint64(i+1), recs[i]); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// Archive records a call of shard.Archiver's method: the journal keeps
// every record where it is (it has no segments), so it moves nothing. It
// returns the error FailArchive armed, if any.
func (j *Journal) Archive(loc uint64) (segments int, bytes int64, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.archived = append(j.archived, loc)
	return 0, 0, j.archiveErr
}

// Archived returns the locs Archive was called with, in order.
func (j *Journal) Archived() []uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]uint64(nil), j.archived...)
}

// FailArchive makes every later Archive return err (nil: succeed).
func (j *Journal) FailArchive(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.archiveErr = err
}
