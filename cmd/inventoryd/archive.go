package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// checkArchiveDir makes --archive-dir absolute (the manifest records it)
// and refuses the data directory itself, whose shard-NNNN directories are
// the live logs.
func (c *Config) checkArchiveDir() error {
	if c.ArchiveDir == "" {
		return nil
	}
	a, err := filepath.Abs(c.ArchiveDir)
	if err != nil {
		return fmt.Errorf("--archive-dir: %w", err)
	}
	d, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if a == d {
		return fmt.Errorf("--archive-dir must not be the data directory %s", d)
	}
	c.ArchiveDir = a
	return nil
}

// shardWAL returns the WAL options of shard i: its archive directory, if
// archiving is on.
func (c *Config) shardWAL(i int) wal.Options {
	o := c.WAL
	if c.ArchiveDir != "" {
		o.ArchiveDir = shard.ShardDir(c.ArchiveDir, i)
	}
	return o
}

// prepareArchive records --archive-dir in the manifest, or, without it,
// checks that no shard's log needs the archive the manifest names: a log
// whose oldest segments were archived is refused with the flag to give,
// before any replay.
func prepareArchive(c *Config, log *slog.Logger) error {
	recorded, err := shard.ManifestArchiveDir(c.DataDir)
	if err != nil {
		return err
	}
	if c.ArchiveDir != "" {
		changed, err := shard.RecordArchiveDir(c.DataDir, c.ArchiveDir)
		if err != nil {
			return fmt.Errorf("record the archive directory: %w", err)
		}
		if changed {
			log.Info("archive directory recorded in the manifest", "archive_dir", c.ArchiveDir, "was", recorded)
		}
		return nil
	}
	for i := range c.Engine.Shards {
		err := wal.CheckHead(shard.ShardDir(c.DataDir, i), "")
		var me *wal.MissingError
		if errors.As(err, &me) {
			if recorded != "" {
				return fmt.Errorf("shard %d: %w; the manifest says they were archived to %s: start with --archive-dir %s", i, err, recorded, recorded)
			}
			return fmt.Errorf("shard %d: %w", i, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
