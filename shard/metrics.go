package shard

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus metrics. Label children are resolved
// once, here, so that the hot path only increments.
type metrics struct {
	transactions *prometheus.CounterVec
	replays      prometheus.Counter
	expired      prometheus.Counter
	fsync        *prometheus.HistogramVec
	batchEntries *prometheus.HistogramVec
	failed       *prometheus.GaugeVec
	writeRetries *prometheus.CounterVec
	stalled      *prometheus.GaugeVec
	txCommitted  prometheus.Counter
	txAborted    prometheus.Counter
	txConflicts  prometheus.Counter
	txRetries    prometheus.Counter
	replay       prometheus.Gauge
	replayed     prometheus.Counter
	snapshots    *snapMetrics
	shards       []*shardMetrics
}

// shardMetrics are one shard's children, used only by its actor.
type shardMetrics struct {
	byType       [typeEnd]prometheus.Counter
	replays      prometheus.Counter
	expired      prometheus.Counter
	fsync        prometheus.Observer
	batchEntries prometheus.Observer
	failed       prometheus.Gauge
	writeRetries prometheus.Counter
	stalled      prometheus.Gauge
	activeHolds  atomic.Int64
	snapshots    *snapMetrics
}

func newMetrics(reg prometheus.Registerer, shards int, depth func(int) int) *metrics {
	m := &metrics{
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "inventory_transactions_total",
			Help: "Ledger entries appended, by type.",
		}, []string{"type"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inventory_idempotent_replays_total",
			Help: "Writes answered with the original response of their idempotency key.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inventory_reservations_expired_total",
			Help: "Holds released because their TTL passed.",
		}),
		fsync: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "inventory_wal_fsync_duration_seconds",
			Help:    "Time to write and fsync one WAL batch.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14), // 50µs .. 0.4s
		}, []string{"shard"}),
		batchEntries: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "inventory_wal_batch_entries",
			Help:    "Ledger entries per WAL batch (one write and one fsync), by shard.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12), // 1 .. 2048
		}, []string{"shard"}),
		failed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "inventory_shard_failed",
			Help: "1 if the shard stopped after a journal error.",
		}, []string{"shard"}),
		writeRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "inventory_wal_write_retries_total",
			Help: "Journal writes retried after a failed open (no free file descriptor, most often); the shard is stalled meanwhile.",
		}, []string{"shard"}),
		stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "inventory_shard_stalled",
			Help: "1 while the shard retries a journal write that could not open a file; it writes nothing meanwhile.",
		}, []string{"shard"}),
		replay: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "inventory_replay_duration_seconds",
			Help: "Time the start-up replay of all shards took.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inventory_replay_entries_total",
			Help: "Ledger entries replayed at start-up.",
		}),
	}
	txs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "inventory_atomic_batches_total",
		Help: "Atomic batches spanning shards, by outcome: committed, aborted (refused, or a shard failed), contention (products held by other batches until the deadline).",
	}, []string{"outcome"})
	m.txCommitted = txs.WithLabelValues("committed")
	m.txAborted = txs.WithLabelValues("aborted")
	m.txConflicts = txs.WithLabelValues("contention")
	m.txRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "inventory_atomic_batch_retries_total",
		Help: "Attempts of atomic batches spanning shards retried because a product was held by another batch.",
	})
	m.snapshots = newSnapMetrics()
	for i := 0; i < shards; i++ {
		label := strconv.Itoa(i)
		sm := &shardMetrics{
			replays:      m.replays,
			expired:      m.expired,
			fsync:        m.fsync.WithLabelValues(label),
			batchEntries: m.batchEntries.WithLabelValues(label),
			failed:       m.failed.WithLabelValues(label),
			writeRetries: m.writeRetries.WithLabelValues(label),
			stalled:      m.stalled.WithLabelValues(label),
			snapshots:    m.snapshots,
		}
		for _, t := range Types {
			sm.byType[t] = m.transactions.WithLabelValues(t.String())
		}
		m.shards = append(m.shards, sm)
	}
	if reg == nil {
		return m
	}
	depthVec := prometheus.NewDesc("inventory_shard_queue_depth", "Requests waiting in the shard's queue, those waiting for a product parked by an atomic batch included.", []string{"shard"}, nil)
	reg.MustRegister(m.transactions, m.replays, m.expired, m.fsync,
		m.batchEntries, m.failed, m.writeRetries, m.stalled, txs, m.txRetries, m.replay, m.replayed,
		m.snapshots.written, m.snapshots.failures, m.snapshots.skipped, m.snapshots.pause, m.snapshots.seconds,
		m.snapshots.archived, m.snapshots.archiveFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "inventory_reservations_active",
			Help: "Holds currently active.",
		}, func() float64 {
			var n int64
			for _, s := range m.shards {
				n += s.activeHolds.Load()
			}
			return float64(n)
		}),
		collectorFunc{desc: depthVec, collect: func(ch chan<- prometheus.Metric) {
			for i := 0; i < shards; i++ {
				ch <- prometheus.MustNewConstMetric(depthVec, prometheus.GaugeValue, float64(depth(i)), strconv.Itoa(i))
			}
		}},
	)
	return m
}

// collectorFunc is a collector of metrics computed at scrape time.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// snapMetrics are the snapshot metrics, shared by the shards.
type snapMetrics struct {
	written  prometheus.Counter
	failures prometheus.Counter
	skipped  prometheus.Counter
	pause    prometheus.Histogram
	seconds  prometheus.Histogram

	archived        prometheus.Counter
	archiveFailures prometheus.Counter
}

func newSnapMetrics() *snapMetrics {
	return &snapMetrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inventory_snapshots_written_total",
			Help: "Shard snapshots written.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inventory_snapshot_write_failures_total",
			Help: "Shard snapshots that failed to be written (the journal keeps everything; the next one retries).",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inventory_snapshots_skipped_total",
			Help: "Snapshots passed over at start-up as damaged, foreign or ahead of the journal.",
		}),
		pause: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "inventory_snapshot_capture_seconds",
			Help:    "Time a shard actor spends capturing its state for a snapshot (its pause).",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. 2.6s
		}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "inventory_snapshot_write_seconds",
			Help:    "Time to write one snapshot, off the actor.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 4, 8), // 1ms .. 16s
		}),
		archived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inventory_wal_segments_archived_total",
			Help: "WAL segments moved to the archive directory after a snapshot (--archive-dir).",
		}),
		archiveFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inventory_wal_archive_failures_total",
			Help: "Archive runs that stopped on an error; the segments stay readable where they are and the next snapshot retries.",
		}),
	}
}
