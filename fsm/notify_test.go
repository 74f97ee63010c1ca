package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestWatch(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	w0, err := f.Watch()
	if err != nil || w0.AppliedIndex != 0 || w0.LastPosition != 0 || isClosed(w0.Changed) {
		t.Fatalf("empty fsm: %+v %v", w0, err)
	}
	mustOK(t, apply1(t, f, 1, 1, appendReq(part("s", any_(), ev(1), ev(2)))))
	if !isClosed(w0.Changed) {
		t.Fatal("Changed not closed after an applied batch")
	}
	w1, err := f.Watch()
	if err != nil || w1.AppliedIndex != 1 || w1.LastPosition != 2 || isClosed(w1.Changed) {
		t.Fatalf("after one batch: %+v %v", w1, err)
	}
	// Everything up to LastPosition is readable when the channel closes.
	if recs, err := f.ReadAll(Start, Forward, 10); err != nil || len(recs) != 2 {
		t.Fatalf("read: %d records, %v", len(recs), err)
	}
	// Restoring a snapshot moves the watermark too.
	data := mustSnapshot(t, f)
	mustOK(t, apply1(t, f, 2, 1, appendReq(part("s", any_(), ev(3)))))
	w2, _ := f.Watch()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if !isClosed(w2.Changed) {
		t.Fatal("Changed not closed by Restore")
	}
	w3, _ := f.Watch()
	if isClosed(w3.Changed) {
		t.Fatal("fresh Changed already closed")
	}
	f.Close()
	if !isClosed(w3.Changed) {
		t.Fatal("Changed not closed by Close")
	}
	if _, err := f.Watch(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close: %v", err)
	}
}

// TestWatchFollowerMissesNothing follows the log with Watch and ReadAll while another goroutine
// applies batches: the follower must see every position exactly once, in order, whatever the
// interleaving of its check ("nothing new") and its wait. A lost wake-up would hang it (the test
// deadline catches that), a torn watermark would make it skip or repeat a position.
func TestWatchFollowerMissesNothing(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	const batches, perBatch = 200, 3
	total := uint64(batches * perBatch)
	got := make(chan []uint64, 1)
	errc := make(chan error, 1)
	go func() {
		var seen []uint64
		next := uint64(1)
		for next <= total {
			w, err := f.Watch()
			if err != nil {
				errc <- err
				return
			}
			if next > w.LastPosition {
				select {
				case <-w.Changed:
				case <-time.After(20 * time.Second):
					errc <- fmt.Errorf("no wake-up at position %d (watermark %d)", next, w.LastPosition)
					return
				}
				continue
			}
			recs, err := f.ReadAll(next, Forward, int(min(w.LastPosition-next+1, 7)))
			if err != nil {
				errc <- err
				return
			}
			for _, r := range recs {
				seen = append(seen, r.Position)
				next = r.Position + 1
			}
		}
		got <- seen
	}()
	index := uint64(1)
	for b := range batches {
		p := part(fmt.Sprintf("s-%d", b%5), any_())
		for i := range perBatch {
			p.Events = append(p.Events, ev(uint64(b*perBatch+i+1)))
		}
		mustOK(t, apply1(t, f, index, 1, appendReq(p)))
		index++
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	case seen := <-got:
		if uint64(len(seen)) != total {
			t.Fatalf("follower saw %d records, want %d", len(seen), total)
		}
		for i, p := range seen {
			if p != uint64(i+1) {
				t.Fatalf("record %d has position %d", i, p)
			}
		}
	}
}
