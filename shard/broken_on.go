//go:build inventory_broken

package shard

// skipStockCheck makes RESERVE and REMOVE ignore available stock. Only the
// linearizability test builds this, to show that its checker catches a
// server that oversells; never ship it.
const skipStockCheck = true
