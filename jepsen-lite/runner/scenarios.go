package runner

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/workload"
)

// Scenario is a named, pre-sized run: a workload, the faults meant to stress it and, for a
// canary, the planted bug it must catch.
type Scenario struct {
	Name        string
	Description string
	// Config holds the scenario's settings; seed, store, binary and driver come from the caller.
	Config Config
	// Bug is the planted bug a canary scenario must catch ("" for ordinary scenarios).
	Bug string
	// Catches names the checkers expected to flag the bug.
	Catches []string
}

func wl(name string, rate float64, clients int) workload.Config {
	return workload.Config{Name: name, Rate: rate, Clients: clients}
}

// scenarios is the catalogue. Sizes target 2 cores: 3 nodes, 6-10 clients, 60-120 ops/s.
var scenarios = []Scenario{
	// Smoke: CI, on the real build. Every fault family once, short runs.
	{Name: "streams-partitions", Description: "hot streams with expected revisions and linearizable reads; leader isolated, random halves, one-way cut to the leader",
		Config: Config{Duration: 30 * time.Second, Workload: wl("streams", 80, 8), Faults: []string{"isolate-leader", "halves", "one-way-leader"}}},
	{Name: "streams-crashes", Description: "hot streams; kill -9 the leader or a node, SIGSTOP the leader",
		Config: Config{Duration: 30 * time.Second, Workload: wl("streams", 80, 8), Faults: []string{"kill-leader", "kill-one", "pause-leader"}}},
	{Name: "global-crashes", Description: "many streams, $all tailing, final drain; kill leader, kill majority, halves",
		Config: Config{Duration: 30 * time.Second, Workload: wl("global", 80, 6), Faults: []string{"kill-leader", "kill-majority", "halves"}}},
	{Name: "follower-slow", Description: "follower reads with min_log_index on every node; slow links, isolated node, paused node",
		Config: Config{Duration: 30 * time.Second, Workload: wl("follower", 80, 8), Faults: []string{"slow-links", "isolate-one", "pause-one"}}},

	// Nightly: longer, every fault, membership, snapshots, 5 nodes.
	{Name: "streams-all-faults", Description: "hot streams under every fault the driver supports, 5 minutes",
		Config: Config{Duration: 5 * time.Minute, Workload: wl("streams", 100, 10), Faults: []string{"isolate-leader", "halves", "one-way-leader",
			"kill-one", "kill-leader", "kill-majority", "kill-all", "pause-one", "pause-leader", "slow-links", "lossy-links", "lossy-leader"}}},
	{Name: "global-all-faults", Description: "many streams and $all tailing under every fault, 5 minutes",
		Config: Config{Duration: 5 * time.Minute, Workload: wl("global", 100, 8), Faults: []string{"isolate-leader", "halves", "one-way-leader",
			"kill-one", "kill-leader", "kill-majority", "kill-all", "pause-one", "pause-leader", "slow-links", "lossy-links", "lossy-leader"}}},
	{Name: "snapshot-pressure", Description: "a follower cut off until the leader compacts (snapshot threshold 64), then InstallSnapshot; kills",
		Config: Config{Duration: 2 * time.Minute, Workload: wl("global", 120, 8), Faults: []string{"snapshot-pressure", "kill-one"},
			SnapshotThreshold: 64, FaultMin: 6 * time.Second, FaultMax: 10 * time.Second}},
	{Name: "membership", Description: "a node joins while a follower is down; a follower is wiped and rejoins under a new id; partitions and kills meanwhile",
		Config: Config{Duration: 2 * time.Minute, Workload: wl("streams", 80, 8), Faults: []string{"member-add", "member-replace", "isolate-leader", "kill-leader"},
			FaultMin: 8 * time.Second, FaultMax: 12 * time.Second}},
	{Name: "five-nodes", Description: "5 nodes, follower reads, halves, kills of a majority, pauses",
		Config: Config{Duration: 3 * time.Minute, Nodes: 5, Workload: wl("follower", 100, 10), Faults: []string{"halves", "kill-majority", "pause-leader", "isolate-leader", "lossy-links"}}},

	// The compose driver: faults docker can inject (no per-link faults).
	{Name: "compose-mixed", Description: "hot streams on the docker-compose cluster: kill -9, pause and isolation (docker network disconnect) of the leader or a node",
		Config: Config{Driver: "compose", Duration: 60 * time.Second, Workload: wl("streams", 60, 8),
			Faults: []string{"kill-leader", "kill-one", "pause-leader", "isolate-leader", "isolate-one"}, FaultMin: 5 * time.Second, FaultMax: 10 * time.Second}},

	// Canaries: each must be caught on a jepsenbugs build, and pass on the real one.
	{Name: "canary-stale-leader-read", Bug: "stale-leader-read", Catches: []string{"linearizable", "version-order"},
		Description: "leader frozen (SIGSTOP) while the others elect and commit; reads queued at it are served on thaw",
		Config: Config{Duration: 40 * time.Second, Workload: workload.Config{Name: "streams", Rate: 100, Clients: 12, Affinity: true},
			Faults: []string{"pause-leader"}, OpTimeout: 4 * time.Second, FaultMin: 4 * time.Second, FaultMax: 6 * time.Second,
			QuietMin: 2 * time.Second, QuietMax: 4 * time.Second}},
	{Name: "canary-ack-before-commit", Bug: "ack-before-commit", Catches: []string{"version-order", "linearizable"},
		Description: "leader isolated or deaf: entries it cannot commit are acknowledged anyway, then lost",
		Config:      Config{Duration: 30 * time.Second, Workload: wl("streams", 80, 8), Faults: []string{"isolate-leader", "one-way-leader"}}},
	{Name: "canary-version-check-on-leader", Bug: "version-check-on-leader-before-propose", Catches: []string{"linearizable", "version-order"},
		Description: "appends with expected revisions contending on two hot streams while the leader's links are slow: two appends with the same expected revision both win",
		Config: Config{Duration: 20 * time.Second, Workload: workload.Config{Name: "streams", Rate: 120, Clients: 10, HotStreams: 2},
			Faults: []string{"slow-leader"}, Quiet: time.Second, FaultMin: 6 * time.Second, FaultMax: 8 * time.Second,
			QuietMin: time.Second, QuietMax: 2 * time.Second}},
	{Name: "canary-duplicate-on-retry", Bug: "duplicate-on-retry", Catches: []string{"version-order", "global"},
		Description: "appends of unknown outcome retried with the same ids while the leader is deaf or killed",
		Config:      Config{Duration: 30 * time.Second, Workload: wl("global", 100, 8), Faults: []string{"one-way-leader", "one-way-leader", "kill-leader"}}},
	{Name: "canary-leadership-lost-as-failure", Bug: "leadership-lost-reported-as-failure", Catches: []string{"version-order", "linearizable"},
		Description: "leader deaf (followers' answers stalled): it steps down with entries in flight, which the new leader commits",
		Config:      Config{Duration: 30 * time.Second, Workload: wl("global", 100, 8), Faults: []string{"one-way-leader"}}},
	{Name: "canary-follower-ignores-min-log-index", Bug: "follower-ignores-min-log-index", Catches: []string{"follower"},
		Description: "follower reads with the client's last log index while links are slow",
		Config:      Config{Duration: 20 * time.Second, Workload: wl("follower", 80, 8), Faults: []string{"slow-links"}}},
}

// Sets names groups of scenarios.
var Sets = map[string][]string{
	"smoke":   {"streams-partitions", "streams-crashes", "global-crashes", "follower-slow"},
	"nightly": {"streams-all-faults", "global-all-faults", "snapshot-pressure", "membership", "five-nodes"},
	"compose": {"compose-mixed"},
	"canary": {"canary-stale-leader-read", "canary-ack-before-commit", "canary-version-check-on-leader",
		"canary-duplicate-on-retry", "canary-leadership-lost-as-failure", "canary-follower-ignores-min-log-index"},
}

// Lookup returns the named scenario.
func Lookup(name string) (Scenario, error) {
	for _, s := range scenarios {
		if s.Name == name {
			s.Config.Scenario = s.Name
			s.Config.Bug = s.Bug
			return s, nil
		}
	}
	var names []string
	for _, s := range scenarios {
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("runner: unknown scenario %q (known: %s)", name, strings.Join(names, ", "))
}

// Set returns the scenarios of a comma-separated list of set names and scenario names.
func Set(list string) ([]Scenario, error) {
	var out []Scenario
	for _, tok := range strings.Split(list, ",") {
		tok = strings.TrimSpace(tok)
		names, ok := Sets[tok]
		if !ok {
			names = []string{tok}
		}
		for _, n := range names {
			s, err := Lookup(n)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Catalogue lists every scenario, by set.
func Catalogue() string {
	var b strings.Builder
	sets := make([]string, 0, len(Sets))
	for s := range Sets {
		sets = append(sets, s)
	}
	sort.Strings(sets)
	for _, set := range sets {
		fmt.Fprintf(&b, "%s:\n", set)
		for _, n := range Sets[set] {
			s, _ := Lookup(n)
			bug := ""
			if s.Bug != "" {
				bug = " [bug " + s.Bug + "]"
			}
			fmt.Fprintf(&b, "  %-38s %s%s\n", s.Name, s.Description, bug)
		}
	}
	return b.String()
}
