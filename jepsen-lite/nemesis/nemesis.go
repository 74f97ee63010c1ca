// Package nemesis injects jepsen-lite's faults on a schedule and records each one in the history
// (a start and a stop record, process -1) and in the realised schedule (nemesis.jsonl), which
// `--schedule` replays.
//
// Faults (targets chosen when the fault starts, from the seed; "leader" is asked from the
// cluster):
//
//	isolate-leader, isolate-one   all links of one node cut, both directions
//	halves                        a random minority cut from the majority
//	one-way-leader                followers' bytes to the leader stalled: the leader's
//	                              AppendEntries arrive, their answers do not
//	kill-one, kill-leader,        SIGKILL, restarted when the fault stops
//	kill-majority, kill-all
//	pause-one, pause-leader       SIGSTOP, SIGCONT when the fault stops
//	slow-links, slow-leader       one node's (the leader's) links delayed 50-250 ms (± half)
//	lossy-links, lossy-leader     one node's (the leader's) links lossy (retransmission
//	                              delays, resets; forwarding to it included)
//	snapshot-pressure             a follower cut off until the leader has compacted its log
//	                              past the follower's position (needs a small
//	                              --snapshot-threshold), so it must install a snapshot
//	member-add                    a new node joins during a kill of a follower
//	member-replace                a follower is wiped and rejoins under a new id
package nemesis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairndb/cairn/jepsen-lite/driver"
	"github.com/cairndb/cairn/jepsen-lite/history"
	"github.com/cairndb/cairn/jepsen-lite/proxy"
)

// Faults lists every fault name.
var Faults = []string{"isolate-leader", "isolate-one", "halves", "one-way-leader", "kill-one", "kill-leader",
	"kill-majority", "kill-all", "pause-one", "pause-leader", "slow-links", "slow-leader", "lossy-links", "lossy-leader", "snapshot-pressure",
	"member-add", "member-replace"}

// needsLinks are the faults that need per-link control (Caps.Links).
var needsLinks = map[string]bool{"halves": true, "one-way-leader": true, "slow-links": true, "slow-leader": true, "lossy-links": true, "lossy-leader": true}

// Supported reports whether d can inject fault.
func Supported(d driver.Driver, fault string) bool {
	c := d.Caps()
	switch {
	case needsLinks[fault]:
		return c.Links
	case fault == "member-add":
		return c.AddNode
	case fault == "member-replace":
		return c.Replace
	}
	return true
}

// Schedule shapes the fault cycles.
type Schedule struct {
	// Faults to draw from (each cycle draws one at random).
	Faults []string
	// Quiet is the fault-free start; then cycles of a fault lasting FaultMin..FaultMax and a
	// quiet period QuietMin..QuietMax.
	Quiet, FaultMin, FaultMax, QuietMin, QuietMax time.Duration
	// SnapshotEntries is how far the leader's commit index must advance while a follower is cut
	// off in snapshot-pressure (about 2.5 × --snapshot-threshold).
	SnapshotEntries uint64
	// Replay, when non-empty, is a realised schedule to repeat instead of drawing.
	Replay []Record
}

// Record is one realised fault, a line of nemesis.jsonl.
type Record struct {
	ID      int      `json:"id"`
	Fault   string   `json:"fault"`
	Targets []string `json:"targets,omitempty"`
	// StartS and StopS are seconds since the start of the run.
	StartS float64 `json:"start_s"`
	StopS  float64 `json:"stop_s"`
	Value  string  `json:"value,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// ReadSchedule reads a nemesis.jsonl file.
func ReadSchedule(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("nemesis: %w", err)
	}
	defer f.Close()
	var out []Record
	dec := json.NewDecoder(f)
	for {
		var r Record
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("nemesis: %s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Nemesis runs faults against a driver.
type Nemesis struct {
	d     driver.Driver
	rec   *history.Recorder
	rng   *rand.Rand
	sched Schedule
	out   io.Writer
	log   func(format string, args ...any)

	mu      sync.Mutex
	nextID  int
	killed  map[string]bool
	paused  map[string]bool
	counts  map[string]int
	records []Record
}

// New returns a nemesis; out receives the realised schedule (may be nil), logf progress lines.
func New(d driver.Driver, rec *history.Recorder, seed uint64, sched Schedule, out io.Writer, logf func(string, ...any)) *Nemesis {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Nemesis{d: d, rec: rec, rng: rand.New(rand.NewPCG(seed, 0x6e656d)), sched: sched, out: out, log: logf,
		killed: map[string]bool{}, paused: map[string]bool{}, counts: map[string]int{}}
}

// Counts returns how often each fault ran.
func (n *Nemesis) Counts() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]int{}
	for k, v := range n.counts {
		out[k] = v
	}
	return out
}

// Records returns the realised schedule so far.
func (n *Nemesis) Records() []Record {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Record(nil), n.records...)
}

func (n *Nemesis) secs(t int64) float64 { return float64(t) / 1e9 }

// wait sleeps d or until ctx ends; false if ctx ended.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (n *Nemesis) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(n.rng.Int64N(int64(hi-lo)))
}

// Run injects faults until ctx ends, then stops the active one (the caller heals the rest with
// HealAll). Faults that fail to start are recorded with their error and skipped.
func (n *Nemesis) Run(ctx context.Context) {
	if len(n.sched.Replay) > 0 {
		n.replay(ctx)
		return
	}
	var faults []string
	for _, f := range n.sched.Faults {
		if Supported(n.d, f) {
			faults = append(faults, f)
		} else {
			n.log("nemesis: %s not supported by the %s driver; skipped", f, n.d.Name())
		}
	}
	if len(faults) == 0 || !wait(ctx, n.sched.Quiet) {
		return
	}
	for ctx.Err() == nil {
		fault := faults[n.rng.IntN(len(faults))]
		n.cycle(ctx, fault, nil, n.between(n.sched.FaultMin, n.sched.FaultMax))
		if !wait(ctx, n.between(n.sched.QuietMin, n.sched.QuietMax)) {
			return
		}
	}
}

func (n *Nemesis) replay(ctx context.Context) {
	start := time.Now().Add(-time.Duration(n.rec.Now()))
	for _, r := range n.sched.Replay {
		if !wait(ctx, time.Until(start.Add(time.Duration(r.StartS*1e9)))) {
			return
		}
		n.cycle(ctx, r.Fault, r.Targets, time.Duration((r.StopS-r.StartS)*1e9))
	}
}

// cycle runs one fault for about d (stopping early if ctx ends).
func (n *Nemesis) cycle(ctx context.Context, fault string, targets []string, d time.Duration) {
	n.mu.Lock()
	n.nextID++
	id := n.nextID
	n.counts[fault]++
	n.mu.Unlock()
	startOp := n.rec.Add(history.Op{Process: history.NemesisProcess, Type: history.Info, F: history.Nemesis, Fault: fault,
		Action: "start", FaultID: id})
	stop, targets, value, err := n.start(ctx, fault, targets, d)
	rec := Record{ID: id, Fault: fault, Targets: targets, StartS: n.secs(startOp.Time), Value: value}
	if err != nil {
		rec.Error = err.Error()
		n.log("nemesis: %s %v failed: %v", fault, targets, err)
	} else {
		n.log("nemesis: %s %v %s", fault, targets, value)
	}
	// A second start record carries the targets, known only once the fault is in place.
	n.rec.Add(history.Op{Process: history.NemesisProcess, Type: history.Info, F: history.Nemesis, Fault: fault,
		Action: "start", FaultID: id, Targets: targets, Value: value + errText(err)})
	if err == nil && stop != nil {
		if extra, werr := stop.wait(ctx, d); werr != nil {
			rec.Value += " " + werr.Error()
		} else if extra != "" {
			rec.Value += " " + extra
		}
		if serr := stop.stop(); serr != nil {
			rec.Error = serr.Error()
			n.log("nemesis: stopping %s: %v", fault, serr)
		}
	}
	stopOp := n.rec.Add(history.Op{Process: history.NemesisProcess, Type: history.Info, F: history.Nemesis, Fault: fault,
		Action: "stop", FaultID: id, Targets: targets})
	rec.StopS = n.secs(stopOp.Time)
	n.mu.Lock()
	n.records = append(n.records, rec)
	n.mu.Unlock()
	if n.out != nil {
		b, _ := json.Marshal(rec)
		_, _ = n.out.Write(append(b, '\n'))
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return " error: " + err.Error()
}

// active is a started fault: wait lasts its duration (or its own condition), stop undoes it.
type active struct {
	wait func(ctx context.Context, d time.Duration) (string, error)
	stop func() error
}

func timed(stop func() error) *active {
	return &active{wait: func(ctx context.Context, d time.Duration) (string, error) { wait(ctx, d); return "", nil }, stop: stop}
}

func (n *Nemesis) leader(ctx context.Context) (string, error) {
	l, _ := driver.Leader(ctx, n.d, time.Second)
	if l == "" {
		return "", errors.New("no leader known")
	}
	for _, x := range n.d.Nodes() {
		if x == l {
			return l, nil
		}
	}
	return "", fmt.Errorf("leader %q is not a current node", l)
}

func (n *Nemesis) others(node string) []string {
	var out []string
	for _, x := range n.d.Nodes() {
		if x != node {
			out = append(out, x)
		}
	}
	return out
}

func (n *Nemesis) shuffled() []string {
	nodes := n.d.Nodes()
	n.rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	return nodes
}

// one picks targets[0] if given, else the leader (leader=true) or a random node.
func (n *Nemesis) one(ctx context.Context, targets []string, leader bool) (string, error) {
	if len(targets) > 0 {
		return targets[0], nil
	}
	if leader {
		return n.leader(ctx)
	}
	return n.shuffled()[0], nil
}

// follower picks a random node that is not the leader.
func (n *Nemesis) follower(ctx context.Context, targets []string) (string, error) {
	if len(targets) > 0 {
		return targets[0], nil
	}
	l, _ := n.leader(ctx)
	for _, x := range n.shuffled() {
		if x != l {
			return x, nil
		}
	}
	return "", errors.New("no follower")
}

func (n *Nemesis) start(ctx context.Context, fault string, targets []string, d time.Duration) (*active, []string, string, error) {
	switch fault {
	case "isolate-leader", "isolate-one":
		node, err := n.one(ctx, targets, fault == "isolate-leader")
		if err != nil {
			return nil, nil, "", err
		}
		if err := n.d.Isolate(node); err != nil {
			return nil, []string{node}, "", err
		}
		return timed(func() error { return n.d.Rejoin(node) }), []string{node}, "", nil

	case "halves":
		nodes := targets
		if len(nodes) == 0 {
			nodes = n.shuffled()
		}
		minority := nodes[:len(n.d.Nodes())/2]
		inMin := map[string]bool{}
		for _, x := range minority {
			inMin[x] = true
		}
		var pairs [][2]string
		for _, a := range n.d.Nodes() {
			for _, b := range n.d.Nodes() {
				if a != b && inMin[a] != inMin[b] {
					pairs = append(pairs, [2]string{a, b})
				}
			}
		}
		for _, p := range pairs {
			if err := n.d.SetLink(p[0], p[1], proxy.Fault{Blackhole: true}); err != nil {
				return nil, nodes, "", err
			}
		}
		value := fmt.Sprintf("minority %v", minority)
		return timed(func() error { return setAll(n.d, pairs, proxy.Fault{}) }), nodes, value, nil

	case "one-way-leader":
		l, err := n.one(ctx, targets, true)
		if err != nil {
			return nil, nil, "", err
		}
		var pairs [][2]string
		for _, f := range n.others(l) {
			pairs = append(pairs, [2]string{f, l})
		}
		if err := setAll(n.d, pairs, proxy.Fault{Blackhole: true}); err != nil {
			return nil, []string{l}, "", err
		}
		return timed(func() error { return setAll(n.d, pairs, proxy.Fault{}) }), []string{l}, "followers->leader stalled", nil

	case "slow-links", "slow-leader", "lossy-links", "lossy-leader":
		node, err := n.one(ctx, targets, fault == "slow-leader" || fault == "lossy-leader")
		if err != nil {
			return nil, nil, "", err
		}
		f := proxy.Fault{Delay: time.Duration(50+n.rng.IntN(200)) * time.Millisecond}
		f.Jitter = f.Delay / 2
		if fault == "lossy-links" || fault == "lossy-leader" {
			f = proxy.Fault{Delay: 10 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 0.1 + 0.2*n.rng.Float64()}
		}
		var pairs [][2]string
		for _, o := range n.others(node) {
			pairs = append(pairs, [2]string{node, o}, [2]string{o, node})
		}
		if err := setAll(n.d, pairs, f); err != nil {
			return nil, []string{node}, "", err
		}
		value := fmt.Sprintf("delay %v ± %v loss %.2f", f.Delay, f.Jitter, f.Loss)
		return timed(func() error { return setAll(n.d, pairs, proxy.Fault{}) }), []string{node}, value, nil

	case "kill-one", "kill-leader", "kill-majority", "kill-all":
		var nodes []string
		switch {
		case len(targets) > 0:
			nodes = targets
		case fault == "kill-all":
			nodes = n.d.Nodes()
		case fault == "kill-majority":
			all := n.shuffled()
			nodes = all[:len(all)/2+1]
		default:
			node, err := n.one(ctx, nil, fault == "kill-leader")
			if err != nil {
				return nil, nil, "", err
			}
			nodes = []string{node}
		}
		for _, x := range nodes {
			if err := n.kill(x); err != nil {
				return nil, nodes, "", err
			}
		}
		return timed(func() error { return n.restart(nodes) }), nodes, "", nil

	case "pause-one", "pause-leader":
		node, err := n.one(ctx, targets, fault == "pause-leader")
		if err != nil {
			return nil, nil, "", err
		}
		if err := n.pause(node); err != nil {
			return nil, []string{node}, "", err
		}
		return timed(func() error { return n.resume(node) }), []string{node}, "", nil

	case "snapshot-pressure":
		node, err := n.follower(ctx, targets)
		if err != nil {
			return nil, nil, "", err
		}
		if err := n.d.Isolate(node); err != nil {
			return nil, []string{node}, "", err
		}
		return &active{wait: func(ctx context.Context, d time.Duration) (string, error) {
			return n.awaitCompaction(ctx, node, d)
		}, stop: func() error { return n.d.Rejoin(node) }}, []string{node}, "", nil

	case "member-add":
		victim, err := n.follower(ctx, targets)
		if err != nil {
			return nil, nil, "", err
		}
		if err := n.kill(victim); err != nil {
			return nil, []string{victim}, "", err
		}
		added, err := n.d.AddNode(ctx)
		if err != nil {
			return nil, []string{victim}, "", errors.Join(err, n.restart([]string{victim}))
		}
		return timed(func() error { return n.restart([]string{victim}) }), []string{victim, added},
			fmt.Sprintf("killed %s, added %s", victim, added), nil

	case "member-replace":
		victim, err := n.follower(ctx, targets)
		if err != nil {
			return nil, nil, "", err
		}
		n.mu.Lock()
		delete(n.paused, victim)
		delete(n.killed, victim)
		n.mu.Unlock()
		newID, err := n.d.Replace(ctx, victim)
		if err != nil {
			return nil, []string{victim}, "", err
		}
		return timed(func() error { return nil }), []string{victim, newID}, fmt.Sprintf("%s wiped, rejoined as %s", victim, newID), nil
	}
	return nil, nil, "", fmt.Errorf("nemesis: unknown fault %q (want one of %s)", fault, strings.Join(Faults, ", "))
}

func setAll(d driver.Driver, pairs [][2]string, f proxy.Fault) error {
	var errs []error
	for _, p := range pairs {
		errs = append(errs, d.SetLink(p[0], p[1], f))
	}
	return errors.Join(errs...)
}

// awaitCompaction waits until the leader's commit index has advanced SnapshotEntries past where
// it was when node was cut off, plus two snapshot intervals' worth of time (at least d, at most
// 4 d): by then the leader has snapshotted and truncated the entries node still needs.
func (n *Nemesis) awaitCompaction(ctx context.Context, node string, d time.Duration) (string, error) {
	startIdx := n.commitIndex(ctx)
	deadline := time.Now().Add(4 * d)
	minEnd := time.Now().Add(d)
	need := n.sched.SnapshotEntries
	if need == 0 {
		need = 200
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		idx := n.commitIndex(ctx)
		if idx >= startIdx+need && time.Now().After(minEnd) {
			return fmt.Sprintf("leader commit index %d -> %d", startIdx, idx), nil
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("leader commit index %d -> %d (wanted +%d; gave up)", startIdx, idx, need), nil
		}
		select {
		case <-ctx.Done():
			return fmt.Sprintf("leader commit index %d -> %d (run ended)", startIdx, idx), nil
		case <-tick.C:
		}
	}
}

func (n *Nemesis) commitIndex(ctx context.Context) uint64 {
	l, _ := driver.Leader(ctx, n.d, time.Second)
	if l == "" {
		return 0
	}
	st, err := driver.Status(ctx, n.d, l, time.Second)
	if err != nil {
		return 0
	}
	return st.GetCommitIndex()
}

func (n *Nemesis) kill(node string) error {
	if err := n.d.Kill(node); err != nil {
		return err
	}
	n.mu.Lock()
	n.killed[node] = true
	delete(n.paused, node)
	n.mu.Unlock()
	return nil
}

func (n *Nemesis) restart(nodes []string) error {
	var errs []error
	for _, x := range nodes {
		if n.d.Running(x) {
			continue
		}
		if err := n.d.StartNode(x); err != nil {
			errs = append(errs, err)
			continue
		}
		n.mu.Lock()
		delete(n.killed, x)
		n.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (n *Nemesis) pause(node string) error {
	if err := n.d.Pause(node); err != nil {
		return err
	}
	n.mu.Lock()
	n.paused[node] = true
	n.mu.Unlock()
	return nil
}

func (n *Nemesis) resume(node string) error {
	n.mu.Lock()
	delete(n.paused, node)
	n.mu.Unlock()
	if !n.d.Running(node) {
		return nil
	}
	return n.d.Resume(node)
}

// HealAll ends every fault: the network healed, paused nodes resumed, killed nodes restarted.
// It is recorded as a "heal" fault window.
func (n *Nemesis) HealAll(ctx context.Context) error {
	n.mu.Lock()
	n.nextID++
	id := n.nextID
	n.mu.Unlock()
	n.rec.Add(history.Op{Process: history.NemesisProcess, Type: history.Info, F: history.Nemesis, Fault: "heal", Action: "start", FaultID: id})
	errs := []error{n.d.HealNetwork()}
	nodes := n.d.Nodes()
	sort.Strings(nodes)
	for _, x := range nodes {
		if n.d.Running(x) {
			errs = append(errs, n.resume(x)) // SIGCONT is harmless on a running process
			continue
		}
		errs = append(errs, n.d.StartNode(x))
		n.mu.Lock()
		delete(n.killed, x)
		n.mu.Unlock()
	}
	n.rec.Add(history.Op{Process: history.NemesisProcess, Type: history.Info, F: history.Nemesis, Fault: "heal", Action: "stop", FaultID: id})
	return errors.Join(errs...)
}
