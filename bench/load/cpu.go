package load

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPU accounting: on a machine where the servers and the load tool share a few cores, throughput
// moves with whatever else runs, but the CPU time each process spends per event barely does. The
// tool reads utime+stime of the server processes (--server-pids) and of itself from
// /proc/<pid>/stat before and after each measured run. Linux only; elsewhere the fields stay 0.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux architecture Go
// supports (the kernel exports it fixed, whatever CONFIG_HZ is).
const clockTicks = 100

// errProcStat is returned when /proc/<pid>/stat cannot be read or parsed.
var errProcStat = errors.New("cannot read process CPU time")

// procCPUSeconds returns utime+stime of process pid (0: this process) in seconds.
func procCPUSeconds(pid int) (float64, error) {
	path := "/proc/self/stat"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errProcStat, err)
	}
	return parseProcStat(string(b))
}

// parseProcStat extracts utime+stime (fields 14 and 15) from a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may contain spaces, so fields are counted from the
// last ')'.
func parseProcStat(s string) (float64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: no ')' in %q", errProcStat, s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: %d fields after the command name", errProcStat, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: utime %q stime %q", errProcStat, f[11], f[12])
	}
	return float64(utime+stime) / clockTicks, nil
}

// cpuSnapshot is the CPU seconds of each server and of this process at one moment.
type cpuSnapshot struct {
	servers []float64
	self    float64
	ok      bool
}

func takeCPU(pids []int) cpuSnapshot {
	s := cpuSnapshot{servers: make([]float64, len(pids)), ok: true}
	var err error
	if s.self, err = procCPUSeconds(0); err != nil {
		s.ok = false
	}
	for i, p := range pids {
		if s.servers[i], err = procCPUSeconds(p); err != nil {
			s.ok = false
		}
	}
	return s
}

// CPUUse is the CPU time spent per event during a run, in microseconds.
type CPUUse struct {
	// Servers has one entry per --server-pids process, in the order given.
	Servers []float64 `json:"servers_us_per_event"`
	// ServersTotal is the sum of Servers.
	ServersTotal float64 `json:"servers_total_us_per_event"`
	// LoadTool is this process's CPU per event (client encoding, gRPC/NATS/etcd client, engine).
	LoadTool float64 `json:"load_tool_us_per_event"`
}

// cpuUse returns the CPU per event between two snapshots, or nil when either failed or no event
// was counted.
func cpuUse(before, after cpuSnapshot, events int64) *CPUUse {
	if !before.ok || !after.ok || events <= 0 {
		return nil
	}
	per := func(d float64) float64 { return d * 1e6 / float64(events) }
	u := &CPUUse{Servers: make([]float64, len(before.servers)), LoadTool: per(after.self - before.self)}
	for i := range before.servers {
		u.Servers[i] = per(after.servers[i] - before.servers[i])
		u.ServersTotal += u.Servers[i]
	}
	return u
}
