package main

import (
	"errors"

	"github.com/inventory-ledger/inventory/shard"
)

// snapshotInfo describes one snapshot file of a shard: the file, as
// listed, and what reading it found.
type snapshotInfo struct {
	shard.SnapshotInfo
	// Summary is what it holds, when it checks out.
	Summary *shard.SnapshotSummary
	// Err says why the snapshot cannot be used (torn, bad checksum, wrong
	// version, shard or shard count); start-up would skip it.
	Err error
}

// shardSnapshots lists and reads the snapshots of shard i of the data
// directory dir, newest first. Reading one checks it as start-up does.
func shardSnapshots(dir string, i, shards int) ([]snapshotInfo, error) {
	infos, err := shard.ListSnapshots(shard.SnapshotDir(dir, i))
	if err != nil {
		return nil, err
	}
	out := make([]snapshotInfo, 0, len(infos))
	for _, in := range infos {
		s := snapshotInfo{SnapshotInfo: in}
		s.Summary, s.Err = shard.ReadSnapshot(in.Path, i, shards)
		out = append(out, s)
	}
	return out, nil
}

// newestSnapshots returns, for each shard of d, its newest snapshot that
// checks out (nil for none: start-up would replay the whole log) and every
// snapshot's problem: a snapshot file that does not check out is
// corruption on disk, although start-up passes it over.
func newestSnapshots(d *dataDir) ([]*shard.SnapshotSummary, []error) {
	sums := make([]*shard.SnapshotSummary, d.shards)
	errs := make([]error, d.shards)
	for i := range d.shards {
		snaps, err := shardSnapshots(d.path, i, d.shards)
		if err != nil {
			errs[i] = err
			continue
		}
		var bad []error
		for _, s := range snaps {
			if s.Err != nil {
				bad = append(bad, s.Err)
			} else if sums[i] == nil {
				sums[i] = s.Summary
			}
		}
		errs[i] = errors.Join(bad...)
	}
	return sums, errs
}
