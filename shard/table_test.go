package shard

import (
	"math/bits"
	"math/rand/v2"
	"testing"
)

// TestTableMatchesMap runs random puts, overwrites and deletes against a Go
// map, through many part growths.
func TestTableMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	tb := newTable[int64](tablePartBits)
	want := map[hkey]int64{}
	var keys []hkey
	for i := 0; i < 300_000; i++ {
		switch op := r.IntN(10); {
		case op < 6 || len(keys) == 0:
			k := hkey{r.Uint64() | 1, r.Uint64()}
			if r.IntN(50) == 0 {
				k.h1 = keys[0].h1 // a shared half must not confuse lookups
			}
			_, had := want[k]
			if added := tb.put(k, int64(i)); added == had {
				t.Fatalf("put: added %v, key was there %v", added, had)
			}
			want[k] = int64(i)
			keys = append(keys, k)
		case op < 8:
			k := keys[r.IntN(len(keys))]
			_, had := want[k]
			if got := tb.del(k); got != had {
				t.Fatalf("del: %v, want %v", got, had)
			}
			delete(want, k)
		default:
			k := keys[r.IntN(len(keys))]
			got, ok := tb.get(k)
			w, had := want[k]
			if ok != had || got != w {
				t.Fatalf("get: %d %v, want %d %v", got, ok, w, had)
			}
		}
	}
	if tb.len() != len(want) {
		t.Fatalf("len %d, want %d", tb.len(), len(want))
	}
	for k, w := range want {
		if got, ok := tb.get(k); !ok || got != w {
			t.Fatalf("final get: %d %v, want %d", got, ok, w)
		}
	}
	if _, ok := tb.get(hkey{7, 7}); ok {
		t.Error("found a key never put")
	}
}

// TestTableLoad checks the bulk load against puts in the same order: the
// same contents (a later slot with a key wins), and a table that then takes
// puts, gets and deletes like any other.
func TestTableLoad(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 7, 1000, tableBatchChunk, tableBatchChunk + 1, 200_000} {
		var slots []tableSlot[int64]
		for i := 0; i < n; i++ {
			k := hkey{r.Uint64() | 1, r.Uint64()}
			if i > 0 && r.IntN(20) == 0 {
				k = slots[r.IntN(len(slots))].k // a key used again
			}
			slots = append(slots, tableSlot[int64]{k, int64(i)})
		}
		loaded, put := newTable[int64](tablePartBits), newTable[int64](tablePartBits)
		// A part already filled before the load keeps working too.
		pre := hkey{1, 2}
		loaded.put(pre, -1)
		put.put(pre, -1)
		var batch tableBatch[int64]
		for _, s := range slots {
			batch.add(s.k, s.v)
		}
		loaded.load(&batch, nil)
		for _, s := range slots {
			put.put(s.k, s.v)
		}
		if got, want := contents(&loaded), contents(&put); len(got) != len(want) || loaded.len() != put.len() {
			t.Fatalf("n=%d: %d keys (len %d), want %d (len %d)", n, len(got), loaded.len(), len(want), put.len())
		} else {
			for k, v := range want {
				if got[k] != v {
					t.Fatalf("n=%d: key %x = %d, want %d", n, k, got[k], v)
				}
			}
		}
		for i := 0; i < n/2; i++ {
			k := slots[i].k
			if loaded.del(k) != put.del(k) {
				t.Fatalf("n=%d: del %x disagrees", n, k)
			}
		}
		for i := 0; i < n/2; i++ {
			k := hkey{r.Uint64() | 1, r.Uint64()}
			loaded.put(k, int64(i))
			if v, ok := loaded.get(k); !ok || v != int64(i) {
				t.Fatalf("n=%d: get after load %d %v", n, v, ok)
			}
		}
	}
}

func BenchmarkTablePutMiss(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	tb := newTable[idemRecord](tablePartBits)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		k := hkey{r.Uint64() | 1, r.Uint64()}
		if _, ok := tb.get(k); ok {
			b.Fatal("dup")
		}
		tb.put(k, idemRecord{fp: 1, version: int64(i)})
	}
}

// TestTableMatches checks the tag-word search against a byte-by-byte one:
// the lowest flagged byte is always a true match, every true match is
// flagged, and a flag elsewhere is at most a false candidate.
func TestTableMatches(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 200_000; i++ {
		w := r.Uint64()
		for b := 0; b < 8; b++ { // make equal and zero bytes common
			switch r.IntN(4) {
			case 0:
				w &^= 0xff << (8 * b)
			case 1:
				w = w&^(0xff<<(8*b)) | 0x01<<(8*b)
			}
		}
		tg := uint64(r.IntN(3))
		m := matches(w, tg)
		for b := 0; b < 8; b++ {
			if w>>(8*b)&0xff == tg && m>>(8*b+7)&1 == 0 {
				t.Fatalf("matches(%#x, %d) = %#x: byte %d not flagged", w, tg, m, b)
			}
		}
		if m != 0 {
			if b := bits.TrailingZeros64(m) / 8; w>>(8*b)&0xff != tg {
				t.Fatalf("matches(%#x, %d) = %#x: lowest flag on byte %d is false", w, tg, m, b)
			}
		}
	}
}

// TestTableSameTag fills a table with keys that share their whole second
// half, so one first bucket and one tag for all: lookups must compare whole
// keys, and the keys must spread through their second buckets.
func TestTableSameTag(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	tb := newTable[int64](tablePartBits)
	var keys []hkey
	for i := 0; i < 2000; i++ {
		k := hkey{r.Uint64()&^(0xff<<56) | 1, 0x1234_0000_0000_0000} // one part, tag byte 0 (stored as 1)
		keys = append(keys, k)
		if !tb.put(k, int64(i)) {
			t.Fatalf("key %d reported present", i)
		}
	}
	for i, k := range keys {
		if v, ok := tb.get(k); !ok || v != int64(i) {
			t.Fatalf("key %d: %d %v", i, v, ok)
		}
	}
	for i, k := range keys[:1000] {
		if !tb.del(k) {
			t.Fatalf("del key %d", i)
		}
	}
	for i, k := range keys {
		if _, ok := tb.get(k); ok != (i >= 1000) {
			t.Fatalf("key %d after deletes: found %v", i, ok)
		}
	}
}
