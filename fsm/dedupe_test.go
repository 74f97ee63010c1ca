package fsm

import (
	"encoding/binary"
	"testing"
	"time"
)

func dedupeID(n uint64) [16]byte {
	var id [16]byte
	binary.BigEndian.PutUint64(id[8:], n)
	id[0] = 1
	return id
}

// The window is exactly the last MaxEvents events within MaxAge, through ring growth and
// wrap-around, and its memory stays bounded under churn.
func TestDedupeWindow(t *testing.T) {
	d := newDedupeIndex(DedupeHorizon{MaxEvents: 3000, MaxAge: time.Hour})
	for i := uint64(1); i <= 20000; i++ {
		d.add(dedupeID(i), i, int64(i))
		d.evict(int64(i))
	}
	if d.len() != 3000 || d.n != 3000 || len(d.ring) > 3001 {
		t.Fatalf("window %d ids, ring %d/%d", d.len(), d.n, len(d.ring))
	}
	for _, i := range []uint64{17000, 16999, 20000, 1} {
		_, ok := d.get(dedupeID(i))
		if want := i > 17000; ok != want {
			t.Fatalf("id %d remembered=%v, want %v", i, ok, want)
		}
	}
	// One event an hour and a bit later pushes everything else out by age.
	d.add(dedupeID(30000), 30000, int64(20000+time.Hour+1))
	d.evict(int64(20000 + time.Hour + 1))
	if d.len() != 1 {
		t.Fatalf("after the age cut: %d ids", d.len())
	}
	if pos, ok := d.get(dedupeID(30000)); !ok || pos != 30000 {
		t.Fatalf("newest id: %d %v", pos, ok)
	}
}

// One command with far more events than the window holds: the ring grows geometrically (not one
// slot per event) and eviction afterwards leaves exactly the last MaxEvents ids.
func TestDedupeCommandLargerThanWindow(t *testing.T) {
	d := newDedupeIndex(DedupeHorizon{MaxEvents: 100, MaxAge: -1})
	for i := uint64(1); i <= 50_000; i++ {
		d.add(dedupeID(i), i, 1)
	}
	if len(d.ring) > 2*50_000 || d.resizes > 20 {
		t.Fatalf("ring grew to %d slots in %d reallocations for 50 000 events", len(d.ring), d.resizes)
	}
	d.evict(1)
	if d.len() != 100 {
		t.Fatalf("window holds %d ids, want 100", d.len())
	}
	if _, ok := d.get(dedupeID(49_901)); !ok {
		t.Fatal("the oldest id inside the window is gone")
	}
	if _, ok := d.get(dedupeID(49_900)); ok {
		t.Fatal("an id outside the window is still remembered")
	}
}
