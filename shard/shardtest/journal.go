// Package shardtest provides a shard.Journal that keeps its records in
// memory, for tests and benchmarks of the code above the engine, and of the
// engine itself.
package shardtest

import (
	"fmt"
	"sync"
)

// Journal keeps its records in memory: a block is "durable" once Write
// returns, for as long as the Journal lives. Locators number the records
// from 1 in the order they are located. Safe for concurrent use.
type Journal struct {
	mu      sync.Mutex
	recs    [][]byte
	located uint64
}

// Locate implements shard.Journal.
func (j *Journal) Locate(recs [][]byte, locs []uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range recs {
		j.located++
		locs[i] = j.located
	}
	return nil
}

// Write implements shard.Journal: it keeps copies of recs.
func (j *Journal) Write(recs [][]byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, r := range recs {
		j.recs = append(j.recs, append([]byte(nil), r...))
	}
	return nil
}

// ReadMany implements shard.Journal.
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

// Close implements shard.Journal; it keeps the records.
func (j *Journal) Close() error { return nil }

// Append adds recs as records written and located before, as a journal
// reopened over them would hold.
func (j *Journal) Append(recs ...[]byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recs = append(j.recs, recs...)
	j.located += uint64(len(recs))
}

// Records returns the records written so far, in order.
func (j *Journal) Records() [][]byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([][]byte(nil), j.recs...)
}
