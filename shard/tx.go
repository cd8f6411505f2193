package shard

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// A cross-shard atomic batch (a tx) leaves three kinds of record in the WAL
// of each shard it touches, beside the entry records (see doc.go):
//
//	PREPARE tx shards n   this shard's part: the n entry records that follow
//	                      it in the same block, decided but not applied
//	COMMIT  tx            apply them
//	ABORT   tx            drop them
//
// A tx record is a msgpack array of five values, which tells it apart from
// an entry record (an array of 17) by its first byte:
//
//	[schema, kind, tx, shards, n]
const (
	txRecordSchema = 2
	txRecordFields = 5
	// txRecordHeader is the first byte of every tx record: a fixarray of 5.
	txRecordHeader = 0x90 | txRecordFields
)

// txKind is the kind of a tx record. The values are stored in the WAL.
type txKind uint8

const (
	txPrepare txKind = iota + 1
	txCommit
	txAbort
)

func (k txKind) String() string {
	switch k {
	case txPrepare:
		return "PREPARE"
	case txCommit:
		return "COMMIT"
	case txAbort:
		return "ABORT"
	}
	return fmt.Sprintf("txKind(%d)", uint8(k))
}

// txRecord is a decoded tx record.
type txRecord struct {
	kind   txKind
	tx     uint64
	shards []int // PREPARE: every participant, ascending
	n      int   // PREPARE: entry records that follow
}

// isTxRecord reports whether rec is a tx record rather than an entry.
func isTxRecord(rec []byte) bool { return len(rec) > 0 && rec[0] == txRecordHeader }

// encodeTx returns the record of r; the slice is valid until the next call.
func (c *encoder) encodeTx(r *txRecord) []byte {
	c.buf.Reset()
	m := c.enc
	_ = m.EncodeArrayLen(txRecordFields)
	_ = m.EncodeUint(txRecordSchema)
	_ = m.EncodeUint(uint64(r.kind))
	_ = m.EncodeUint(r.tx)
	_ = m.EncodeArrayLen(len(r.shards))
	for _, s := range r.shards {
		_ = m.EncodeUint(uint64(s))
	}
	_ = m.EncodeUint(uint64(r.n))
	return c.buf.Bytes()
}

var errTxRecord = errors.New("malformed tx record")

// decodeTx decodes a tx record. It is rare (a few per cart), so it uses the
// library decoder.
func decodeTx(rec []byte) (txRecord, error) {
	var r txRecord
	br := bytes.NewReader(rec)
	d := msgpack.NewDecoder(br)
	n, err := d.DecodeArrayLen()
	if err != nil || n != txRecordFields {
		return r, fmt.Errorf("%w: %d fields (%v)", errTxRecord, n, err)
	}
	schema, err1 := d.DecodeUint64()
	kind, err2 := d.DecodeUint64()
	r.tx, err = d.DecodeUint64()
	if err = errors.Join(err1, err2, err); err != nil {
		return r, fmt.Errorf("%w: %v", errTxRecord, err)
	}
	if schema != txRecordSchema || kind < uint64(txPrepare) || kind > uint64(txAbort) || r.tx == 0 {
		return r, fmt.Errorf("%w: schema %d kind %d tx %d", errTxRecord, schema, kind, r.tx)
	}
	r.kind = txKind(kind)
	ns, err := d.DecodeArrayLen()
	if err != nil || ns < 0 || ns > ShardsMax {
		return r, fmt.Errorf("%w: %d shards (%v)", errTxRecord, ns, err)
	}
	for range ns {
		s, err := d.DecodeUint64()
		if err != nil || s >= ShardsMax || (len(r.shards) > 0 && int(s) <= r.shards[len(r.shards)-1]) {
			return r, fmt.Errorf("%w: shard list (%v)", errTxRecord, err)
		}
		r.shards = append(r.shards, int(s))
	}
	count, err := d.DecodeUint64()
	if err != nil || count > 2*BatchRequestOpsMax {
		return r, fmt.Errorf("%w: %d entries (%v)", errTxRecord, count, err)
	}
	r.n = int(count)
	if br.Len() != 0 {
		return r, fmt.Errorf("%w: trailing bytes", errTxRecord)
	}
	if (r.kind == txPrepare) != (len(r.shards) > 0) || (r.kind != txPrepare && r.n != 0) {
		return r, fmt.Errorf("%w: %s with %d shards and %d entries", errTxRecord, r.kind, len(r.shards), r.n)
	}
	return r, nil
}

// txPart is this shard's part of a tx, prepared and waiting for its outcome.
// Its entries are durable in the WAL but not applied: no read or write sees
// them, and its products are parked until the outcome is known.
type txPart struct {
	tx      uint64
	prio    uint64 // the tx's age (request.prio); its tx id after a replay
	shards  []int
	entries []Entry
	locs    []uint64 // each entry's journal locator, once its block is sealed
	want    int      // replay: entry records still to collect
}

// prepareTx records part p of a tx, whose entries were decided on a fork and
// are written after its PREPARE record, and parks its products. The ids of
// the entries are taken from the shard's counter now, as if applied.
func (s *State) prepareTx(p *txPart) error {
	if _, dup := s.txs[p.tx]; dup {
		return fmt.Errorf("tx %d prepared twice", p.tx)
	}
	for i := range p.entries {
		id := p.entries[i].ProductID
		if q, ok := s.parked[id]; ok && q != p {
			return fmt.Errorf("tx %d prepares product %q, which tx %d holds", p.tx, id, q.tx)
		}
		s.parked[id] = p
	}
	s.txs[p.tx] = p
	s.maxTx = max(s.maxTx, p.tx)
	s.ids += uint64(len(p.entries))
	if n := len(p.entries); n > 0 {
		s.lastAt = max(s.lastAt, p.entries[n-1].CreatedAt)
	}
	return nil
}

// commitTx applies the entries of the prepared part of tx, with the
// locators they were written at, unparks its products and returns the part.
func (s *State) commitTx(tx uint64) (*txPart, error) {
	p, ok := s.txs[tx]
	if !ok {
		return nil, fmt.Errorf("COMMIT of tx %d, which is not prepared", tx)
	}
	s.release(p)
	s.noteOutcome(tx, true)
	s.committing = true
	defer func() { s.committing = false }()
	for i := range p.entries {
		if err := s.apply(&p.entries[i], p.locs[i]); err != nil {
			return nil, fmt.Errorf("commit of tx %d: %w", tx, err)
		}
	}
	return p, nil
}

// abortTx drops the prepared part of tx and unparks its products; it
// returns nil when tx is not prepared here.
func (s *State) abortTx(tx uint64) *txPart {
	p, ok := s.txs[tx]
	if ok {
		s.release(p)
	}
	s.noteOutcome(tx, false)
	return p
}

// release forgets part p and unparks its products.
func (s *State) release(p *txPart) {
	delete(s.txs, p.tx)
	for i := range p.entries {
		if s.parked[p.entries[i].ProductID] == p {
			delete(s.parked, p.entries[i].ProductID)
		}
	}
}

// isParked reports whether a prepared tx holds productID.
func (s *State) isParked(productID string) bool {
	if len(s.parked) == 0 {
		return false
	}
	_, ok := s.parked[productID]
	return ok
}

// replayTx applies a tx record found in the log at loc.
func (s *State) replayTx(rec []byte, loc uint64) error {
	r, err := decodeTx(rec)
	if err != nil {
		return err
	}
	if s.collect != nil {
		return fmt.Errorf("%s of tx %d among the entries prepared by tx %d", r.kind, r.tx, s.collect.tx)
	}
	s.maxTx = max(s.maxTx, r.tx)
	switch r.kind {
	case txPrepare:
		p := &txPart{tx: r.tx, prio: r.tx, shards: r.shards, want: r.n}
		if r.n == 0 {
			return s.prepareTx(p)
		}
		s.collect = p
	case txCommit:
		if _, err := s.commitTx(r.tx); err != nil {
			return err
		}
		s.outcomes[r.tx] = true
	case txAbort:
		// An abort may name a tx this shard never prepared: the coordinator
		// writes one where it can to make an abort durable.
		s.abortTx(r.tx)
		s.outcomes[r.tx] = false
	}
	return nil
}

// collectTx takes entry e, found at loc, into the part being replayed; e
// views the record, so its strings are copied.
func (s *State) collectTx(e *Entry, loc uint64) error {
	p := s.collect
	if e.CreatedAt < s.lastAt {
		return fmt.Errorf("entry %s of tx %d: created_at %d before the shard's last %d", e.ID, p.tx, e.CreatedAt, s.lastAt)
	}
	c := *e
	c.ProductID = strings.Clone(e.ProductID)
	c.ReservationID = strings.Clone(e.ReservationID)
	c.Reason = strings.Clone(e.Reason)
	c.CreatedBy = strings.Clone(e.CreatedBy)
	c.IdempotencyKey = strings.Clone(e.IdempotencyKey)
	p.entries = append(p.entries, c)
	p.locs = append(p.locs, loc)
	if len(p.entries) < p.want {
		return nil
	}
	s.collect = nil
	return s.prepareTx(p)
}

// inDoubt returns the txs this shard prepared and whose outcome its log does
// not hold, after a replay.
func (s *State) inDoubt() []*txPart {
	parts := make([]*txPart, 0, len(s.txs))
	for _, p := range s.txs {
		parts = append(parts, p)
	}
	return parts
}

// txOutcome reports what this shard knows of tx after a replay: committed,
// aborted, prepared (in doubt) or nothing (its part was never written).
func (s *State) txOutcome(tx uint64) (prepared, known, committed bool) {
	if _, ok := s.txs[tx]; ok {
		return true, false, false
	}
	c, ok := s.outcomes[tx]
	return c, ok, c
}
