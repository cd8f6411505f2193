//go:build !inventory_broken

package shard

// skipStockCheck is false in every real build. The build tag
// inventory_broken turns it on, to build a server that oversells: the
// negative control of the linearizability test, which must catch it.
const skipStockCheck = false
