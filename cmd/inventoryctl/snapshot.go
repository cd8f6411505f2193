package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// runSnapshot writes a snapshot of every shard of a stopped data directory
// whose journal holds entries past its newest snapshot: the next start of
// inventoryd then replays only what is written after. It writes: the
// snapshots, and, if the journal ended with atomic batches in doubt, their
// outcome, exactly as a start of inventoryd would.
func runSnapshot(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inventoryctl snapshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "./data", "data directory of a stopped inventoryd")
	retention := fs.Duration("retention", shard.RetentionDefault, "idempotency key retention: give inventoryd's --retention, or keys it still needs are left out")
	segment := fs.Int("segment-bytes", 4<<20, "WAL segment file size: inventoryd's --segment-bytes")
	archive := fs.String("archive-dir", os.Getenv("INVENTORY_ARCHIVE_DIR"), "inventoryd's --archive-dir (INVENTORY_ARCHIVE_DIR); default: the one the manifest records. Segments the new snapshots no longer need move there, as inventoryd moves them")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: inventoryctl snapshot [flags]\n\nWrites a snapshot of each shard of a data directory that no inventoryd holds,\nif its journal has entries past the newest snapshot. Writes.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "inventoryctl snapshot: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if err := snapshotDir(*dir, *archive, *retention, *segment, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "inventoryctl snapshot: %v\n", err)
		return 1
	}
	return 0
}

func snapshotDir(dir, archive string, retention time.Duration, segment int, out, errOut io.Writer) error {
	given := archive != ""
	d, err := openDataDir(dir, archive)
	if err != nil {
		return err
	}
	shards, archive := d.shards, d.archive
	lock, err := shard.LockDir(dir)
	if err != nil {
		return fmt.Errorf("%w (is inventoryd running on it?)", err)
	}
	defer lock.Release()
	opts := wal.Options{SegmentBytes: segment, BlockBytesMax: shard.BlockBytesMaxDefault}
	if err := opts.Validate(); err != nil {
		return err
	}
	// The newest snapshot file of each shard before, to tell a snapshot
	// written now (a new file, also when it replaces one of the same name,
	// as after a format upgrade) from one left as it was.
	before := make([]os.FileInfo, shards)
	for i := range shards {
		if infos, _ := shard.ListSnapshots(shard.SnapshotDir(dir, i)); len(infos) > 0 {
			before[i], _ = os.Stat(infos[0].Path)
		}
	}
	if given {
		if archive, err = filepath.Abs(archive); err != nil {
			return err
		}
	}
	openAfter := func(i int, after uint64, replay func(uint64, []byte) error) (shard.Journal, error) {
		o := opts
		o.ArchiveDir = shard.ArchiveShardDir(archive, i)
		l, _, err := wal.OpenAfter(shard.ShardDir(dir, i), o, after, replay)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	cfg := shard.Config{
		Shards:      shards,
		Retention:   retention,
		SnapshotDir: func(i int) string { return shard.SnapshotDir(dir, i) },
		OpenAfter:   openAfter,
		Logger:      slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	e, err := shard.Open(cfg, func(i int, replay func(uint64, []byte) error) (shard.Journal, error) {
		return openAfter(i, 0, replay)
	})
	if err != nil {
		return err
	}
	if err := e.Wait(context.Background()); err != nil {
		e.Close(context.Background())
		return err
	}
	if given {
		// The logs read with it: record it, as inventoryd does, since
		// the snapshots' stop may move segments there.
		if _, err := shard.RecordArchiveDir(dir, archive); err != nil {
			e.Close(context.Background())
			return fmt.Errorf("record the archive directory: %w", err)
		}
	}
	// A graceful stop writes the snapshot of every shard that has entries
	// past its newest one.
	if err := e.Close(context.Background()); err != nil {
		return err
	}
	for i := range shards {
		infos, err := shard.ListSnapshots(shard.SnapshotDir(dir, i))
		if err != nil {
			return err
		}
		var now os.FileInfo
		if len(infos) > 0 {
			now, _ = os.Stat(infos[0].Path)
		}
		switch {
		case len(infos) == 0:
			fmt.Fprintf(out, "shard %d: empty journal, no snapshot\n", i)
		case before[i] != nil && now != nil && os.SameFile(before[i], now):
			fmt.Fprintf(out, "shard %d: up to date: %s\n", i, infos[0].Path)
		default:
			fmt.Fprintf(out, "shard %d: wrote %s (%d bytes)\n", i, infos[0].Path, infos[0].Bytes)
		}
	}
	return nil
}
