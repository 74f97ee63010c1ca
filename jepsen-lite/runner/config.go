// Package runner runs one jepsen-lite test (start the cluster, drive a workload while the nemesis
// injects faults, heal, read everything back, check, report) and suites of them.
package runner

import (
	"fmt"
	"io"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/nemesis"
	"github.com/cairndb/cairn/jepsen-lite/workload"
)

// Config is one run. Zero fields take the defaults of Defaults.
type Config struct {
	// Scenario names the run (store/<scenario>/...).
	Scenario string `json:"scenario"`
	Seed     uint64 `json:"seed"`
	// Duration is the length of the faulty phase (traffic and faults); the final phase follows.
	Duration time.Duration `json:"duration"`
	// Driver is "local" or "compose".
	Driver string `json:"driver"`
	// Nodes is the cluster size (local driver).
	Nodes int `json:"nodes"`
	// Workload configures the traffic (Workload.Name picks streams, global or follower).
	Workload workload.Config `json:"workload"`
	// Faults are the nemesis' fault kinds (nemesis.Faults); empty means no faults.
	Faults []string `json:"faults"`
	// Quiet, FaultMin/Max and QuietMin/Max shape the fault cycles.
	Quiet    time.Duration `json:"quiet"`
	FaultMin time.Duration `json:"fault_min"`
	FaultMax time.Duration `json:"fault_max"`
	QuietMin time.Duration `json:"quiet_min"`
	QuietMax time.Duration `json:"quiet_max"`
	// Schedule, when set, is a nemesis.jsonl to replay instead of drawing faults.
	Schedule string `json:"schedule,omitempty"`
	// OpTimeout bounds one client request.
	OpTimeout time.Duration `json:"op_timeout"`

	// Binary is the cairnd executable (local driver); Bug is CAIRN_BUG (needs a jepsenbugs build).
	Binary string `json:"binary,omitempty"`
	Bug    string `json:"bug,omitempty"`
	// HeartbeatTimeout, ElectionTimeout, SnapshotThreshold and SnapshotInterval are passed to
	// every node (local driver).
	HeartbeatTimeout  time.Duration `json:"heartbeat_timeout"`
	ElectionTimeout   time.Duration `json:"election_timeout"`
	SnapshotThreshold uint64        `json:"snapshot_threshold"`
	SnapshotInterval  time.Duration `json:"snapshot_interval"`
	// ComposeFile and ComposeProject select the compose cluster (compose driver).
	ComposeFile    string `json:"compose_file,omitempty"`
	ComposeProject string `json:"compose_project,omitempty"`

	// Store is the directory runs are written to (Store/<scenario>/<timestamp>-<seed>).
	Store string `json:"store"`
	// LinearTimeout bounds the linearizability check of one stream.
	LinearTimeout time.Duration `json:"linear_timeout"`
	// LivenessWithin bounds the recovery after the final heal.
	LivenessWithin time.Duration `json:"liveness_within"`
	// KeepData keeps node data directories even when the run is valid.
	KeepData bool `json:"keep_data,omitempty"`
	// Log receives progress lines (nil: discarded).
	Log io.Writer `json:"-"`
}

// Defaults fills zero fields with defaults sized for 2 cores.
func (c Config) Defaults() Config {
	if c.Scenario == "" {
		c.Scenario = "adhoc"
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	dur := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	dur(&c.Duration, 60*time.Second)
	if c.Driver == "" {
		c.Driver = "local"
	}
	if c.Nodes <= 0 {
		c.Nodes = 3
	}
	if c.Workload.Name == "" {
		c.Workload.Name = "streams"
	}
	c.Workload.Seed = c.Seed
	c.Workload = c.Workload.Defaults()
	dur(&c.Quiet, 3*time.Second)
	dur(&c.FaultMin, 4*time.Second)
	dur(&c.FaultMax, 8*time.Second)
	dur(&c.QuietMin, 3*time.Second)
	dur(&c.QuietMax, 6*time.Second)
	dur(&c.OpTimeout, 2*time.Second)
	dur(&c.HeartbeatTimeout, 500*time.Millisecond)
	dur(&c.ElectionTimeout, 500*time.Millisecond)
	dur(&c.SnapshotInterval, time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 256
	}
	if c.Store == "" {
		c.Store = "jepsen-lite/runs"
	}
	dur(&c.LinearTimeout, 60*time.Second)
	dur(&c.LivenessWithin, 30*time.Second)
	if c.ComposeProject == "" {
		c.ComposeProject = "cairn-jepsen"
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	for _, f := range c.Faults {
		ok := false
		for _, k := range nemesis.Faults {
			ok = ok || k == f
		}
		if !ok {
			return fmt.Errorf("runner: unknown fault %q (known: %v)", f, nemesis.Faults)
		}
	}
	ok := false
	for _, w := range workload.Names {
		ok = ok || w == c.Workload.Name
	}
	if !ok {
		return fmt.Errorf("runner: unknown workload %q (known: %v)", c.Workload.Name, workload.Names)
	}
	if c.Driver != "local" && c.Driver != "compose" {
		return fmt.Errorf("runner: unknown driver %q (local or compose)", c.Driver)
	}
	if c.Driver == "local" && c.Binary == "" {
		return fmt.Errorf("runner: the local driver needs a cairnd binary")
	}
	return nil
}

// schedule builds the nemesis schedule from the configuration.
func (c Config) schedule(replay []nemesis.Record) nemesis.Schedule {
	return nemesis.Schedule{Faults: c.Faults, Quiet: c.Quiet, FaultMin: c.FaultMin, FaultMax: c.FaultMax,
		QuietMin: c.QuietMin, QuietMax: c.QuietMax, SnapshotEntries: c.SnapshotThreshold*5/2 + 64, Replay: replay}
}
