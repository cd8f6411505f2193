package shard

import (
	"math/rand/v2"
	"testing"
)

// TestTableMatchesMap runs random puts, overwrites and deletes against a Go
// map, through many part growths.
func TestTableMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var tb table[int64]
	want := map[hkey]int64{}
	var keys []hkey
	for i := 0; i < 300_000; i++ {
		switch op := r.IntN(10); {
		case op < 6 || len(keys) == 0:
			k := hkey{r.Uint64() | 1, r.Uint64()}
			if r.IntN(50) == 0 {
				k[1] = keys[0][1] // a shared half must not confuse lookups
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

func BenchmarkTablePutMiss(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var tb table[idemRecord]
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		k := hkey{r.Uint64() | 1, r.Uint64()}
		if _, ok := tb.get(k); ok {
			b.Fatal("dup")
		}
		tb.put(k, idemRecord{fp: 1, version: int64(i)})
	}
}
