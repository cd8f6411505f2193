package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
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
	o.ArchiveDir = shard.ArchiveShardDir(c.ArchiveDir, i)
	return o
}

// prepareArchive checks, before any replay, that every shard's log starts
// at its first segment, in --archive-dir if given, and then records the
// flag in the manifest. A log whose oldest segments are missing is refused
// with the flag to give: the archive directory the manifest records.
func prepareArchive(c *Config, log *slog.Logger) error {
	if c.ArchiveDir != "" {
		if err := checkArchiveRoot(c.ArchiveDir, c.DataDir); err != nil {
			return err
		}
	}
	recorded, err := shard.ManifestArchiveDir(c.DataDir)
	if err != nil {
		return err
	}
	for i := range c.Engine.Shards {
		err := wal.CheckHead(shard.ShardDir(c.DataDir, i), c.shardWAL(i).ArchiveDir)
		var me *wal.MissingError
		switch {
		case errors.As(err, &me) && recorded != "" && recorded != c.ArchiveDir:
			return fmt.Errorf("shard %d: %w; the manifest says they were archived to %s: start with --archive-dir %s", i, err, recorded, recorded)
		case err != nil:
			return fmt.Errorf("shard %d: %w", i, err)
		}
	}
	if c.ArchiveDir == "" {
		return nil
	}
	changed, err := shard.RecordArchiveDir(c.DataDir, c.ArchiveDir)
	if err != nil {
		return fmt.Errorf("record the archive directory: %w", err)
	}
	if changed {
		log.Info("archive directory recorded in the manifest", "archive_dir", c.ArchiveDir, "was", recorded)
	}
	return nil
}

// checkArchiveRoot refuses an --archive-dir that does not exist (create
// it, or mount its disk, first: the service never creates it, so that an
// unmounted disk fails the start instead of filling the disk under its
// mount point) or that is the data directory under another name (a
// symbolic link, a bind mount), whose logs archiving would delete.
func checkArchiveRoot(archive, data string) error {
	fa, err := os.Stat(archive)
	if err != nil {
		return fmt.Errorf("--archive-dir: %w (create the directory, or mount its disk, first)", err)
	}
	if !fa.IsDir() {
		return fmt.Errorf("--archive-dir %s is not a directory", archive)
	}
	fd, err := os.Stat(data)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if os.SameFile(fa, fd) {
		return fmt.Errorf("--archive-dir %s is the data directory %s under another name", archive, data)
	}
	return nil
}
