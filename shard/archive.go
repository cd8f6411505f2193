package shard

import (
	"time"
)

// Archiver is a Journal that can move its old sealed segments to an
// archive directory (wal.Log with an ArchiveDir; without one it moves
// nothing). The journal keeps reading what it moved: history pages,
// as_of reads and a full replay find archived records as before.
type Archiver interface {
	// Archive moves the sealed segments whose records all lie before the
	// record at loc, and reports how many segments and bytes it moved.
	Archive(loc uint64) (segments int, bytes int64, err error)
}

// archive is called once a snapshot is durable, on the goroutine that
// wrote it, before that goroutine hands the snapshot back to the actor:
// so no two archive runs of a shard overlap (the next snapshot starts only
// after the actor adopts this one) and the journal is not closed under it
// (finalSnapshot waits for the busy snapshot). It lets the journal archive
// the segments the shard's oldest kept snapshot no longer needs at a
// start, so that the fallback snapshot (SnapshotsKept) still finds its log
// in the live directory. Never the segment being written. A failure is
// logged and counted: the journal keeps every record readable where it
// was.
func (a *actor) archive() {
	ar, ok := a.journal.(Archiver)
	if !ok {
		return
	}
	infos, err := ListSnapshots(a.snap.dir)
	if err != nil || len(infos) == 0 {
		return
	}
	oldest := infos[len(infos)-1].Loc // newest first
	t := time.Now()
	n, bytes, err := ar.Archive(oldest)
	if n > 0 {
		a.m.snapshots.archived.Add(float64(n))
	}
	if err != nil {
		a.m.snapshots.archiveFailures.Inc()
		a.cfg.Logger.Error("wal segments not archived; they stay readable where they are, the next snapshot retries", "shard", a.id, "moved", n, "err", err)
		return
	}
	if n > 0 {
		a.cfg.Logger.Info("wal segments archived", "shard", a.id, "segments", n, "bytes", bytes,
			"before_loc", oldest, "duration", time.Since(t).Round(time.Millisecond).String())
	}
}
