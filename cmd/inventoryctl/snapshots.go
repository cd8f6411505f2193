package main

import (
	"fmt"
	"time"
)

// The seam for snapshots. Snapshots (a shard's state at a log index,
// written beside its log) are not written or read by this build; these two
// functions are where verify and inspect learn about them, and today they
// report none. A build that writes snapshots fills them in from the shard
// directory alone.

// snapshotInfo describes one snapshot file of a shard.
type snapshotInfo struct {
	Path    string
	Index   uint64 // the last log block it covers
	Bytes   int64
	Written time.Time
	// Err says why the snapshot cannot be used (torn, bad checksum, wrong
	// version or shard); start-up would skip it.
	Err error
}

// shardSnapshots lists the snapshots in shardDir, newest first. This build
// has none.
func shardSnapshots(shardDir string) ([]snapshotInfo, error) {
	return nil, nil
}

// compareNewestSnapshot checks the newest valid snapshot in shardDir
// against the state replayed from the log up to the snapshot's index (a
// wal.Reader bounded by it, through shard.ReplayLedger), and returns a line
// for the report; an error is a problem. With no snapshot it says so.
func compareNewestSnapshot(shardDir string) (string, error) {
	snaps, err := shardSnapshots(shardDir)
	if err != nil || len(snaps) == 0 {
		return "no snapshots", err
	}
	return "", fmt.Errorf("%d snapshots in %s, which this build cannot read", len(snaps), shardDir)
}
