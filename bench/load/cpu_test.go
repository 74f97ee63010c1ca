package load

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	line := "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 123 456 789"
	got, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3.25 { // (250 + 75) ticks of 1/100 s
		t.Fatalf("cpu seconds %v, want 3.25", got)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 5 6"} {
		if _, err := parseProcStat(bad); !errors.Is(err, errProcStat) {
			t.Errorf("%q: err %v, want errProcStat", bad, err)
		}
	}
}

func TestCPUUse(t *testing.T) {
	before := cpuSnapshot{servers: []float64{1, 2}, self: 0.5, ok: true}
	after := cpuSnapshot{servers: []float64{1.5, 2.25}, self: 0.6, ok: true}
	u := cpuUse(before, after, 1000)
	if u == nil || u.Servers[0] != 500 || u.Servers[1] != 250 || u.ServersTotal != 750 || u.LoadTool < 99.9 || u.LoadTool > 100.1 {
		t.Fatalf("cpu use %+v, want 500 + 250 = 750 µs and 100 µs per event", u)
	}
	if cpuUse(before, cpuSnapshot{}, 1000) != nil || cpuUse(before, after, 0) != nil {
		t.Fatal("cpu use reported from a failed snapshot or without events")
	}
}

// A run with --server-pids reports CPU per event; here the "server" is this process, which
// burns CPU in the fake's appends.
func TestRunReportsCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("CPU accounting reads /proc")
	}
	f := newFake()
	res, err := Run(context.Background(), f, Config{Mode: Closed, Clients: 2, Duration: 100 * time.Millisecond,
		ServerPIDs: []int{os.Getpid()}, Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Median.CPU
	if c == nil || len(c.Servers) != 1 || c.ServersTotal != c.Servers[0] || c.LoadTool <= 0 {
		t.Fatalf("median CPU %+v, want one server (this process) and the load tool's own", c)
	}
	if _, err := Run(context.Background(), f, Config{Mode: Closed, Duration: 20 * time.Millisecond, ServerPIDs: []int{1 << 30}}); err != nil {
		t.Fatalf("a pid that cannot be read must not fail the run: %v", err)
	}
}
