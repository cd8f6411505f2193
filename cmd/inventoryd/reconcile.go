package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/wal"
)

// Range of --reconcile-interval when it is on. A run reads every shard's
// whole log, so more often than a minute buys nothing but disk reads; a
// week is the longest a divergence should go unnoticed.
const (
	reconcileIntervalMin = time.Minute
	reconcileIntervalMax = 7 * 24 * time.Hour
)

// newReconciler returns the reconciler of engine, which reads each shard's
// log beside it with a wal.Reader (over its archive too, if any).
func newReconciler(cfg *Config, engine *shard.Engine, log *slog.Logger) (*shard.Reconciler, error) {
	return shard.NewReconciler(engine, shard.ReconcilerConfig{
		OpenLog: func(i int) shard.LogCursor {
			return wal.NewReaderWithArchive(shard.ShardDir(cfg.DataDir, i), shard.ArchiveShardDir(cfg.ArchiveDir, i))
		},
		Logger:     log,
		Registerer: cfg.Engine.Registerer,
	})
}

// reconcileEvery runs rc every interval once the engine has replayed, until
// ctx ends. The run itself logs and counts what it finds; a run the
// endpoint started is not waited for (that tick is skipped).
func reconcileEvery(ctx context.Context, rc *shard.Reconciler, engine *shard.Engine, interval time.Duration, log *slog.Logger) {
	if err := engine.Wait(ctx); err != nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := rc.Run(ctx); err != nil && ctx.Err() == nil {
				log.Warn("periodic reconciliation did not run", "err", err.Detail)
			}
		}
	}
}
