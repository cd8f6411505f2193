// Package shard is the inventory ledger's domain: the rules of API.md, the
// state they act on, and the actors that own that state.
//
// # Layers
//
//  1. State (state.go) is pure: decide(state, op, now) returns the entries
//     an op appends or a coded *Error, without changing anything; apply
//     (state, entry) is the only mutation, shared by live processing and
//     WAL replay, and checks every invariant of the entry it adds. No
//     clock, randomness, I/O or map iteration order is involved: the actor
//     passes time in, and entry ids are derived from time, shard number and
//     the shard's entry counter.
//  2. The actor (actor.go) is the only goroutine that touches a shard's
//     State. It drains its inbox in batches, decides and applies each
//     request in order, encodes the entries (msgpack, codec.go), locates
//     them in the journal, and hands the batch to the shard's writer
//     goroutine, which writes it with one write and one fsync and only then
//     answers. Reads take the same path, so no answer shows state that is
//     not durable. A full queue (the inbox and the requests waiting for a
//     parked product) answers overloaded at once.
//  3. The Engine (engine.go) routes by a stable hash of the product id,
//     replays every shard's journal in parallel at start-up, coordinates
//     batches that span shards, and reads ledger entries back from the
//     journals for history, reservations and idempotent replays.
//  4. Around them, three readers of the ledger that change nothing:
//     Engine.StockAsOf (asof.go) answers a product's stock as of a past
//     time by a binary search over its entries, whose locators it asks the
//     actor for a few at a time; ReplayLedger (ledger.go) replays a data
//     directory's logs offline, through the same replayer, apply and
//     in-doubt resolution as start-up, for the inventoryctl tools; and the
//     Reconciler (reconcile.go) sums each shard's durable log independently
//     and compares the result with the live balances, read from the actor
//     256 products per request.
//
// # Atomic batches
//
// On one shard, an atomic batch is decided first and applied to the live
// state only if every op passes; its entries go into one WAL block, so a
// crash keeps all or none. A batch of up to 16 ops on different products
// (a cart) is decided on the live state itself, since no op can see
// another's effect; any other batch is decided and applied on a scratch
// fork of the state (State.fork).
//
// Across shards the batch is a tx, numbered by the engine (past every tx in
// the logs at start-up). Each shard keeps its part in its own log only, so
// that each log can later be replicated on its own:
//
//  1. The coordinator (Engine.atomicBatch) sends every participant its part
//     at once. The shard dry-runs it on a fork, always: the fork's apply checks
//     every entry before the part is durable. If every op passes, it puts
//     a PREPARE record (tx, participants, entry count) and the part's
//     entries, decided but not applied, into its current flight, parks the
//     products, and answers when that flight is durable: one fsync, in the
//     shard's normal group commit, in parallel with the other shards.
//  2. The tx is committed exactly when every participant's PREPARE is
//     durable. The coordinator then tells each participant to apply its
//     part, which unparks the products and puts a COMMIT record in the next
//     flight (nobody waits for it), and answers the client.
//  3. A part refused by a rule aborts the tx: the prepared parts are dropped
//     and write an ABORT record. A part whose product another tx has parked
//     follows wait-die: it waits for the holder if its tx is older (by its
//     first attempt's number, kept across retries), and is refused at once
//     if younger; the coordinator then retries the tx after a short random
//     backoff until Config.TxTimeout, then answers overloaded. Waits only go
//     from older to younger, so no cycle of waits (deadlock) can form, and a
//     retried tx only grows older, so none starves. An older tx may thus
//     hold its other parts while it waits for a younger one's outcome: one
//     fsync round, bounded by TxTimeout.
//  4. A participant that failed (journal error) or did not answer within
//     TxTimeout may still get its PREPARE onto the disk. Before answering,
//     the coordinator makes an ABORT durable on a prepared participant, and
//     answers unavailable: nothing of the batch applies. If no participant
//     can record it, the answer says the outcome is known after a restart.
//
// While a product is parked, requests that touch it wait in its shard (and
// count against its queue); nothing tentative is ever read, and a request
// after the client's answer sees the tx (the commit message is queued before
// the answer goes out, or, should the shard's ctrl queue be full, the
// products stay parked until it arrives). Its due holds do not expire (the part's entries were
// decided on its balances): they wait out of the expiry heap and expire as
// soon as it is unparked, while the holds of other products expire on time.
// Idempotency keys are forgotten on schedule, a parked product's too: a
// prepared part is applied as it was decided, never decided again. Recovery reads the logs with the same rule:
//
//   - replay collects a PREPARE's entries without applying them, parks their
//     products (an entry on a parked product before the outcome is
//     corruption), applies them at their COMMIT and drops them at their
//     ABORT;
//   - a tx still in doubt after every shard has replayed is committed if
//     some participant's log has its COMMIT, or if every participant's log
//     has its PREPARE and none has its ABORT; otherwise it is aborted. Every
//     shard reaches the same answer from the same logs, and the first flight
//     writes it down. wal.Open fsyncs the replayed tail first, so a power cut
//     after a process crash cannot take back a PREPARE recovery counted.
//
// The crash cases, for a tx over shards A and B (TestTxCrashPoints, with
// TestTxRandomCrashes and the cmd/inventoryd crash loop):
//
//	crash point                                      logs after it          outcome
//	before either PREPARE is durable                 -                      aborted; the client had no answer
//	after A's PREPARE fsync, before B's              A: P                   aborted (B has no P)
//	after both PREPARE fsyncs (client maybe told)    A: P, B: P             committed
//	after A's COMMIT record, before B's              A: P C, B: P           committed
//	after both COMMIT records                        A: P C, B: P C         committed (nothing in doubt)
//	B timed out or failed; A's ABORT durable         A: P X, B: P or -      aborted; the client got 503
//	B refused a rule or a parked product             A: P (X), B: -         aborted; the client got the refusal
//	during recovery, before its COMMIT/ABORT records as before recovery     the same outcome again
//	during replay                                    unchanged              the same outcome again
//
// Costs: one PREPARE record per part and one COMMIT or ABORT record, each a
// few bytes, in flights the shard writes anyway; no fsync of its own. A
// retry with the same idempotency keys after an unknown outcome replays
// every op (200) if the tx applied, and is evaluated afresh if it did not.
//
// # Time
//
// The actor reads Config.Clock once per batch and passes the value in:
// entries are stamped with it (created_at, and a hold's expires_at), holds
// expire by it and idempotency keys are forgotten by it. Within a process
// the default clock is the wall time taken at start plus the time elapsed
// since, measured by the monotonic clock, so that a step of the wall clock
// (NTP, an operator) neither expires holds early nor forgets a key that a
// retry seconds later still needs, and a step back does not stall time.
// What is persisted is wall time: at a restart the clock starts again from
// the wall clock, deadlines and timestamps replayed keep their meaning, and
// created_at stays monotonic within a shard (the actor never stamps below
// the last created_at it replayed).
//
// # Memory
//
// Memory follows the live state, not the history (BenchmarkMemoryPer, the
// README's numbers):
//
//   - per product: its balances, id and map slot (about 150 B), and 8 B
//     per entry written since the last snapshot (the locator of each
//     version, so that a page of history or an idempotent replay reads
//     only the entries it returns). The locators a snapshot covers are
//     read from its file (State.locRange).
//   - per active hold: about 140 B (its slot, index record and heap slot).
//   - per idempotency key inside the retention window: about 135 B (its
//     index slot, its name and its place in the age queue).
//   - per reservation settled before the last snapshot: 1.5 B (Bloom
//     filter and sparse index, settled.go); one settled since: its index
//     record and ids (State.fresh) until the next snapshot.
//
// The indexes are cuckoo tables (table.go) that stay 66-88% full and do
// not shrink: the slots settled reservations leave at a snapshot stay
// allocated until a restart. A replay collects the idempotency keys it
// keeps (32 B each, for a moment) and loads them in bulk; with snapshots
// on, the reservations it settles wait in State.fresh, every 2^20 of them
// go sorted to an unnamed spill file (State.spill), and past 65536 in all
// they go to the one snapshot written before the shard starts, which
// merges the spills. Such a replay holds every entry's locator in RAM
// (8 B each) until that snapshot.
//
// # Snapshots
//
// See snapshot.go (what a snapshot holds, how the actor hands it over,
// atomic batches) and snapfile.go (the file format, the write steps).
// Offline tools find and read snapshots with SnapshotDir, ListSnapshots,
// LoadSnapshot (the newest valid one, into a State, as start-up does) and
// ReadSnapshot (a summary to compare with a replay; ReplayLedger compares
// it when its replay reaches the snapshot's last record).
//
// A start trusts a snapshot only if the journal holds the record it ends
// with. One that ends past the journal (a start-up snapshot of a tail a
// power cut took, or a journal restored from an older backup) is renamed
// to <name>.ahead and the directory fsynced before the start tries the
// next older one; if the rename fails, the start fails, since a snapshot
// left in place would be trusted once the journal grows past its locator.
//
// # Archiving
//
// Once a snapshot is durable, a journal that implements Archiver (wal.Log
// with an archive directory) is asked to move the sealed segments before
// the one holding the record the oldest kept snapshot ends with
// (archive.go), on the goroutine that wrote the snapshot, before the actor
// can close the journal. The journal keeps reading what it moved, so
// history, as_of, a full replay and the Reconciler see the whole ledger;
// the engine only chooses the point, never deletes anything.
package shard
