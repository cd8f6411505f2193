package shardtest_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/inventory-ledger/inventory/shard"
	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// Opener must give what shard.Open takes.
var _ shard.OpenJournal = shardtest.Opener[shard.Journal](nil)

// write locates and writes one block of recs, and returns their locators.
func write(t *testing.T, j *shardtest.Journal, recs ...string) ([]uint64, error) {
	t.Helper()
	bs := make([][]byte, len(recs))
	for i, r := range recs {
		bs[i] = []byte(r)
	}
	locs := make([]uint64, len(bs))
	if err := j.Locate(bs, locs); err != nil {
		t.Fatalf("locate %q: %v", recs, err)
	}
	return locs, j.Write(bs)
}

// replayed reopens j and returns what it replays, as "loc:rec" strings.
func replayed(t *testing.T, j *shardtest.Journal) []string {
	t.Helper()
	var got []string
	if err := j.Open(func(loc uint64, rec []byte) error {
		got = append(got, fmt.Sprintf("%d:%s", loc, rec))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func blocks(j *shardtest.Journal) string { return fmt.Sprintf("%q", j.Blocks()) }

func TestRecordAndRestart(t *testing.T) {
	j := &shardtest.Journal{}
	if locs, err := write(t, j, "a", "b"); err != nil || !slices.Equal(locs, []uint64{1, 2}) {
		t.Fatalf("first block: locators %v, %v", locs, err)
	}
	if locs, err := write(t, j, "c"); err != nil || !slices.Equal(locs, []uint64{3}) {
		t.Fatalf("second block: locators %v, %v", locs, err)
	}
	if got, want := blocks(j), `[["a" "b"] ["c"]]`; got != want {
		t.Errorf("blocks %s, want %s", got, want)
	}
	if recs, err := j.ReadMany([]uint64{3, 1}); err != nil || fmt.Sprintf("%q", recs) != `["c" "a"]` {
		t.Errorf("ReadMany(3, 1): %q, %v", recs, err)
	}
	if _, err := j.ReadMany([]uint64{4}); err == nil {
		t.Error("ReadMany of a locator never written succeeded")
	}
	j.Close()
	if !j.Closed() {
		t.Error("not Closed after Close")
	}
	if _, err := write(t, j, "d"); err == nil {
		t.Error("Write after Close succeeded")
	}
	if got, want := replayed(t, j), []string{"1:a", "2:b", "3:c"}; !slices.Equal(got, want) {
		t.Errorf("replayed %v, want %v", got, want)
	}
	if j.Closed() {
		t.Error("still Closed after Open")
	}
	if locs, err := write(t, j, "d"); err != nil || !slices.Equal(locs, []uint64{4}) {
		t.Errorf("after the restart: locators %v, %v", locs, err)
	}
	stop := errors.New("stop")
	if err := j.Open(func(uint64, []byte) error { return stop }); err != stop {
		t.Errorf("Open returned %v, want replay's error", err)
	}
}

func TestFail(t *testing.T) {
	errDisk := errors.New("disk")
	for _, c := range []struct {
		name string
		f    shardtest.Fault
		want string // the blocks after the failing Write and one more
	}{
		{"next write lost", shardtest.Fault{Err: errDisk}, `[["a"]]`},
		{"next write kept", shardtest.Fault{Err: errDisk, Written: true}, `[["a"] ["b"]]`},
		{"second write lost", shardtest.Fault{After: 1, Err: errDisk}, `[["a"] ["b"]]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			js := shardtest.Journals(1)
			j := js[0]
			write(t, j, "a")
			j.Fail(c.f)
			var errs []error
			for _, r := range []string{"b", "c", "d"} {
				_, err := write(t, j, r)
				errs = append(errs, err)
			}
			for i, err := range errs {
				if want := i >= c.f.After; (err != nil) != want || (err != nil && err != errDisk) {
					t.Errorf("write %d after Fail: %v, want failing %v with the injected error", i+1, err, want)
				}
			}
			if got := blocks(j); got != c.want {
				t.Errorf("blocks %s, want %s", got, c.want)
			}
			// A restart forgets the failure.
			if _, err := shardtest.Opener[shard.Journal](js)(0, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := write(t, j, "e"); err != nil {
				t.Errorf("write after a restart: %v", err)
			}
		})
	}
}

func TestHold(t *testing.T) {
	j := &shardtest.Journal{}
	started, release := j.Hold()
	bs := [][]byte{[]byte("a")}
	if err := j.Locate(bs, make([]uint64, 1)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- j.Write(bs) }()
	<-started
	if n := len(j.Records()); n != 0 {
		t.Errorf("%d records written while the Write is held", n)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	release() // a second release is harmless
	if _, err := write(t, j, "b"); err != nil {
		t.Fatal(err) // and Writes no longer wait
	}
	if got, want := blocks(j), `[["a"] ["b"]]`; got != want {
		t.Errorf("blocks %s, want %s", got, want)
	}
}

func TestCut(t *testing.T) {
	j := &shardtest.Journal{}
	j.Append([]byte("a"), []byte("b"))
	j.Append([]byte("c"))
	write(t, j, "d", "e")
	j.Close()
	j.Cut(len(j.Blocks()) - 1) // the block in flight did not make it
	if got, want := replayed(t, j), []string{"1:a", "2:b", "3:c"}; !slices.Equal(got, want) {
		t.Errorf("after losing the last block: replayed %v, want %v", got, want)
	}
	if locs, err := write(t, j, "f"); err != nil || !slices.Equal(locs, []uint64{4}) {
		t.Errorf("after the cut: locators %v, %v", locs, err)
	}
	j.Cut(1)
	if got, want := replayed(t, j), []string{"1:a", "2:b"}; !slices.Equal(got, want) {
		t.Errorf("after Cut(1): replayed %v, want %v", got, want)
	}
}
