package fsm

import "testing"

func TestPositionAtTime(t *testing.T) {
	f := mustOpen(t, t.TempDir())
	if got := f.PositionAtTime(5); got != 1 {
		t.Fatalf("empty log: %d, want 1", got)
	}
	// Positions 1..6 at times 10,10,20,30,30,40 (the clamp keeps them non-decreasing).
	for i, ts := range []int64{10, 10, 20, 30, 25, 40} {
		mustOK(t, apply1(t, f, uint64(i+1), ts, appendReq(part("s", any_(), ev(uint64(i+1))))))
	}
	for _, tt := range []struct {
		ts   int64
		want uint64
	}{{1, 1}, {10, 1}, {11, 3}, {20, 3}, {30, 4}, {31, 6}, {40, 6}, {41, 7}} {
		if got := f.PositionAtTime(tt.ts); got != tt.want {
			t.Errorf("PositionAtTime(%d) = %d, want %d", tt.ts, got, tt.want)
		}
	}
}
