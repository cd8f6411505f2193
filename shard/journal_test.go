package shard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// memJournal is a Journal in memory that can fail on demand. Its records are
// what "survived": a restart replays them into a new engine.
type memJournal struct {
	shardtest.Journal
	mu      sync.Mutex
	failing bool // Write fails, for good, once set
	closed  bool
}

var errInjected = errors.New("injected journal fault")

func (j *memJournal) Write(recs [][]byte) error {
	j.mu.Lock()
	failing := j.failing
	j.mu.Unlock()
	if failing {
		return fmt.Errorf("write: %w", errInjected)
	}
	return j.Journal.Write(recs)
}

func (j *memJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	return nil
}

func (j *memJournal) fail() { j.setFailing(true) }
func (j *memJournal) heal() { j.setFailing(false) }

func (j *memJournal) setFailing(on bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.failing = on
}

// replay feeds the stored records to fn, as a reopened journal would.
func (j *memJournal) replay(fn func(loc uint64, rec []byte) error) error {
	for i, r := range j.Records() {
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
	fresh := &memJournal{}
	if err := old.replay(func(loc uint64, rec []byte) error {
		fresh.Append(rec)
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
