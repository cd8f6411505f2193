package shard

import (
	"strconv"
	"testing"
)

// TestBloom: every key added is found, and keys not added pass the filter
// at about the rate its size gives (10 bits a key, 7 bits in one block).
func TestBloom(t *testing.T) {
	const n = 100_000
	b := newBloom(n)
	for i := range n {
		b.add(stableHash("p", strconv.Itoa(i)+"-in"))
	}
	for i := range n {
		if !b.mayHave(stableHash("p", strconv.Itoa(i)+"-in")) {
			t.Fatalf("key %d added and not found", i)
		}
	}
	passed := 0
	for i := range n {
		if b.mayHave(stableHash("p", strconv.Itoa(i)+"-out")) {
			passed++
		}
	}
	if rate := float64(passed) / n; rate > 0.02 {
		t.Errorf("false positive rate %.4f, want below 0.02", rate)
	} else {
		t.Logf("false positive rate %.4f", rate)
	}
}
