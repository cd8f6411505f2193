package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// segmentFiles returns the first indexes of the segment files in dir,
// sorted; temporary files are not listed.
func segmentFiles(t *testing.T, dir string) []uint64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []uint64
	for _, e := range ents {
		if len(e.Name()) != 20 {
			continue
		}
		n, err := strconv.ParseUint(e.Name(), 10, 64)
		if err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

var archivedMetric = regexp.MustCompile(`(?m)^inventory_wal_segments_archived_total (\d+)`)

// TestArchive runs the real binary: a ledger written without archiving,
// then served with --archive-dir, answers the same history pages and as_of
// reads once its old segments are archived, after a graceful stop, after
// SIGKILL, and with every snapshot damaged (a full replay that reads the
// archive). Only segments wholly before each shard's oldest kept snapshot
// move, never the one being written. A start without the flag is refused,
// naming it; a start after a move interrupted by a crash cleans up.
func TestArchive(t *testing.T) {
	dir := t.TempDir()
	arch := t.TempDir()
	base := []string{"--snapshot-entries", "1000", "--segment-bytes", "65536"}
	var products []string
	for i := range 20 {
		products = append(products, fmt.Sprintf("p%d", i))
	}
	s := start(t, dir, base...)
	var mid string
	for i := range 16 {
		if r := s.do("POST", "/v1/batch", string(addBatch(products, 1, fmt.Sprintf("b%d", i)))); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.raw)
		}
		if i == 7 {
			time.Sleep(5 * time.Millisecond)
			mid = time.Now().UTC().Format(time.RFC3339Nano)
			time.Sleep(5 * time.Millisecond)
		}
	}
	read := func(s *server) string {
		var b strings.Builder
		for _, p := range products[:8] { // on all 4 shards
			b.Write(s.do("GET", "/v1/products/"+p+"/transactions?after=0&limit=1000", nil).raw)
			b.Write(s.do("GET", "/v1/products/"+p+"/transactions?after=250&limit=3", nil).raw)
			b.Write(s.do("GET", "/v1/products/"+p+"?as_of="+url.QueryEscape(mid), nil).raw)
			b.Write(s.do("GET", "/v1/products/"+p, nil).raw)
		}
		return b.String()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last server's log:\n%s", s.logs)
		}
	})
	before := read(s)
	if !strings.Contains(before, `"version":800`) {
		t.Fatalf("unexpected reads: %.300s", before)
	}
	stop := func(s *server) {
		s.cmd.Process.Signal(syscall.SIGTERM)
		<-s.done
	}
	stop(s)
	for i := range 4 {
		if got := segmentFiles(t, shard.ShardDir(dir, i)); len(got) < 3 {
			t.Fatalf("shard %d has %d segments, want at least 3", i, len(got))
		}
	}

	// Archiving on: writes to other products make snapshots, which archive.
	args := append(slices.Clone(base), "--archive-dir", arch)
	s = start(t, dir, args...)
	var others []string
	for i := range 20 {
		others = append(others, fmt.Sprintf("q%d", i))
	}
	for i := range 6 {
		if r := s.do("POST", "/v1/batch", string(addBatch(others, 1, fmt.Sprintf("c%d", i)))); r.status != 200 {
			t.Fatalf("batch: %d %s", r.status, r.raw)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := archivedMetric.FindStringSubmatch(string(s.do("GET", "/metrics", nil).raw))
		if m != nil && m[1] != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no segment archived after 10 s:\n%s", s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := read(s); got != before {
		t.Fatalf("with archived segments:\n%.500s\nwant\n%.500s", got, before)
	}
	stop(s)
	if !strings.Contains(s.logs.String(), "wal segments archived") {
		t.Errorf("no archive log line:\n%s", s.logs)
	}
	archived := 0
	for i := range 4 {
		live := segmentFiles(t, shard.ShardDir(dir, i))
		old := segmentFiles(t, shard.ShardDir(arch, i))
		snaps, err := shard.ListSnapshots(shard.SnapshotDir(dir, i))
		if err != nil || len(snaps) != shard.SnapshotsKept {
			t.Fatalf("shard %d: snapshots %v, %v", i, snaps, err)
		}
		oldest := snaps[len(snaps)-1].Loc >> 24 // the segment its record is in
		if !slices.Contains(live, oldest) {
			t.Errorf("shard %d: the oldest kept snapshot's segment %d is not live: %v", i, oldest, live)
		}
		for _, a := range old {
			if a >= oldest || slices.Contains(live, a) {
				t.Errorf("shard %d: segment %d archived, but the oldest kept snapshot is in segment %d (live %v)", i, a, oldest, live)
			}
		}
		if len(old) > 0 && (old[0] != 1 || len(live) == 0) {
			t.Errorf("shard %d: archive %v, live %v", i, old, live)
		}
		archived += len(old)
	}
	if archived == 0 {
		t.Fatal("nothing archived")
	}
	mf, err := os.ReadFile(filepath.Join(dir, shard.ManifestName))
	if err != nil || !strings.Contains(string(mf), arch) {
		t.Errorf("manifest %s does not record %s (%v)", mf, arch, err)
	}

	// Without the flag: refused, naming the directory to give.
	out, err := exec.CommandContext(context.Background(), binary, "--addr", freePort(t), "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--archive-dir "+arch) || !strings.Contains(string(out), "missing") {
		t.Errorf("start without --archive-dir: err %v, output %s", err, out)
	}

	// SIGKILL and restart; then a move interrupted by a crash: the
	// archive holds a temporary copy and a copy of a live segment.
	s = start(t, dir, args...)
	if got := read(s); got != before {
		t.Fatalf("after a restart:\n%.500s\nwant\n%.500s", got, before)
	}
	s.kill()
	liveDir, archDir := shard.ShardDir(dir, 0), shard.ShardDir(arch, 0)
	live := segmentFiles(t, liveDir)
	name := fmt.Sprintf("%020d", live[0])
	copyFile(t, filepath.Join(liveDir, name), filepath.Join(archDir, name))
	copyFile(t, filepath.Join(liveDir, name), filepath.Join(archDir, name+".tmp"))
	s = start(t, dir, args...)
	if !strings.Contains(s.logs.String(), "wal archive cleaned up") {
		t.Errorf("no clean-up reported:\n%s", s.logs)
	}
	if got := segmentFiles(t, archDir); slices.Contains(got, live[0]) {
		t.Errorf("the archive still holds live segment %d", live[0])
	}
	if _, err := os.Stat(filepath.Join(archDir, name+".tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary copy left: %v", err)
	}
	if got := read(s); got != before {
		t.Fatalf("after clean-up:\n%.500s\nwant\n%.500s", got, before)
	}
	s.kill()

	// Every snapshot damaged: the whole log is replayed, archive first.
	for i := range 4 {
		infos, _ := shard.ListSnapshots(shard.SnapshotDir(dir, i))
		for _, info := range infos {
			b, err := os.ReadFile(info.Path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(info.Path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	s = start(t, dir, args...)
	if !strings.Contains(s.logs.String(), "snapshot skipped") {
		t.Errorf("no damaged snapshot reported:\n%s", s.logs)
	}
	if got := read(s); got != before {
		t.Fatalf("after a full replay:\n%.500s\nwant\n%.500s", got, before)
	}
	// The reconciler reads the archive too.
	if r := s.do("POST", "/admin/reconcile", nil); r.status != 200 || !strings.HasPrefix(string(r.raw), `{`) ||
		regexp.MustCompile(`"divergent":[1-9]|"error"`).Match(r.raw) || !strings.Contains(string(r.raw), `"divergent":0`) {
		t.Errorf("reconcile: %d %s", r.status, r.raw)
	}
	s.kill()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPrepareArchive: a start is refused, before any replay, when a
// shard's log lacks its first segments where it looks for them, naming the
// archive directory the manifest records; the flag is recorded only once
// the logs check out, so a wrong --archive-dir does not erase the record.
func TestPrepareArchive(t *testing.T) {
	dir, arch := t.TempDir(), t.TempDir()
	if err := shard.PrepareDir(dir, 1); err != nil {
		t.Fatal(err)
	}
	l, _, err := wal.Open(shard.ShardDir(dir, 0), wal.Options{SegmentBytes: 1 << 10, ArchiveDir: shard.ShardDir(arch, 0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	locs := make([]uint64, 1)
	for range 40 {
		if err := l.Commit([][]byte{[]byte(strings.Repeat("x", 100))}, locs); err != nil {
			t.Fatal(err)
		}
		last = locs[0]
	}
	if n, _, err := l.Archive(last); err != nil || n == 0 {
		t.Fatalf("archive: %d, %v", n, err)
	}
	l.Close()
	cfg := func(archive string) *Config {
		c := &Config{DataDir: dir, ArchiveDir: archive}
		c.Engine.Shards = 1
		return c
	}
	quiet := slog.New(slog.DiscardHandler)
	err = prepareArchive(cfg(""), quiet)
	if err == nil || !strings.Contains(err.Error(), "blocks 1 to") {
		t.Errorf("without the archive, nothing recorded: %v", err)
	}
	if err := prepareArchive(cfg(arch), quiet); err != nil {
		t.Fatal(err)
	}
	if got, _ := shard.ManifestArchiveDir(dir); got != arch {
		t.Errorf("recorded %q, want %q", got, arch)
	}
	err = prepareArchive(cfg(""), quiet)
	if err == nil || !strings.Contains(err.Error(), "start with --archive-dir "+arch) {
		t.Errorf("without the flag: %v", err)
	}
	wrong := t.TempDir()
	err = prepareArchive(cfg(wrong), quiet)
	if err == nil || !strings.Contains(err.Error(), "start with --archive-dir "+arch) || !strings.Contains(err.Error(), wrong) {
		t.Errorf("a wrong archive directory: %v", err)
	}
	if got, _ := shard.ManifestArchiveDir(dir); got != arch {
		t.Errorf("a refused start changed the record to %q", got)
	}
	// Never created, never the data directory under another name.
	missing := filepath.Join(t.TempDir(), "unmounted")
	if err := prepareArchive(cfg(missing), quiet); err == nil || !strings.Contains(err.Error(), "mount its disk") {
		t.Errorf("a missing archive directory: %v", err)
	}
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(dir, alias); err != nil {
		t.Fatal(err)
	}
	if err := prepareArchive(cfg(alias), quiet); err == nil || !strings.Contains(err.Error(), "under another name") {
		t.Errorf("the data directory under another name: %v", err)
	}
	if got, _ := shard.ManifestArchiveDir(dir); got != arch {
		t.Errorf("a refused start changed the record to %q", got)
	}
}

// TestArchiveDirFlag: off by default; INVENTORY_ARCHIVE_DIR sets it, the
// flag wins; Validate makes it absolute and refuses the data directory.
func TestArchiveDirFlag(t *testing.T) {
	env := func(k string) string { return map[string]string{"INVENTORY_ARCHIVE_DIR": "/srv/env"}[k] }
	none := func(string) string { return "" }
	for _, c := range []struct {
		args   []string
		getenv func(string) string
		want   string
	}{
		{nil, none, ""},
		{nil, env, "/srv/env"},
		{[]string{"--archive-dir", "/srv/flag"}, env, "/srv/flag"},
	} {
		cfg, err := parse(c.args, c.getenv, io.Discard)
		if err != nil || cfg.ArchiveDir != c.want {
			t.Errorf("%v: archive dir %q, %v; want %q", c.args, cfg.ArchiveDir, err, c.want)
		}
	}
	cfg, _ := parse([]string{"--archive-dir", "rel"}, none, io.Discard)
	if err := cfg.Validate(); err != nil || !filepath.IsAbs(cfg.ArchiveDir) {
		t.Errorf("relative --archive-dir: %q, %v", cfg.ArchiveDir, err)
	}
	cfg, _ = parse([]string{"--archive-dir", "./data/", "--data-dir", "data"}, none, io.Discard)
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--archive-dir must not be the data directory") {
		t.Errorf("--archive-dir = --data-dir: %v", err)
	}
}
