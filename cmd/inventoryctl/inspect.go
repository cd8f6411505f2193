package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/inventory-ledger/inventory/shard"
)

// inspect describes a data directory: its shard count, whether a process
// holds it, and for each shard its segment files (count and sizes), its
// blocks, entry and cart records, the created_at of its first and last
// entries, a torn tail, and its snapshots (snapshots.go). It reads every
// record (checking checksums) but replays nothing, so it is fast and
// reports no invariant: that is verify's job. A corrupt log is status 1.
func inspect(args []string, stdout, stderr io.Writer) int {
	var dir, archive string
	fs := flags("inspect", stderr, &dir, &archive)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	d, err := openDataDir(dir, archive)
	if err != nil {
		fmt.Fprintf(stderr, "inventoryctl inspect: %v\n", err)
		return exitProblem
	}
	fmt.Fprintf(stdout, "data directory %s: %d shards\n", d.path, d.shards)
	if d.holder != 0 {
		fmt.Fprintf(stdout, "in use by process %d (logs read up to their last whole block)\n", d.holder)
	} else {
		fmt.Fprintln(stdout, "not in use")
	}
	if d.archive != "" {
		fmt.Fprintf(stdout, "archived log segments in %s (from %s)\n", d.archive, d.archiveFrom)
	}
	status := exitOK
	for i := range d.shards {
		sd := shard.ShardDir(d.path, i)
		segs, bytes, smallest, largest, err := segmentSizes(sd)
		if err != nil {
			fmt.Fprintf(stdout, "shard %d: %v\n", i, err)
			status = exitProblem
			continue
		}
		fmt.Fprintf(stdout, "shard %d: %d segments, %d bytes (smallest %d, largest %d)\n", i, segs, bytes, smallest, largest)
		if ad := d.shardArchive(i); ad != "" {
			segs, bytes, _, _, err := segmentSizes(ad)
			switch {
			case errors.Is(err, os.ErrNotExist):
				fmt.Fprintf(stdout, "  archive %s: none\n", ad)
			case err != nil:
				fmt.Fprintf(stdout, "  archive %s: %v\n", ad, err)
				status = exitProblem
			default:
				fmt.Fprintf(stdout, "  archive %s: %d segments, %d bytes\n", ad, segs, bytes)
			}
		}
		var entries, txRecs int64
		var first, last []byte
		r := d.reader(i)
		_, err = r.Next(0, func(_ uint64, rec []byte) error {
			if !shard.IsEntryRecord(rec) {
				txRecs++
				return nil
			}
			entries++
			if first == nil {
				first = append([]byte(nil), rec...)
			}
			last = append(last[:0], rec...)
			return nil
		})
		fmt.Fprintf(stdout, "  %d blocks, %d entries, %d cart records\n", r.Seq(), entries, txRecs)
		if first != nil {
			f, ferr := shard.DecodeEntry(first)
			l, lerr := shard.DecodeEntry(last)
			if ferr == nil && lerr == nil {
				fmt.Fprintf(stdout, "  entries created %s .. %s\n", formatTime(f.CreatedAt), formatTime(l.CreatedAt))
			}
		}
		if t := r.Tail(); t.Segment != "" {
			fmt.Fprintf(stdout, "  torn tail: %d bytes at offset %d of %s (%s)\n", t.Bytes, t.Offset, t.Segment, t.Reason)
		}
		if err != nil {
			fmt.Fprintf(stdout, "  PROBLEM: %v\n", err)
			status = exitProblem
		}
		snaps, err := shardSnapshots(d.path, i, d.shards)
		switch {
		case err != nil:
			fmt.Fprintf(stdout, "  snapshots: %v\n", err)
			status = exitProblem
		case len(snaps) == 0:
			fmt.Fprintln(stdout, "  snapshots: none")
		}
		for _, s := range snaps {
			fmt.Fprintf(stdout, "  snapshot %s: %d bytes, written %s (%s ago)", filepath.Base(s.Path), s.Bytes,
				s.ModTime.UTC().Format("2006-01-02T15:04:05Z"), time.Since(s.ModTime).Round(time.Second))
			if s.Err != nil {
				fmt.Fprintf(stdout, ", unusable: %v", s.Err)
				status = exitProblem
			} else {
				fmt.Fprintf(stdout, ", %d entries, %d products, %d active holds, %d settled reservations",
					s.Summary.Entries, len(s.Summary.Products), s.Summary.ActiveHolds, s.Summary.Settled)
			}
			fmt.Fprintln(stdout)
		}
		aside, _ := shard.ListSetAside(shard.SnapshotDir(d.path, i))
		for _, path := range aside {
			fmt.Fprintf(stdout, "  set aside %s: a start found it ahead of the log (the log lost records it covered) and no longer reads it\n",
				filepath.Base(path))
		}
	}
	return status
}

// segmentSizes returns how many segment files a shard directory holds
// (tidwall's names: 20 digits), their total, smallest and largest sizes.
func segmentSizes(dir string) (n int, total, smallest, largest int64, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for _, e := range ents {
		if len(e.Name()) != 20 || e.IsDir() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return 0, 0, 0, 0, err
		}
		size := fi.Size()
		if n == 0 || size < smallest {
			smallest = size
		}
		largest = max(largest, size)
		total += size
		n++
	}
	return n, total, smallest, largest, nil
}
