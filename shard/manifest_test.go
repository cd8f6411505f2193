package shard

import (
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

	future := t.TempDir()
	os.WriteFile(filepath.Join(future, ManifestName), []byte(`{"format": 2, "shards": 4}`), 0o600)
	if err := PrepareDir(future, 4); err == nil || !strings.Contains(err.Error(), "format 2") {
		t.Errorf("unknown format: %v", err)
	}
}

func TestRouteIsStable(t *testing.T) {
	// Data directories depend on these values: they must never change.
	for id, want := range map[string]int{"sku-1": 3, "hot": 0, "a": 1, "order-77": 2} {
		if got := Route(id, 4); got != want {
			t.Errorf("Route(%q, 4) = %d, want %d", id, got, want)
		}
	}
}
