package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// dataDir is a data directory opened for reading.
type dataDir struct {
	path   string
	shards int
	// archive is the directory of the shards' archived log segments
	// (inventoryd --archive-dir), "" for none; archiveFrom says where it
	// came from: "--archive-dir" or "the manifest".
	archive     string
	archiveFrom string
	// holder is the PID of the process holding the directory's lock, 0
	// when none does.
	holder int
	// tails are what each shard's reading stopped at, after read.
	tails []wal.Tail
}

// flags returns a flag set for command name with the --data-dir and
// --archive-dir flags.
func flags(name string, stderr io.Writer, dir, archive *string) *flag.FlagSet {
	fs := flag.NewFlagSet("inventoryctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv("INVENTORY_DATA_DIR")
	if def == "" {
		def = "./data"
	}
	fs.StringVar(dir, "data-dir", def, "data directory (INVENTORY_DATA_DIR)")
	fs.StringVar(archive, "archive-dir", os.Getenv("INVENTORY_ARCHIVE_DIR"), "directory of the archived log segments, inventoryd's --archive-dir (INVENTORY_ARCHIVE_DIR); default: the one the manifest records")
	return fs
}

// parseFlags parses args, refusing positional arguments; it returns the
// exit status to end with, or -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return exitUsage
	}
	return -1
}

// openDataDir reads dir's manifest and who holds its lock. It writes
// nothing. archive is the archive directory given ("" : the one the
// manifest records, if any): its segments are read before the live ones.
func openDataDir(dir, archive string) (*dataDir, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	n, ok, err := shard.ManifestShards(dir)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s has no %s: not a data directory", dir, shard.ManifestName)
	}
	d := &dataDir{path: dir, shards: n, tails: make([]wal.Tail, n), archive: archive, archiveFrom: "--archive-dir"}
	if archive == "" {
		if d.archive, err = shard.ManifestArchiveDir(dir); err != nil {
			return nil, err
		}
		d.archiveFrom = "the manifest"
	}
	if pid, held, err := shard.LockHolder(dir); err == nil && held {
		d.holder = pid
	}
	return d, nil
}

// note writes to w what the tools say of a directory in use.
func (d *dataDir) note(w io.Writer) {
	if d.holder != 0 {
		fmt.Fprintf(w, "inventoryctl: %s is in use by process %d: reading each shard's log up to its last whole block\n", d.path, d.holder)
	}
	if d.archive != "" {
		fmt.Fprintf(w, "inventoryctl: reading archived log segments in %s (from %s) before the data directory's\n", d.archive, d.archiveFrom)
	}
}

// shardArchive returns shard i's archive directory, "" for none.
func (d *dataDir) shardArchive(i int) string { return shard.ArchiveShardDir(d.archive, i) }

// reader returns a read-only reader of shard i's log, archive first.
func (d *dataDir) reader(i int) *wal.Reader {
	return wal.NewReaderWithArchive(shard.ShardDir(d.path, i), d.shardArchive(i))
}

// read is a shard.ReadLog over the directory's logs, read-only.
func (d *dataDir) read(i int, fn func(loc uint64, rec []byte) error) error {
	r := d.reader(i)
	_, err := r.Next(0, fn)
	d.tails[i] = r.Tail()
	return err
}

// replay replays every shard (shard.ReplayLedger) with o.
func (d *dataDir) replay(o shard.LedgerOptions) (*shard.Ledger, error) {
	return shard.ReplayLedger(d.shards, d.read, o)
}

// problems returns the shards' problems.
func problems(l *shard.Ledger) []error {
	var errs []error
	for _, s := range l.Shards {
		if s.Err != nil {
			errs = append(errs, s.Err)
		}
	}
	return errs
}

// openReading opens dir (with archive) for command cmd to read, and says
// on stderr if a process holds it; on error it says why and returns nil.
func openReading(cmd, dir, archive string, stderr io.Writer) *dataDir {
	d, err := openDataDir(dir, archive)
	if err != nil {
		fmt.Fprintf(stderr, "inventoryctl %s: %v\n", cmd, err)
		return nil
	}
	d.note(stderr)
	return d
}

// parseTime parses an RFC 3339 time flag value into Unix nanoseconds; an
// empty value, a flag not given, is unset.
func parseTime(name, v string, unset int64) (int64, error) {
	if v == "" {
		return unset, nil
	}
	t, ok := shard.ParseTime(v)
	if !ok {
		return 0, fmt.Errorf("--%s must be an RFC 3339 time such as 2026-12-02T10:00:00Z, got %q", name, v)
	}
	return t, nil
}

// formatTime formats Unix nanoseconds as the API does.
func formatTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}

// checkOutput checks the --format and --product flags that export and
// stock share.
func checkOutput(format, product string) error {
	if format != "jsonl" && format != "csv" {
		return fmt.Errorf("--format must be jsonl or csv, got %q", format)
	}
	if product != "" && !shard.CheckID(product) {
		return fmt.Errorf("--product %q is not a product id", product)
	}
	return nil
}
