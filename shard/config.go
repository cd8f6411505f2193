package shard

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BatchRequestOpsMax is the most ops one batch request may carry (API.md).
const BatchRequestOpsMax = 1000

// Config configures an Engine. Zero fields take the defaults below.
type Config struct {
	// Shards is the number of shard actors, each with its own journal. It is
	// fixed when a data directory is created.
	Shards int
	// InboxDepth bounds each shard's queue of requests (those waiting for a
	// product parked by an atomic batch count too); a full queue answers
	// overloaded at once. 4096 is far above what 64 concurrent clients can
	// queue on one product, and costs 32 KiB of channel per shard.
	InboxDepth int
	// BatchOpsMax bounds the ops one shard applies between two fsyncs. Larger
	// batches amortise the fsync further but wait longer; at least one whole
	// batch request must fit.
	BatchOpsMax int
	// TxInflightMax bounds atomic batches spanning shards that run at once;
	// each may park products while it waits for its other shards.
	TxInflightMax int
	// TxTimeout bounds an atomic batch spanning shards: a participant that
	// has not made its part durable by then fails the batch (nothing of it
	// applies), and a batch whose products stay held by others is refused
	// overloaded. A part takes one fsync; 2s is far past any healthy one.
	TxTimeout time.Duration
	// Retention is how long idempotency keys are remembered (at least).
	Retention time.Duration
	// ExpirePerBatchMax bounds the expiry RELEASEs one batch writes, so that a
	// mass expiry cannot stall requests; the rest follow in the next batches.
	ExpirePerBatchMax int
	// ForgetPerBatchMax bounds the idempotency keys forgotten per batch.
	ForgetPerBatchMax int
	// BlockBytesMax is the journal's largest block (the records of one batch).
	BlockBytesMax int

	// SnapshotDir returns the directory of shard i's snapshots (see
	// snapshot.go); nil turns snapshots off, and every start replays the
	// whole journal.
	SnapshotDir func(shard int) string
	// SnapshotEntries is how many entries a shard writes between two
	// snapshots; SnapshotInterval how long it waits at most, if it wrote
	// anything. A snapshot costs the actor a pause of 0.3-0.7 µs per
	// product and active hold (BenchmarkSnapshotCapture), a write of the
	// whole state off its goroutine, and saves the replay of every entry
	// it covers.
	SnapshotEntries  int
	SnapshotInterval time.Duration
	// OpenAfter, if set, opens shard i's journal passing replay only the
	// records at locator after and later (wal.OpenAfter): start-up after a
	// snapshot then reads only the tail of the log. Without it, the
	// journal is opened with the OpenJournal given to Open, and records up
	// to after are read and passed over.
	OpenAfter func(shard int, after uint64, replay func(loc uint64, rec []byte) error) (Journal, error)

	// Clock returns Unix nanoseconds; read once per batch. It stamps entries
	// (created_at, expires_at) and drives hold expiry and the retention of
	// idempotency keys, so it must not jump: a step forward would expire
	// holds early and forget keys that a retry seconds later still needs (a
	// write applied twice); a step back stalls time until the clock catches
	// up (the actor never goes below the last created_at).
	//
	// Default: the wall time read once, when the defaults are filled in,
	// plus the time elapsed since, measured by the monotonic clock
	// (steadyClock). Within a process a step of the wall clock (NTP, an
	// operator) moves nothing; the service's time keeps the rate of the
	// monotonic clock, which NTP slews, and differs from the wall clock by
	// the steps made since the start (and, on Linux, by the time the
	// machine was suspended, which the monotonic clock does not count: holds
	// then expire that much later). A restart takes the wall time afresh:
	// what is persisted stays wall time, and created_at stays monotonic
	// within a shard across a step back because the actor never stamps
	// below the last created_at it replayed.
	Clock func() int64
	// Logger receives start-up, replay and failure lines. Default: discard.
	Logger *slog.Logger
	// Registerer receives the engine's metrics. Default: none.
	Registerer prometheus.Registerer
}

// Defaults.
const (
	// ShardsDefault is measured on 2 cores and one disk (README,
	// Performance): uniform carts ran as fast on 1 shard as on 2 and faster
	// than on 4, and carts over a Zipf catalog 2.5-3x faster on 1 than on 2,
	// because a cart spanning shards holds its hot products for a round of
	// fsyncs, while carts on one shard share a flight. More shards pay off
	// with more cores and disks.
	ShardsDefault            = 1
	InboxDepthDefault        = 4096
	BatchOpsMaxDefault       = 1024
	TxInflightMaxDefault     = 1024
	TxTimeoutDefault         = 2 * time.Second
	RetentionDefault         = 24 * time.Hour
	ExpirePerBatchMaxDefault = 256
	ForgetPerBatchMaxDefault = 1024
	BlockBytesMaxDefault     = 4 << 20
	// SnapshotEntriesDefault: a million entries replay in about 0.2 s
	// here, the most a restart adds past the snapshot.
	SnapshotEntriesDefault  = 1 << 20
	SnapshotIntervalDefault = 10 * time.Minute
	// ShardsMax keeps the shard number inside the 14 bits it has in entry ids.
	ShardsMax = 1 << 14
)

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Shards, ShardsDefault)
	def(&c.InboxDepth, InboxDepthDefault)
	def(&c.BatchOpsMax, BatchOpsMaxDefault)
	def(&c.TxInflightMax, TxInflightMaxDefault)
	def(&c.ExpirePerBatchMax, ExpirePerBatchMaxDefault)
	def(&c.ForgetPerBatchMax, ForgetPerBatchMaxDefault)
	def(&c.BlockBytesMax, BlockBytesMaxDefault)
	def(&c.SnapshotEntries, SnapshotEntriesDefault)
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = SnapshotIntervalDefault
	}
	if c.Retention == 0 {
		c.Retention = RetentionDefault
	}
	if c.TxTimeout == 0 {
		c.TxTimeout = TxTimeoutDefault
	}
	if c.Clock == nil {
		start := time.Now()
		c.Clock = steadyClock(
			func() int64 { return time.Now().UnixNano() },
			func() time.Duration { return time.Since(start) })
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// steadyClock returns a clock that reads wall (Unix nanoseconds) once, now,
// and from then on adds what elapsed measures since that moment. With
// elapsed monotonic (time.Since of a time.Time read with time.Now, which Go
// measures on the monotonic clock), a step of the wall clock moves neither
// hold deadlines nor the retention window: see Config.Clock. The sources
// are parameters so that tests can step the wall clock.
func steadyClock(wall func() int64, elapsed func() time.Duration) func() int64 {
	start, from := wall(), elapsed()
	return func() int64 { return start + int64(elapsed()-from) }
}

// Validate fills defaults and checks every limit and the relations between them.
func (c *Config) Validate() error {
	c.setDefaults()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Shards >= 1 && c.Shards <= ShardsMax, "shards must be 1-%d, got %d", ShardsMax, c.Shards)
	check(c.InboxDepth >= 1, "inbox depth must be positive, got %d", c.InboxDepth)
	check(c.BatchOpsMax >= BatchRequestOpsMax, "batch ops max must be at least %d (one batch request), got %d", BatchRequestOpsMax, c.BatchOpsMax)
	check(c.TxInflightMax >= 1, "tx in-flight max must be positive, got %d", c.TxInflightMax)
	check(c.Retention >= time.Second, "retention must be at least 1s, got %s", c.Retention)
	check(c.TxTimeout >= time.Millisecond, "tx timeout must be at least 1ms, got %s", c.TxTimeout)
	check(c.ExpirePerBatchMax >= 1, "expire per batch max must be positive, got %d", c.ExpirePerBatchMax)
	check(c.SnapshotEntries >= 1, "snapshot entries must be positive, got %d", c.SnapshotEntries)
	check(c.SnapshotInterval >= time.Millisecond, "snapshot interval must be at least 1ms, got %s", c.SnapshotInterval)
	check(c.ForgetPerBatchMax >= 1, "forget per batch max must be positive, got %d", c.ForgetPerBatchMax)
	// A partial COMMIT writes two entries, so a batch writes at most
	// 2*BatchOpsMax + ExpirePerBatchMax entries; they must fit in one block.
	need := (2*c.BatchOpsMax + c.ExpirePerBatchMax) * (EntryBytesMax + 16)
	check(need <= c.BlockBytesMax, "a full batch may need %d bytes, above the journal's block limit of %d", need, c.BlockBytesMax)
	return errors.Join(errs...)
}
