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
//
// # Atomic batches
//
// On one shard, an atomic batch is decided and applied on a scratch fork of
// the state first (State.fork) and on the live state only if every op
// passes; its entries go into one WAL block, so a crash keeps all or none.
// Across shards the Engine runs two phases: it prepares each shard in
// ascending order (a dry run that, on success, parks the ops' products: a
// request touching a parked product waits in its shard until the batch
// resolves, so no one observes tentative state or is refused because of it;
// the waiting requests count against the shard's queue),
// then tells every shard to commit, or aborts. The global order rules out
// deadlock. While a product is parked its due holds do not expire (the
// batch may commit them): they wait out of the expiry heap and expire as
// soon as it is unparked, while the holds of other products expire on
// time. A crash between the shards' commits can leave the batch durable
// on some shards only; its ops carry their idempotency keys, so a retry of
// the batch completes it (applied ops replay), and holds it made expire by
// TTL if no retry comes.
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
// Per product: its balances (64 B), its map slot and id, and 8 B per ledger
// entry (the locator of each version, so that a page of history or an
// idempotent replay reads only the entries it returns). Per reservation
// ever made: 32 B in the reservation index (ids are never reused, so they
// are kept). Per active hold: 56 B plus its heap slot (or, while it is due
// and its product parked, its place among the holds set aside). Per
// idempotency key inside the retention window: 56 B (its index slot and its
// place in the age queue). The indexes are cuckoo tables (table.go) that
// stay 66-88% full; after a replay, both indexes start 80% full
// (table.load). At the end of a replay each idempotency key and
// reservation also takes 64 B for a moment: collected in log order, then
// sorted by part for the bulk load.
package shard
