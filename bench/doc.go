// Command bench is the load-test harness of the inventory service: it
// loads a running service (or one it starts itself), reports throughput
// and latency, and then proves from the service's own ledger that nothing
// was oversold or lost.
//
// A run goes in this order:
//
//  1. Flags are checked; the target must be a loopback address. With
//     -spawn, ./cmd/inventoryd is built and started on a free loopback
//     port and a fresh temp data dir, and /readyz is awaited.
//  2. The scenario creates its products, named
//     bench-<scenario>-s<seed>-<nonce>-..., so that runs against one
//     server never share a product; the seed fixes every random choice.
//  3. Load: closed loop (-c workers, each sending its next step when the
//     last is answered) or open loop (-rate steps per second on a fixed
//     timetable, each timed from its intended send time, so a stalled
//     service cannot hide its stall by slowing the sender: no coordinated
//     omission). Both stop by themselves at -duration (after -warmup),
//     at -max-steps, or when the scenario ends (a flash sale sold out).
//  4. Every request is recorded in a log-linear histogram (hist.go) and a
//     per-second timeline; requests due during the warm-up are verified
//     but not reported.
//  5. Verification (verify.go) walks every touched product's whole ledger
//     and checks the running balances, contiguous versions, available ≥ 0,
//     holds settled once, that every acknowledged write's entry is there
//     at its version and that no refused write left one; then the
//     scenario's own totals (flashsale: exactly N holds when sold out).
//  6. Reports: a text summary on stdout, -json, -chart (self-contained
//     HTML with inline SVG). The exit code is 1 when verification found a
//     problem, 2 on bad usage or a failed setup.
//
// Every request loop is bounded in count and in time, and every request
// has a timeout.
package main
