package shard

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inventory-ledger/inventory/shard/shardtest"
)

// Transcript tests of the actor loop: a script of inputs (requests, tx
// outcomes) and journal completions drives one actor on a fake journal
// whose every write waits until the script lets it through, and every
// output (each block written, each answer, the requests waiting for a
// parked product) is checked in order. Which flight a request joins is
// fixed by the script, not by timing: a request is submitted only while
// the writer is held at the disk, or while both the writer and the current
// flight are empty, and each step waits for the actor to take what it was
// given.
//
// The flights' op budget is 4 here (Config.Validate's floor of one batch
// request, 1000 ops, is about the block size, which the fake journal does
// not bound), so that a transcript fills one with a few ops.
const transcriptOpsMax = 4

func TestTranscriptPipelineAndFailure(t *testing.T) {
	runTranscript(t,
		submit("A", write(add("p", 5))),
		diskBusy().note("flight 1 = [A]"),
		submit("B", write(reserve("p", "r1", 1))),
		submit("C", write(reserve("p", "r2", 1))),
		diskWrites("ADD p 5 v1"),
		answers("A: ok v1"),
		diskBusy().note("flight 2 = [B C]"),
		submit("D", write(reserve("p", "r3", 1))),
		diskWrites("RESERVE p/r1 1 v2", "RESERVE p/r2 1 v3"),
		answers("B: ok v2", "C: ok v3"),
		diskBusy().note("flight 3 = [D]"),
		submit("E", stock("p")),
		diskFails(),
		answers("D: unavailable", "E: unavailable").note("E's flight is not written"),
		submit("F", write(add("p", 1))),
		answers("F: unavailable").note("at once: the shard has failed for good"),
	)
}

func TestTranscriptTx(t *testing.T) {
	runTranscript(t,
		submit("A", write(add("p", 10))),
		diskBusy(),
		diskWrites("ADD p 10 v1"),
		answers("A: ok v1"),
		submit("P", prepare(1, 1, reserve("p", "r1", 2))),
		diskBusy().note("flight 2 = [P]: p is parked"),
		submit("R", write(reserve("p", "r2", 1))),
		waiting(1).note("R waits for p, out of the flight"),
		submit("Y", prepare(2, 2, reserve("p", "r3", 1))),
		answers("Y: overloaded").note("at once: tx 2 is younger than p's holder"),
		submit("S", write(add("q", 1))),
		diskWrites("PREPARE 1 [0 1] 1", "RESERVE p/r1 2 v2"),
		answers("P: ok v2"),
		diskBusy().note("flight 3 = [S]"),
		commitTx(1),
		waiting(0).note("R joins flight 4, after the COMMIT"),
		submit("U", write(add("p", 1))),
		diskWrites("ADD q 1 v1"),
		answers("S: ok v1"),
		diskBusy(),
		diskWrites("COMMIT 1", "RESERVE p/r2 1 v3", "ADD p 1 v4"),
		answers("R: ok v3", "U: ok v4"),
		abortTx(5).note("not prepared here: nothing to write"),
		submit("Z", late(prepare(5, 5, reserve("p", "r4", 1)))),
		answers("Z: unavailable").note("at once: past its deadline, tx 5 is aborted"),
		abortDurably("X", 6),
		diskBusy(),
		diskWrites("ABORT 6"),
		answers("X: ok"),
	)
}

func TestTranscriptCarry(t *testing.T) {
	runTranscript(t,
		submit("A", write(add("p", 10))),
		diskBusy(),
		diskWrites("ADD p 10 v1"),
		answers("A: ok v1"),
		submit("P", prepare(1, 1, reserve("p", "r1", 1))).note("3 ops: an entry and 2 shards"),
		diskBusy(),
		diskWrites("PREPARE 1 [0 1] 1", "RESERVE p/r1 1 v2"),
		answers("P: ok v2").note("p is parked"),
		submit("B", write(add("a", 1))),
		diskBusy().note("flight 3 = [B]"),
		submit("G", write(add("b", 1), add("c", 1), add("d", 1))).note("3 of flight 4's 4 ops"),
		submit("H", write(add("e", 1), add("f", 1))).note("does not fit: carried to flight 5"),
		queue("I", write(add("g", 1))).note("stays in the inbox: nothing is taken past a carried request"),
		diskWrites("ADD a 1 v1"),
		answers("B: ok v1"),
		diskBusy().note("flight 4 = [G]; flight 5 opens with H, then I"),
		submit("C", write(reserve("p", "r2", 1), add("h", 1))).note("does not fit: carried to flight 6"),
		queue("D", write(add("i", 1), add("j", 1), add("k", 1))),
		diskWrites("ADD b 1 v1", "ADD c 1 v1", "ADD d 1 v1"),
		answers("G: ok v1 v1 v1"),
		diskBusy().note("flight 5 = [H I]; flight 6 opens with C, and D is carried"),
		waiting(1).note("C waits for p: D takes the emptied flight 6"),
		diskWrites("ADD e 1 v1", "ADD f 1 v1", "ADD g 1 v1"),
		answers("H: ok v1 v1", "I: ok v1"),
		diskBusy().note("flight 6 = [D]"),
		commitTx(1),
		waiting(0).note("C joins flight 7, after the COMMIT"),
		diskWrites("ADD i 1 v1", "ADD j 1 v1", "ADD k 1 v1"),
		answers("D: ok v1 v1 v1"),
		diskBusy(),
		diskWrites("COMMIT 1", "RESERVE p/r2 1 v3", "ADD h 1 v1"),
		answers("C: ok v3 v1"),
	)
}

// transcript is the state of a script run against one actor.
type transcript struct {
	a    *actor
	j    *shardtest.Journal
	reqs map[string]*request
	open []string // submitted and not yet answered, in submit order
	// blocks is how many of the journal's blocks the script has checked.
	blocks int
	// The journal's current hold: the next write waits for release.
	started <-chan struct{}
	release func()
	// busy is set once a write is seen waiting for release.
	busy bool
}

// step is one line of a transcript.
type step struct {
	line string
	run  func(*transcript) error
}

// note adds why to the step's line.
func (s step) note(why string) step {
	s.line += "  # " + why
	return s
}

// runTranscript runs steps against a new actor, and then checks that every
// block written and every request answered was checked. It fails at the
// first step whose output differs from the script, naming it.
func runTranscript(t *testing.T, steps ...step) {
	t.Helper()
	cfg := Config{Shards: 1, Clock: newFakeClock().now}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.BatchOpsMax = transcriptOpsMax
	tr := &transcript{j: &shardtest.Journal{}, reqs: map[string]*request{}}
	tr.started, tr.release = tr.j.Hold()
	m := newMetrics(nil, 1, func(int) int { return 0 })
	tr.a = newActor(0, &cfg, NewState(0, int64(cfg.Retention)), tr.j, m.shards[0])
	go tr.a.run()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		tr.release()
		close(tr.a.quit)
		return within("the actor to stop", func() bool {
			select {
			case <-tr.a.done:
				return true
			default:
				return false
			}
		})
	}
	t.Cleanup(func() { stop() })
	fail := func(n int, err error) {
		t.Helper()
		var b strings.Builder
		for i, s := range steps {
			mark := "  "
			if i == n {
				mark = "->"
			}
			fmt.Fprintf(&b, "\n%s %2d  %s", mark, i+1, s.line)
		}
		at := fmt.Sprintf("step %d", n+1)
		if n == len(steps) {
			at = "end"
			b.WriteString("\n-> end")
		}
		t.Fatalf("transcript %s: %v%s", at, err, b.String())
	}
	for i, s := range steps {
		if err := s.run(tr); err != nil {
			fail(i, err)
		}
	}
	if err := stop(); err != nil {
		fail(len(steps), err)
	}
	if n := len(tr.j.Blocks()); n != tr.blocks {
		fail(len(steps), fmt.Errorf("%d blocks written, the script checked %d: %q", n, tr.blocks, tr.j.Blocks()[tr.blocks:]))
	}
	if len(tr.open) > 0 {
		fail(len(steps), fmt.Errorf("requests %v never checked as answered", tr.open))
	}
}

// submit queues request r, named name, in the actor's inbox and waits
// until the actor has taken it.
func submit(name string, r *request) step {
	return step{fmt.Sprintf("submit %s: %s", name, describe(r)), func(tr *transcript) error {
		if err := tr.submit(name, r); err != nil {
			return err
		}
		return within(name+" to leave the inbox", func() bool { return len(tr.a.inbox) == 0 })
	}}
}

// queue queues r in the inbox and does not wait: the actor takes nothing
// from it while a request is carried over.
func queue(name string, r *request) step {
	return step{fmt.Sprintf("queue %s: %s", name, describe(r)), func(tr *transcript) error {
		return tr.submit(name, r)
	}}
}

func (tr *transcript) submit(name string, r *request) error {
	if _, dup := tr.reqs[name]; dup {
		return fmt.Errorf("two requests named %s", name)
	}
	tr.reqs[name] = r
	tr.open = append(tr.open, name)
	if !tr.a.submit(r) {
		return fmt.Errorf("%s refused: the queue is full", name)
	}
	return nil
}

// commitTx, abortTx and abortDurably send the outcome of tx on the actor's
// ctrl queue, as the coordinator does, and wait until the actor has taken
// it. Only a durable abort is answered, and it is named.
func commitTx(tx uint64) step {
	return resolveStep("", fmt.Sprintf("commit tx %d", tx), tx, true, false)
}
func abortTx(tx uint64) step {
	return resolveStep("", fmt.Sprintf("abort tx %d", tx), tx, false, false)
}
func abortDurably(name string, tx uint64) step {
	return resolveStep(name, fmt.Sprintf("abort tx %d durably (%s)", tx, name), tx, false, true)
}

func resolveStep(name, line string, tx uint64, commit, durable bool) step {
	return step{line, func(tr *transcript) error {
		r := newRequest(reqResolve)
		r.tx, r.commit, r.durable = tx, commit, durable
		if name != "" {
			tr.reqs[name] = r
			tr.open = append(tr.open, name)
		}
		tr.a.ctrl <- r
		return within("the outcome to leave ctrl", func() bool { return len(tr.a.ctrl) == 0 })
	}}
}

// waiting waits until n requests wait for a parked product.
func waiting(n int) step {
	return step{fmt.Sprintf("%d waiting for a parked product", n), func(tr *transcript) error {
		return within(fmt.Sprintf("%d requests waiting", n), func() bool { return int(tr.a.waiting.Load()) == n })
	}}
}

// diskBusy waits until the writer has a flight and waits on the journal.
func diskBusy() step {
	return step{"the writer waits on the disk with a flight", (*transcript).waitWrite}
}

func (tr *transcript) waitWrite() error {
	if tr.busy {
		return nil
	}
	select {
	case <-tr.started:
		tr.busy = true
		return nil
	case <-time.After(transcriptWaitMax):
		return fmt.Errorf("no write reached the disk within %s", transcriptWaitMax)
	}
}

// diskWrites lets the write that waits complete (the next one waits
// again) and checks its block: recs, as recordString writes them.
func diskWrites(recs ...string) step {
	return step{"the disk writes [" + strings.Join(recs, ", ") + "]", func(tr *transcript) error {
		if err := tr.completeWrite(); err != nil {
			return err
		}
		var blocks [][][]byte
		if err := within("the block to be written", func() bool {
			blocks = tr.j.Blocks()
			return len(blocks) > tr.blocks
		}); err != nil {
			return err
		}
		if len(blocks) != tr.blocks+1 {
			return fmt.Errorf("%d blocks written, want %d", len(blocks), tr.blocks+1)
		}
		got := make([]string, len(blocks[tr.blocks]))
		for i, rec := range blocks[tr.blocks] {
			got[i] = recordString(rec)
		}
		tr.blocks++
		if !slices.Equal(got, recs) {
			return fmt.Errorf("block %d is %q, want %q", tr.blocks, got, recs)
		}
		return nil
	}}
}

// diskFails fails the write that waits, as a failed write or fsync.
func diskFails() step {
	return step{"the disk fails the write", func(tr *transcript) error {
		tr.j.Fail(shardtest.Fault{Err: errInjected})
		return tr.completeWrite()
	}}
}

// completeWrite releases the write that waits, once it does, after arming
// a hold for the next one.
func (tr *transcript) completeWrite() error {
	if err := tr.waitWrite(); err != nil {
		return err
	}
	release := tr.release
	tr.started, tr.release = tr.j.Hold()
	tr.busy = false
	release()
	return nil
}

// answers waits for the answers of the requests named, in order, and
// checks each against "name: answer" (see answerString). Then no other
// request may have been answered yet.
func answers(want ...string) step {
	return step{"answers " + strings.Join(want, ", "), func(tr *transcript) error {
		for _, w := range want {
			name, text, ok := strings.Cut(w, ": ")
			r := tr.reqs[name]
			if !ok || r == nil || !slices.Contains(tr.open, name) {
				return fmt.Errorf("bad script: %q names no request waiting for its answer", w)
			}
			select {
			case <-r.done:
			case <-time.After(transcriptWaitMax):
				return fmt.Errorf("%s not answered within %s", name, transcriptWaitMax)
			}
			tr.open = slices.DeleteFunc(tr.open, func(n string) bool { return n == name })
			if got := answerString(r); got != text {
				return fmt.Errorf("%s answered %q, want %q", name, got, text)
			}
		}
		for _, name := range tr.open {
			select {
			case <-tr.reqs[name].done:
				return fmt.Errorf("%s answered too early: %q", name, answerString(tr.reqs[name]))
			default:
			}
		}
		return nil
	}}
}

// transcriptWaitMax bounds every wait of a transcript: generous, since it
// only ever ends a run that failed.
const transcriptWaitMax = 10 * time.Second

// within waits until cond holds, or fails after transcriptWaitMax.
func within(what string, cond func() bool) error {
	deadline := time.Now().Add(transcriptWaitMax)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s for %s", transcriptWaitMax, what)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

// write, stock and prepare build requests as the engine does.
func write(ops ...Op) *request {
	r := newRequest(reqWrite)
	for i := range ops {
		if err := ops[i].Validate(); err != nil {
			panic(fmt.Sprintf("transcript op %d: %v", i, err))
		}
		r.index = append(r.index, i)
	}
	r.ops = ops
	return r
}

func stock(p string) *request {
	r := newRequest(reqStock)
	r.productID = p
	return r
}

// prepare is a part of tx, of age prio, over shards 0 and 1.
func prepare(tx, prio uint64, ops ...Op) *request {
	r := write(ops...)
	r.kind, r.tx, r.prio, r.shards = reqPrepare, tx, prio, []int{0, 1}
	r.deadline = time.Now().Add(time.Hour)
	return r
}

// late makes a part taken up after its coordinator stopped waiting.
func late(r *request) *request {
	r.deadline = time.Now().Add(-time.Millisecond)
	return r
}

// describe renders a request for a transcript line.
func describe(r *request) string {
	var ops []string
	for _, op := range r.ops {
		s := fmt.Sprintf("%s %s %d", op.Type, op.ProductID, op.Quantity)
		if op.ReservationID != "" {
			s = fmt.Sprintf("%s %s/%s %d", op.Type, op.ProductID, op.ReservationID, op.Quantity)
		}
		ops = append(ops, s)
	}
	switch r.kind {
	case reqStock:
		return "stock " + r.productID
	case reqPrepare:
		return fmt.Sprintf("prepare tx %d (age %d) %s", r.tx, r.prio, strings.Join(ops, ", "))
	}
	return "write " + strings.Join(ops, ", ")
}

// recordString renders a journal record: "ADD p 5 v1", "RESERVE p/r1 1 v2",
// "PREPARE 1 [0 1] 2" (tx, shards, entries), "COMMIT 1".
func recordString(rec []byte) string {
	if isTxRecord(rec) {
		r, err := decodeTx(rec)
		switch {
		case err != nil:
			return fmt.Sprintf("bad tx record: %v", err)
		case r.kind == txPrepare:
			return fmt.Sprintf("%s %d %v %d", r.kind, r.tx, r.shards, r.n)
		}
		return fmt.Sprintf("%s %d", r.kind, r.tx)
	}
	var e Entry
	if err := newDecoder().decode(rec, &e, false); err != nil {
		return fmt.Sprintf("bad entry: %v", err)
	}
	if e.ReservationID != "" {
		return fmt.Sprintf("%s %s/%s %d v%d", e.Type, e.ProductID, e.ReservationID, e.Quantity, e.Version)
	}
	return fmt.Sprintf("%s %s %d v%d", e.Type, e.ProductID, e.Quantity, e.Version)
}

// answerString renders an answer: the error code, or "ok" and, for a
// write, each op's version or refusal, for a read the stock.
func answerString(r *request) string {
	if r.err != nil {
		return string(r.err.Code)
	}
	var b strings.Builder
	b.WriteString("ok")
	switch r.kind {
	case reqWrite, reqPrepare:
		for _, res := range r.results {
			switch {
			case res.err != nil:
				fmt.Fprintf(&b, " %s", res.err.Code)
			case res.replayOf != 0:
				fmt.Fprintf(&b, " replay v%d", res.replayOf)
			default:
				fmt.Fprintf(&b, " v%d", res.entries[0].Version)
			}
		}
	case reqStock:
		fmt.Fprintf(&b, " on_hand=%d reserved=%d v%d", r.stock.OnHand, r.stock.Reserved, r.stock.Version)
	}
	return b.String()
}
