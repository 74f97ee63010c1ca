package segment

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// One writer appends (rolling often) while readers Read and Scan whatever is visible.
// Every record a reader sees must be complete and correct; run with -race.
func TestConcurrentReadersDuringAppend(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{MaxSegmentBytes: 4096})
	const batches = 400
	rec := func(pos uint64) Record { return genRecord(pos, pos/2) }

	done := make(chan struct{})
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	reader := func(seed uint64, work func(rng *rand.Rand) error) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, seed))
		for i := 0; i < 1_000_000; i++ { // bounded; normally ends when the writer is done
			select {
			case <-done:
				return
			default:
			}
			if err := work(rng); err != nil {
				errc <- err
				return
			}
		}
	}
	readOne := func(rng *rand.Rand) error {
		last := l.LastPosition()
		if last == 0 {
			return nil
		}
		if l.LastIndex() < last/2 {
			return fmt.Errorf("LastIndex %d behind LastPosition %d", l.LastIndex(), last)
		}
		p := 1 + rng.Uint64N(last)
		got, err := l.Read(p)
		if err != nil {
			return fmt.Errorf("Read(%d) with last=%d: %w", p, last, err)
		}
		if !sameRecord(got, rec(p)) {
			return fmt.Errorf("Read(%d): wrong record %+v", p, got)
		}
		return nil
	}
	scanSome := func(rng *rand.Rand) error {
		last := l.LastPosition()
		if last == 0 {
			return nil
		}
		dir := Direction(rng.IntN(2))
		from := 1 + rng.Uint64N(last)
		it := l.Scan(from, dir)
		defer it.Close()
		want := from
		for n := 0; n < 64 && it.Next(); n++ {
			r := it.Record()
			if r.Position != want || !sameRecord(*r, rec(want)) {
				return fmt.Errorf("Scan(%d,%v): got position %d, want %d (%+v)", from, dir, r.Position, want, *r)
			}
			if dir == Forward {
				want++
			} else {
				want--
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("Scan(%d,%v): %w", from, dir, err)
		}
		return nil
	}
	wg.Add(4)
	go reader(1, readOne)
	go reader(2, readOne)
	go reader(3, scanSome)
	go reader(4, scanSome)

	pos := uint64(1)
	var writeErr error
	for b := 0; b < batches && writeErr == nil; b++ {
		n := 1 + b%5
		batch := make([]Record, n)
		for i := range batch {
			batch[i] = rec(pos)
			pos++
		}
		writeErr = l.Append(batch)
		if b%50 == 0 && writeErr == nil {
			writeErr = l.Sync()
		}
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	if len(l.segs) < 10 {
		t.Fatalf("only %d segments: rolls not exercised", len(l.segs))
	}
	var want []Record
	for p := uint64(1); p < pos; p++ {
		want = append(want, rec(p))
	}
	checkLog(t, l, want)
}

// Closing the log while readers run makes them fail with ErrClosed, never crash.
func TestCloseWhileReading(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{MaxSegmentBytes: 2048})
	appendAll(t, l, makeBatches(1, 1, 5, 5, 5, 5, 5, 5, 5, 5))
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	start := make(chan struct{})
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < 100_000; i++ {
				if g == 0 {
					if _, err := l.Read(uint64(1 + i%40)); err != nil {
						if !errors.Is(err, ErrClosed) {
							errc <- err
						}
						return
					}
					continue
				}
				it := l.Scan(0, Forward)
				for it.Next() {
				}
				if err := it.Err(); err != nil {
					if !errors.Is(err, ErrClosed) {
						errc <- err
					}
					return
				}
			}
		}()
	}
	close(start)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// Sync may run on another goroutine while the writer appends and rolls (fsm calls it from
// a raft snapshot's Persist). Run with -race.
func TestSyncConcurrentWithAppend(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{MaxSegmentBytes: 2048})
	done := make(chan struct{})
	errc := make(chan error, 1)
	syncs := 0
	go func() {
		defer close(errc)
		for i := 0; i < 100_000; i++ { // bounded; normally ends when the writer is done
			select {
			case <-done:
				return
			default:
			}
			if err := l.Sync(); err != nil {
				errc <- err
				return
			}
			syncs++
		}
	}()
	batches := makeBatches(1, 1, slices.Repeat([]int{3}, 200)...)
	for _, b := range batches {
		if err := l.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if l.syncedSeq != l.appendSeq {
		t.Fatalf("after Sync: synced %d of %d appends", l.syncedSeq, l.appendSeq)
	}
	checkLog(t, l, flatten(batches))
	t.Logf("%d concurrent Syncs", syncs)
}
