package wal

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// BenchmarkDiskBound measures what the disk allows the engine's hot path,
// with no WAL library and no ledger around it: 64 goroutines each append a
// record of benchRecordBytes and wait until it is durable, while one writer
// takes whatever has arrived as one block, writes it with one write and
// syncs it; the next block fills meanwhile. It is the ceiling of
// BenchmarkEngineHotProduct's single-op case on the same disk.
//
//   - append: write at the end of the file, then fsync (what tidwall/wal
//     does: the file grows, so every block also commits the file system's
//     journal);
//   - overwrite: write over a file already filled with zeros, then
//     fdatasync (what a WAL that preallocates its segments could do).
func BenchmarkDiskBound(b *testing.B) {
	for _, mode := range []string{"append", "overwrite"} {
		b.Run(mode, func(b *testing.B) {
			benchDiskBound(b, mode == "overwrite")
		})
	}
}

func benchDiskBound(b *testing.B, overwrite bool) {
	const clients, prealloc = 64, 64 << 20
	path := filepath.Join(b.TempDir(), "seg")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	flush := f.Sync
	if overwrite {
		zero := make([]byte, 1<<20)
		for i := 0; i < prealloc>>20; i++ {
			if _, err := f.Write(zero); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		flush = func() error { return syscall.Fdatasync(int(f.Fd())) }
	}
	in := make(chan chan struct{}, clients)
	var blocks atomic.Int64
	go func() {
		rec := benchRecords(1)[0]
		var off int64
		var waiting []chan struct{}
		var buf []byte
		for done := range in {
			waiting = append(waiting[:0], done)
		drain:
			for {
				select {
				case done := <-in:
					waiting = append(waiting, done)
				default:
					break drain
				}
			}
			buf = buf[:0]
			for range waiting {
				buf = append(buf, rec...)
			}
			if overwrite && off+int64(len(buf)) > prealloc {
				off = 0
			}
			if _, err := f.WriteAt(buf, off); err != nil {
				panic(err)
			}
			off += int64(len(buf))
			if err := flush(); err != nil {
				panic(err)
			}
			blocks.Add(1)
			for _, w := range waiting {
				w <- struct{}{}
			}
		}
	}()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range clients {
		wg.Go(func() {
			done := make(chan struct{}, 1)
			for next.Add(1) <= int64(b.N) {
				in <- done
				<-done
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(in)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(b.N)/float64(blocks.Load()), "records/block")
}
