package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/internal/bugs"
)

// ReadFence returns once this node's local state may serve a read with the given options
// (DESIGN §3):
//
//   - Linearizable (read-index, Raft thesis §6.4, as hashicorp/raft#603 recommends): on the leader,
//     make sure an entry of the current term is committed and applied (barrier), capture the
//     commit index after the request arrived, confirm leadership with a quorum round that started
//     after that (an empty command committed in this term; concurrent reads share a round; see
//     leaderVerifier for why not VerifyLeader), check the term did not change,
//     then wait until the state machine applied the captured index. No lease shortcut.
//   - Leader: on the leader, local state after its term's barrier; no quorum round.
//   - Stale: any node; refuse with ErrTooStale if no leader contact within MaxStaleness, wait up
//     to the context deadline for MinLogIndex (ErrNotCaughtUp).
//
// Linearizable and Leader reads on a follower return *NotLeaderError, for the api to forward.
func (n *Node) ReadFence(ctx context.Context, opts ReadOptions) (ReadInfo, error) {
	switch opts.Consistency {
	case Linearizable, Leader:
		if n.raft.State() != raft.Leader {
			return ReadInfo{}, n.notLeader()
		}
		if opts.Consistency == Linearizable && bugs.Enabled(bugs.StaleLeaderRead) {
			return n.readInfo(), nil // planted bug: no barrier, no quorum round
		}
		term := n.raft.CurrentTerm()
		if err := n.ensureBarrier(timeoutFrom(ctx, n.cfg.ApplyTimeout)); err != nil {
			return ReadInfo{}, n.leadershipError(err)
		}
		if opts.Consistency == Linearizable {
			readIdx := n.raft.CommitIndex()
			if err := n.verifier.verify(ctx); err != nil {
				return ReadInfo{}, n.leadershipError(err)
			}
			if n.raft.CurrentTerm() != term {
				return ReadInfo{}, n.notLeader()
			}
			if err := n.fsm.WaitApplied(ctx, readIdx); err != nil {
				return ReadInfo{}, err
			}
		}
		return n.readInfo(), nil
	case Stale:
		info := n.readInfo()
		if opts.MaxStaleness > 0 && !info.Leader && info.LastContact > opts.MaxStaleness {
			return info, &StalenessError{Err: ErrTooStale, NodeID: n.cfg.NodeID, AppliedIndex: info.AppliedIndex,
				RequiredIndex: opts.MinLogIndex, LastContact: info.LastContact, MaxStaleness: opts.MaxStaleness}
		}
		if opts.MinLogIndex > 0 && !bugs.Enabled(bugs.FollowerIgnoresMinIndex) {
			wctx, cancel := catchUpContext(ctx, n.cfg.MaxCatchUpWait)
			err := n.fsm.WaitApplied(wctx, opts.MinLogIndex)
			cancel()
			if err != nil {
				info = n.readInfo()
				return info, &StalenessError{Err: ErrNotCaughtUp, NodeID: n.cfg.NodeID, AppliedIndex: info.AppliedIndex,
					RequiredIndex: opts.MinLogIndex, LastContact: info.LastContact, MaxStaleness: opts.MaxStaleness}
			}
		}
		return n.readInfo(), nil
	}
	return ReadInfo{}, fmt.Errorf("cluster: unknown consistency %d", opts.Consistency)
}

func (n *Node) leadershipError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, raft.ErrRaftShutdown) {
		return ErrShutdown
	}
	return n.notLeader()
}

func (n *Node) readInfo() ReadInfo {
	info := ReadInfo{NodeID: n.cfg.NodeID, AppliedIndex: n.fsm.AppliedIndex(), Leader: n.raft.State() == raft.Leader}
	if !info.Leader {
		if lc := n.raft.LastContact(); lc.IsZero() {
			info.LastContact = time.Duration(1<<63 - 1) // never heard from a leader
		} else {
			info.LastContact = time.Since(lc)
		}
	}
	return info
}

// catchUpContext bounds a wait for min_log_index: at most maxWait, and ending a little before the
// caller's own deadline, so the caller gets a typed "not caught up" answer (and can try another
// node) instead of its own DEADLINE_EXCEEDED.
func catchUpContext(ctx context.Context, maxWait time.Duration) (context.Context, context.CancelFunc) {
	wait := maxWait
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		wait = min(wait, left-min(50*time.Millisecond, left/10))
	}
	return context.WithTimeout(ctx, max(wait, 0))
}

func timeoutFrom(ctx context.Context, def time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return def
}

// leaderVerifier shares leadership-confirmation rounds between concurrent linearizable reads. A read joins
// the queue and is answered by the next round that starts after it joined — never by a round
// already running, which may have been started before the read arrived.
type leaderVerifier struct {
	raft    *raft.Raft
	mu      sync.Mutex
	waiting []chan error
	running bool
}

func (v *leaderVerifier) verify(ctx context.Context) error {
	ch := make(chan error, 1)
	v.mu.Lock()
	v.waiting = append(v.waiting, ch)
	if !v.running {
		v.running = true
		go v.run()
	}
	v.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *leaderVerifier) run() {
	for {
		v.mu.Lock()
		batch := v.waiting
		v.waiting = nil
		if len(batch) == 0 {
			v.running = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		// Not raft.VerifyLeader: it counts any heartbeat or AppendEntries response that arrives
		// while the round is open, including one to a request sent before the read arrived — a
		// leader frozen (SIGSTOP) while the others elected a new one thaws, reads that stale
		// response and "verifies" (jepsen-lite streams-crashes, seed 1500, stale read on the old
		// leader). An empty command committed now needs acknowledgements to an entry appended
		// after the reads arrived, which followers in a newer term refuse. Cost: one replicated
		// entry per round, shared by every read waiting for it.
		err := v.raft.Apply(emptyCommand, 10*time.Second).Error()
		for _, ch := range batch {
			ch <- err
		}
	}
}
