package shard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FormatVersion is the version of the data directory's layout and records.
// Format 2 added the tx records of atomic batches spanning shards (tx.go);
// a format 1 directory is read as it is and marked 2 at its first start.
const (
	FormatVersion     = 2
	formatVersionNoTx = 1
)

// ManifestName is the file in a data directory that records its layout.
const ManifestName = "MANIFEST.json"

type manifest struct {
	Format int `json:"format"`
	Shards int `json:"shards"`
	// ArchiveDir is the directory the shards' old log segments were last
	// archived to (inventoryd --archive-dir), absolute; empty if never. A
	// start or a tool without the flag names it rather than reading a log
	// that begins mid-way.
	ArchiveDir string `json:"archive_dir,omitempty"`
}

// PrepareDir creates dir with a manifest for shards shards, or checks that
// an existing one matches: products are routed by hash modulo the shard
// count, so a directory can only be opened with the count it was made with.
func PrepareDir(dir string, shards int) error {
	path := filepath.Join(dir, ManifestName)
	m, err := readManifest(dir)
	switch {
	case err == nil:
		if m.Format != FormatVersion && m.Format != formatVersionNoTx {
			return fmt.Errorf("%s: data format %d, this build reads formats %d and %d", path, m.Format, formatVersionNoTx, FormatVersion)
		}
		if m.Shards != shards {
			return fmt.Errorf("%s: the data directory was created with %d shards, not %d: start with --shards %d (changing the count needs an offline re-shard)", dir, m.Shards, shards, m.Shards)
		}
		if m.Format == formatVersionNoTx {
			// Format 2 only adds tx records; mark the directory so that a
			// build that cannot read them refuses it.
			m.Format = FormatVersion
			b, _ := json.Marshal(m)
			return WriteFileSync(dir, ManifestName, append(b, '\n'))
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := MakeDir(dir); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read data dir: %w", err)
	}
	// A crash while the manifest was first written leaves its temporary
	// file: that directory is still new.
	// The lock file is the running process's own.
	ents = slices.DeleteFunc(ents, func(e os.DirEntry) bool {
		if e.Name() == LockName {
			return true
		}
		if strings.HasPrefix(e.Name(), ManifestName+".tmp") {
			os.Remove(filepath.Join(dir, e.Name()))
			return true
		}
		return false
	})
	if len(ents) > 0 {
		return fmt.Errorf("data dir %s is not empty but has no %s: refusing to guess its layout", dir, ManifestName)
	}
	b, _ := json.Marshal(manifest{Format: FormatVersion, Shards: shards})
	return WriteFileSync(dir, ManifestName, append(b, '\n'))
}

// ManifestShards returns the shard count recorded in dir's manifest, and
// false if dir has none yet.
func ManifestShards(dir string) (int, bool, error) {
	m, err := readManifest(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return m.Shards, true, nil
}

// ShardDir returns the journal directory of shard i inside dir.
func ShardDir(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("shard-%04d", i))
}

// ArchiveShardDir returns shard i's directory under the WAL archive
// directory archive, and "" when there is no archive ("").
func ArchiveShardDir(archive string, i int) string {
	if archive == "" {
		return ""
	}
	return ShardDir(archive, i)
}

// WriteFileSync writes name in dir atomically and durably: a temporary file
// (mode 0600), fsync, rename, fsync of the directory. A reader sees the old
// file or the new one, never half of one.
func WriteFileSync(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return dirSynced(dir)
}

// ManifestArchiveDir returns the archive directory recorded in dir's
// manifest (RecordArchiveDir), "" if none.
func ManifestArchiveDir(dir string) (string, error) {
	m, err := readManifest(dir)
	if err != nil {
		return "", err
	}
	return m.ArchiveDir, nil
}

// RecordArchiveDir records archive, an absolute path, as the directory
// dir's old log segments are archived to, if the manifest does not say so
// already. It returns whether it changed the manifest.
func RecordArchiveDir(dir, archive string) (bool, error) {
	m, err := readManifest(dir)
	if err != nil {
		return false, err
	}
	if m.ArchiveDir == archive {
		return false, nil
	}
	m.ArchiveDir = archive
	b, _ := json.Marshal(m)
	return true, WriteFileSync(dir, ManifestName, append(b, '\n'))
}

// readManifest reads dir's manifest; a missing one is an error that
// unwraps to fs.ErrNotExist.
func readManifest(dir string) (manifest, error) {
	var m manifest
	path := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(path)
	if err != nil {
		return m, fmt.Errorf("read manifest: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("read %s: %w", path, err)
	}
	return m, nil
}
