package wal

import (
	"bytes"
	"fmt"
	"testing"
)

// benchRecordBytes is the size of a typical encoded ledger event.
const benchRecordBytes = 150

// benchRecords returns n distinct records of benchRecordBytes bytes.
func benchRecords(n int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		r := bytes.Repeat([]byte{'e'}, benchRecordBytes)
		copy(r, fmt.Sprintf("event %d ", i))
		recs[i] = r
	}
	return recs
}

func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			l, _, _ := openLog(b, b.TempDir(), Options{})
			defer l.Close()
			recs := benchRecords(n)
			locs := make([]uint64, n)
			b.ReportAllocs()
			b.SetBytes(int64(n * benchRecordBytes))
			for b.Loop() {
				if err := l.Commit(recs, locs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

func BenchmarkOpenReplay(b *testing.B) {
	const blocks, perBlock = 1000, 1000 // 1M records
	dir := b.TempDir()
	l, _, _ := openLog(b, dir, Options{})
	recs := benchRecords(perBlock)
	locs := make([]uint64, perBlock)
	for range blocks {
		if err := l.Commit(recs, locs); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}

	var seen int
	count := func(uint64, []byte) error { seen++; return nil }
	b.ReportAllocs()
	for b.Loop() {
		seen = 0
		l, rep, err := Open(dir, Options{}, count)
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
		if seen != blocks*perBlock || rep.Repaired {
			b.Fatalf("replayed %d records, report %+v", seen, rep)
		}
	}
	b.ReportMetric(float64(b.N*blocks*perBlock)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRead reads a page of 100 records, scattered over one segment as
// one product's entries are among others', by locator (one file open
// each) and in one ReadMany.
func BenchmarkRead(b *testing.B) {
	l, _, _ := openLog(b, b.TempDir(), Options{})
	defer l.Close()
	recs := benchRecords(1000)
	locs := make([]uint64, len(recs))
	if err := l.Commit(recs, locs); err != nil {
		b.Fatal(err)
	}
	page := make([]uint64, 0, 100)
	for i := 0; i < len(locs); i += 10 {
		page = append(page, locs[i])
	}
	b.Run("each", func(b *testing.B) {
		for b.Loop() {
			for _, loc := range page {
				if _, err := l.Read(loc); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("many", func(b *testing.B) {
		for b.Loop() {
			if _, err := l.ReadMany(page); err != nil {
				b.Fatal(err)
			}
		}
	})
}
