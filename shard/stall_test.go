package shard

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// retryableErr is a journal error the shard must retry, as wal.RetryError.
type retryableErr struct{}

func (retryableErr) Error() string   { return "open segment: too many open files" }
func (retryableErr) Retryable() bool { return true }

// eventually waits for cond, failing the test after a generous deadline: a
// wait for a state, not a timing assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStalledWriteRetries makes a shard's journal report a retryable error
// until the test heals it: the write waits instead of failing, readiness
// names the shard as stalled, the other shard keeps working, and once the
// journal heals the write is acknowledged and the shard is ready again.
func TestStalledWriteRetries(t *testing.T) {
	reg := prometheus.NewRegistry()
	te := &testEngine{t: t, js: shardtest.Journals(2), clock: newFakeClock()}
	te.cfg = Config{Shards: 2, Clock: te.clock.now, Registerer: reg}
	te.open()
	ctx := context.Background()
	onStalled, onOther := productsOn(2, 0, 1)[0], productsOn(2, 1, 1)[0]
	te.write(add(onStalled, 5))

	te.js[0].Fail(shardtest.Fault{Err: retryableErr{}, Transient: 1 << 30})
	done := make(chan *Error, 1)
	go func() {
		_, err := te.Write(ctx, add(onStalled, 1))
		done <- err
	}()
	eventually(t, "readiness names the stalled shard", func() bool {
		err := te.Readiness()
		return err != nil && err.Code == CodeUnavailable && len(err.Shards) == 1 && err.Shards[0] == 0
	})
	if gauge(t, reg, "inventory_shard_stalled", "0") != 1 || counter(t, reg, "inventory_wal_write_retries_total") < 1 {
		t.Error("the stall is not in the metrics")
	}
	select {
	case err := <-done:
		t.Fatalf("the stalled write was answered: %v", err)
	default:
	}
	te.write(add(onOther, 1)) // the other shard is unaffected

	te.js[0].Disarm()
	if err := <-done; err != nil {
		t.Fatalf("the write after the stall: %v", err)
	}
	if err := te.Readiness(); err != nil {
		t.Errorf("readiness after the stall: %v", err)
	}
	if gauge(t, reg, "inventory_shard_stalled", "0") != 0 {
		t.Error("inventory_shard_stalled still 1")
	}
	if st := te.stock(onStalled); st.OnHand != 6 || st.Version != 2 {
		t.Errorf("after the stall: %+v, want on hand 6 at version 2", st)
	}
	te.cfg.Registerer = nil // a new process has a new registry
	te.restart()
	if st := te.stock(onStalled); st.OnHand != 6 || st.Version != 2 {
		t.Errorf("after a restart: %+v, want on hand 6 at version 2: the retried block written once", st)
	}
}

// TestStalledShardCloses stops an engine whose shard is stalled for good:
// Close returns, and the stalled write is answered unavailable.
func TestStalledShardCloses(t *testing.T) {
	te := startEngine(t, 1)
	te.js[0].Fail(shardtest.Fault{Err: retryableErr{}, Transient: 1 << 30})
	done := make(chan *Error, 1)
	go func() {
		_, err := te.Write(context.Background(), add("p", 1))
		done <- err
	}()
	eventually(t, "the shard stalls", func() bool { return te.Readiness() != nil })
	// Close waits for the request in flight until ctx ends, then stops the
	// shard, which gives up the retries.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	te.Close(ctx)
	if err := <-done; err == nil || err.Code != CodeUnavailable {
		t.Errorf("the stalled write: %v, want unavailable", err)
	}
}

// TestReadinessNamesFailedShards fails one shard's journal: readiness names
// it, and only it.
func TestReadinessNamesFailedShards(t *testing.T) {
	te := startEngine(t, 3)
	if err := te.Readiness(); err != nil {
		t.Fatalf("ready engine: %v", err)
	}
	p := productsOn(3, 1, 1)[0]
	te.js[1].Fail(shardtest.Fault{Err: errInjected})
	te.Write(context.Background(), add(p, 1))
	err := te.Readiness()
	if err == nil || err.Code != CodeUnavailable || len(err.Shards) != 1 || err.Shards[0] != 1 {
		t.Fatalf("readiness with shard 1 failed: %+v", err)
	}
}

// TestMetricsCountOnlyDurable holds a flight at the journal: the counters
// and the active-holds gauge must not show its entries until it is durable,
// and must show none of a flight that failed.
func TestMetricsCountOnlyDurable(t *testing.T) {
	reg := prometheus.NewRegistry()
	te := &testEngine{t: t, js: shardtest.Journals(1), clock: newFakeClock()}
	te.cfg = Config{Shards: 1, Clock: te.clock.now, Registerer: reg}
	te.open()
	te.write(add("p", 5))
	before := counter(t, reg, "inventory_transactions_total")

	started, release := te.js[0].Hold()
	done := make(chan *Error, 1)
	go func() {
		_, err := te.Write(context.Background(), reserve("p", "r1", 1))
		done <- err
	}()
	<-started
	if got := counter(t, reg, "inventory_transactions_total"); got != before {
		t.Errorf("transactions_total %v while the flight is not durable, want %v", got, before)
	}
	if got := gauge(t, reg, "inventory_reservations_active", ""); got != 0 {
		t.Errorf("reservations_active %v while the hold is not durable, want 0", got)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := counter(t, reg, "inventory_transactions_total"); got != before+1 {
		t.Errorf("transactions_total %v once durable, want %v", got, before+1)
	}
	if got := gauge(t, reg, "inventory_reservations_active", ""); got != 1 {
		t.Errorf("reservations_active %v once durable, want 1", got)
	}

	te.js[0].Fail(shardtest.Fault{Err: errInjected})
	te.Write(context.Background(), reserve("p", "r2", 1))
	if got := counter(t, reg, "inventory_transactions_total"); got != before+1 {
		t.Errorf("transactions_total %v after a failed flight, want %v", got, before+1)
	}
	if got := gauge(t, reg, "inventory_reservations_active", ""); got != 1 {
		t.Errorf("reservations_active %v after a failed flight, want 1", got)
	}
}

// counter sums a metric over its labels.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return gauge(t, reg, name, "*")
}

// gauge returns a metric's value for the shard label value (or, for "",
// the unlabelled metric; for "*", the sum over every label).
func gauge(t *testing.T, reg *prometheus.Registry, name, shardLabel string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			match := shardLabel == "*" || (shardLabel == "" && len(m.Label) == 0)
			for _, l := range m.Label {
				if l.GetName() == "shard" && l.GetValue() == shardLabel {
					match = true
				}
			}
			if match {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
