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

	// Clock returns Unix nanoseconds; read once per batch. Default: time.Now.
	Clock func() int64
	// Logger receives start-up, replay and failure lines. Default: discard.
	Logger *slog.Logger
	// Registerer receives the engine's metrics. Default: none.
	Registerer prometheus.Registerer
}

// Defaults.
const (
	ShardsDefault            = 4
	InboxDepthDefault        = 4096
	BatchOpsMaxDefault       = 1024
	TxInflightMaxDefault     = 1024
	TxTimeoutDefault         = 2 * time.Second
	RetentionDefault         = 24 * time.Hour
	ExpirePerBatchMaxDefault = 256
	ForgetPerBatchMaxDefault = 1024
	BlockBytesMaxDefault     = 4 << 20
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
	if c.Retention == 0 {
		c.Retention = RetentionDefault
	}
	if c.TxTimeout == 0 {
		c.TxTimeout = TxTimeoutDefault
	}
	if c.Clock == nil {
		c.Clock = func() int64 { return time.Now().UnixNano() }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
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
	check(c.ForgetPerBatchMax >= 1, "forget per batch max must be positive, got %d", c.ForgetPerBatchMax)
	// A partial COMMIT writes two entries, so a batch writes at most
	// 2*BatchOpsMax + ExpirePerBatchMax entries; they must fit in one block.
	need := (2*c.BatchOpsMax + c.ExpirePerBatchMax) * (EntryBytesMax + 16)
	check(need <= c.BlockBytesMax, "a full batch may need %d bytes, above the journal's block limit of %d", need, c.BlockBytesMax)
	return errors.Join(errs...)
}
