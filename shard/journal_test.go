package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// memJournal is a Journal in memory that can fail on demand. Its records are
// what "survived": a restart replays them into a new engine.
type memJournal struct {
	mu      sync.Mutex
	recs    [][]byte
	failErr error // the next Commit fails with this, and the journal stays failed
	failed  bool
	commits int
	located uint64
	closed  bool
}

var errInjected = errors.New("injected journal fault")

// Locate numbers records from 1 in the order they are located.
func (j *memJournal) Locate(recs [][]byte, locs []uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range recs {
		j.located++
		locs[i] = j.located
	}
	return nil
}

func (j *memJournal) Write(recs [][]byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed || j.failErr != nil {
		j.failed = true
		return fmt.Errorf("write: %w", errInjected)
	}
	for _, r := range recs {
		j.recs = append(j.recs, bytes.Clone(r))
	}
	j.commits++
	return nil
}

func (j *memJournal) ReadMany(locs []uint64) ([][]byte, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	recs := make([][]byte, len(locs))
	for i, loc := range locs {
		if loc == 0 || loc > uint64(len(j.recs)) {
			return nil, fmt.Errorf("no record at %d", loc)
		}
		recs[i] = j.recs[loc-1]
	}
	return recs, nil
}

func (j *memJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	return nil
}

func (j *memJournal) fail() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.failErr = errInjected
}

func (j *memJournal) records() [][]byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([][]byte(nil), j.recs...)
}

// replay feeds the stored records to fn, as a reopened journal would.
func (j *memJournal) replay(fn func(loc uint64, rec []byte) error) error {
	for i, r := range j.records() {
		if err := fn(uint64(i+1), r); err != nil {
			return err
		}
	}
	return nil
}

// memJournals are the journals of one engine's shards, kept across restarts.
type memJournals []*memJournal

func newMemJournals(n int) memJournals {
	js := make(memJournals, n)
	for i := range js {
		js[i] = &memJournal{}
	}
	return js
}

// open is an OpenJournal that reopens the same in-memory journals.
func (js memJournals) open(i int, fn func(loc uint64, rec []byte) error) (Journal, error) {
	old := js[i]
	fresh := &memJournal{located: uint64(len(old.records()))}
	if err := old.replay(func(loc uint64, rec []byte) error {
		fresh.recs = append(fresh.recs, rec)
		return fn(loc, rec)
	}); err != nil {
		return nil, err
	}
	js[i] = fresh
	return fresh, nil
}

// mustOpen opens an engine, waits for its replay and closes it after the test.
func mustOpen(t *testing.T, cfg Config, open OpenJournal) *Engine {
	t.Helper()
	e, err := Open(cfg, open)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	if err := e.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// gated is an OpenJournal over js whose shard 1 is g.
func gated(js memJournals, g *gatedJournal) OpenJournal {
	return func(i int, _ func(uint64, []byte) error) (Journal, error) {
		if i == 1 {
			return g, nil
		}
		return js[i], nil
	}
}
