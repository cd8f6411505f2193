package shard

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := PrepareDir(dir, 4); err != nil {
		t.Fatalf("new dir: %v", err)
	}
	if err := PrepareDir(dir, 4); err != nil {
		t.Errorf("same shard count: %v", err)
	}
	err := PrepareDir(dir, 8)
	if err == nil || !strings.Contains(err.Error(), "created with 4 shards") || !strings.Contains(err.Error(), "--shards 4") {
		t.Errorf("other shard count: got %v, want a refusal naming 4 shards", err)
	}

	stray := t.TempDir()
	os.WriteFile(filepath.Join(stray, "something"), []byte("x"), 0o600)
	if err := PrepareDir(stray, 4); err == nil {
		t.Errorf("a non-empty directory without a manifest was accepted")
	}

	// A crash while the first manifest was written leaves its temporary file.
	torn := t.TempDir()
	os.WriteFile(filepath.Join(torn, ManifestName+".tmp123"), []byte("{"), 0o600)
	if err := PrepareDir(torn, 4); err != nil {
		t.Errorf("directory with a leftover temporary manifest: %v", err)
	}

	future := t.TempDir()
	os.WriteFile(filepath.Join(future, ManifestName), []byte(`{"format": 3, "shards": 4}`), 0o600)
	if err := PrepareDir(future, 4); err == nil || !strings.Contains(err.Error(), "format 3") {
		t.Errorf("unknown format: %v", err)
	}

	// Format 1 (before tx records) opens, and is marked format 2.
	old := t.TempDir()
	os.WriteFile(filepath.Join(old, ManifestName), []byte(`{"format": 1, "shards": 4}`), 0o600)
	if err := PrepareDir(old, 4); err != nil {
		t.Errorf("format 1: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(old, ManifestName)); !strings.Contains(string(b), `"format":2`) {
		t.Errorf("format 1 manifest after a start: %s, want format 2", b)
	}
}

func TestRouteIsStable(t *testing.T) {
	// Data directories depend on these values: they must never change.
	for id, want := range map[string][2]int{"sku-1": {2, 4}, "hot": {2, 5}, "a": {2, 3}, "order-77": {1, 2}, "sku-2": {3, 5}} {
		if got := [2]int{Route(id, 4), Route(id, 7)}; got != want {
			t.Errorf("Route(%q, 4 and 7) = %v, want %v", id, got, want)
		}
	}
}

func TestRouteSpreadsSimilarIDs(t *testing.T) {
	const n = 20_000
	for _, shards := range []int{2, 4, 7, 16} {
		count := make([]int, shards)
		for i := 0; i < n; i++ {
			count[Route(fmt.Sprintf("sku-%d", i), shards)]++
		}
		for s, c := range count {
			if mean := n / shards; c < mean*9/10 || c > mean*11/10 {
				t.Errorf("%d shards: shard %d got %d of %d ids", shards, s, c, n)
			}
		}
	}
}

// TestRecordArchiveDir: the archive directory is recorded once, read back,
// and kept when a format 1 manifest is upgraded.
func TestRecordArchiveDir(t *testing.T) {
	dir := t.TempDir()
	if err := PrepareDir(dir, 2); err != nil {
		t.Fatal(err)
	}
	if a, err := ManifestArchiveDir(dir); err != nil || a != "" {
		t.Errorf("new directory: archive %q, %v", a, err)
	}
	for i, want := range []bool{true, false} {
		if changed, err := RecordArchiveDir(dir, "/srv/archive"); err != nil || changed != want {
			t.Errorf("record %d: changed %v, %v; want %v", i, changed, err, want)
		}
	}
	if a, err := ManifestArchiveDir(dir); err != nil || a != "/srv/archive" {
		t.Errorf("recorded: %q, %v", a, err)
	}
	old := t.TempDir()
	os.WriteFile(filepath.Join(old, ManifestName), []byte(`{"format": 1, "shards": 2, "archive_dir": "/srv/a"}`), 0o600)
	if err := PrepareDir(old, 2); err != nil {
		t.Fatal(err)
	}
	if a, err := ManifestArchiveDir(old); err != nil || a != "/srv/a" {
		t.Errorf("after the format upgrade: %q, %v", a, err)
	}
}
