package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
	"github.com/cairndb/cairn/internal/bugs"
)

// proposal is one client request waiting for its raft entry.
type proposal struct {
	req  *fsmpb.Request
	size int
	done chan proposalResult // buffered 1
}

type proposalResult struct {
	res fsm.Result
	err error
}

// inflightBatch is a raft entry on its way, with the proposals it carries.
type inflightBatch struct {
	future raft.ApplyFuture
	batch  []*proposal
}

// Propose replicates one request and returns its result once its entry is committed (fsynced on
// a quorum) and applied — never earlier (DESIGN §2 durability). Concurrent proposals are packed
// into few raft entries by the batch loop; a lone proposal is sent at once, so batching never
// delays a single client.
//
// Errors: *NotLeaderError on a follower (nothing was proposed: forwarding is safe); ErrOutcomeUnknown
// when the entry entered raft but leadership was lost or the context ended before its outcome
// was known (retrying with the same event ids is safe); ErrShutdown. The request's own outcome is
// in Result.Err.
func (n *Node) Propose(ctx context.Context, req *fsmpb.Request) (fsm.Result, error) {
	if n.raft.State() != raft.Leader {
		return fsm.Result{}, n.notLeader()
	}
	if bugs.Enabled(bugs.VersionCheckOnLeader) {
		var err error
		if req, err = n.checkOnLeader(req); err != nil {
			return fsm.Result{Err: err}, nil
		}
	}
	p := &proposal{req: req, size: proto.Size(req), done: make(chan proposalResult, 1)}
	select {
	case n.proposals <- p:
	case <-ctx.Done():
		return fsm.Result{}, ctx.Err() // not proposed
	case <-n.shutdownCh:
		return fsm.Result{}, ErrShutdown
	}
	if bugs.Enabled(bugs.AckBeforeCommit) {
		// Planted bug: when the commit takes a while, acknowledge anyway with the result the
		// leader predicts from its local state, before the entry is committed.
		select {
		case r := <-p.done:
			return r.res, r.err
		case <-time.After(50 * time.Millisecond):
			return n.predictResult(req), nil
		}
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	}
}

// batchLoop packs queued proposals into raft entries. It takes whatever is queued when it wakes
// (bounded by MaxBatchRequests and MaxBatchBytes) and proposes it at once: no timer, so a lone
// client is never delayed. Under load, proposals queue while earlier entries are in flight (the
// in-flight window is bounded), which is what makes the batches grow.
func (n *Node) batchLoop() {
	defer n.wg.Done()
	defer close(n.inflight)
	for {
		var first *proposal
		select {
		case first = <-n.proposals:
		case <-n.shutdownCh:
			n.failQueued()
			return
		}
		// Wait for a free slot in the in-flight window before taking the rest of the queue, so
		// that everything that arrived meanwhile goes into this entry (group commit).
		select {
		case n.slots <- struct{}{}:
		case <-n.shutdownCh:
			first.done <- proposalResult{err: ErrShutdown}
			n.failQueued()
			return
		}
		batch, size := []*proposal{first}, first.size
	drain:
		for len(batch) < n.cfg.MaxBatchRequests && size < n.cfg.MaxBatchBytes {
			select {
			case p := <-n.proposals:
				batch, size = append(batch, p), size+p.size
			default:
				break drain
			}
		}
		cmd := &fsmpb.Command{TimestampUnixNano: time.Now().UnixNano(), Requests: make([]*fsmpb.Request, len(batch))}
		for i, p := range batch {
			cmd.Requests[i] = p.req
		}
		data, err := fsm.EncodeCommand(cmd)
		if err != nil {
			n.log.Error("encoding a command failed", "requests", len(batch), "error", err)
			resolve(batch, proposalResult{err: err})
			<-n.slots
			continue
		}
		if n.cfg.OnBatch != nil {
			n.cfg.OnBatch(len(batch), len(data))
		}
		f := n.raft.Apply(data, n.cfg.ApplyTimeout)
		select {
		case n.inflight <- &inflightBatch{future: f, batch: batch}:
		case <-n.shutdownCh:
			resolve(batch, proposalResult{err: fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrShutdown)})
			n.failQueued()
			return
		}
	}
}

func (n *Node) failQueued() {
	for {
		select {
		case p := <-n.proposals:
			p.done <- proposalResult{err: ErrShutdown}
		default:
			return
		}
	}
}

func resolve(batch []*proposal, r proposalResult) {
	for _, p := range batch {
		p.done <- r
	}
}

// shutdownFutureWait bounds how long, once shutdown has begun, resolveLoop waits for an apply
// future: see waitFuture.
const shutdownFutureWait = 5 * time.Second

// waitFuture waits for an apply future. hashicorp/raft never answers a future whose entry was
// committed but still queued for the state machine (fsmMutateCh) when raft shut down
// (hashicorp/raft#498): waiting on it blocks forever, and Close/Kill hung in wg.Wait when a
// leader stopped under load. So the wait runs in a goroutine, and once shutdown has begun it
// gives up at giveUp (shared by every later wait), answering raft.ErrRaftShutdown, i.e. outcome
// unknown. The waiting goroutine leaks only in that raft bug case.
func (n *Node) waitFuture(f raft.ApplyFuture, giveUp *time.Time) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.shutdownCh:
	}
	if giveUp.IsZero() {
		*giveUp = time.Now().Add(shutdownFutureWait)
	}
	t := time.NewTimer(time.Until(*giveUp))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		n.log.Warn("raft shut down without answering an apply future; reporting outcome unknown (hashicorp/raft#498)")
		return raft.ErrRaftShutdown
	}
}

// resolveLoop waits for in-flight entries in log order and hands each proposal its result.
func (n *Node) resolveLoop() {
	defer n.wg.Done()
	var giveUp time.Time
	for b := range n.inflight {
		err := n.waitFuture(b.future, &giveUp)
		<-n.slots // the entry is answered: its slot is free for the next one
		if err != nil {
			resolve(b.batch, proposalResult{err: n.classifyApplyError(err)})
			continue
		}
		switch out := b.future.Response().(type) {
		case []fsm.Result:
			if len(out) != len(b.batch) {
				err := fmt.Errorf("cluster: entry %d has %d results for %d requests", b.future.Index(), len(out), len(b.batch))
				n.log.Error("result count mismatch", "error", err)
				resolve(b.batch, proposalResult{err: err})
				continue
			}
			for i, p := range b.batch {
				p.done <- proposalResult{res: out[i]}
			}
		case error:
			n.log.Error("state machine rejected a whole entry", "index", b.future.Index(), "error", out)
			resolve(b.batch, proposalResult{err: out})
		default:
			err := fmt.Errorf("cluster: entry %d: unexpected apply response %T", b.future.Index(), out)
			n.log.Error("unexpected apply response", "error", err)
			resolve(b.batch, proposalResult{err: err})
		}
	}
}

// classifyApplyError separates "definitely not applied" from "outcome unknown" (raft's api.go:
// after ErrLeadershipLost "there is no way to guarantee whether the write succeeded or failed").
func (n *Node) classifyApplyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return n.notLeader() // never entered the log
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrNoLeader, err) // never entered the log
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrShutdown)
	case errors.Is(err, raft.ErrLeadershipLost) && bugs.Enabled(bugs.LeadershipLostAsFailure):
		return fmt.Errorf("%w: %w", ErrNoLeader, err) // planted bug: unknown reported as failed
	default: // ErrLeadershipLost and anything else after the entry may have been appended
		n.log.Warn("proposal outcome unknown", "error", err)
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
}

// checkOnLeader is the planted VersionCheckOnLeader bug: it checks expected revisions against this
// leader's local state and proposes the append with ANY, so two racing appends can both pass.
func (n *Node) checkOnLeader(req *fsmpb.Request) (*fsmpb.Request, error) {
	a := req.GetAppend()
	if a == nil {
		return req, nil
	}
	out := proto.Clone(req).(*fsmpb.Request)
	var violations []fsm.Violation
	for _, p := range out.GetAppend().GetParts() {
		info := n.fsm.Stream(p.GetStream())
		exp := fsm.Expected{Kind: p.GetExpected().GetKind(), Revision: p.GetExpected().GetRevision()}
		ok := true
		switch exp.Kind {
		case fsmpb.ExpectedRevision_KIND_NO_STREAM:
			ok = !info.Exists
		case fsmpb.ExpectedRevision_KIND_STREAM_EXISTS:
			ok = info.Exists
		case fsmpb.ExpectedRevision_KIND_EXACT:
			ok = info.Exists && info.LastRevision == exp.Revision
		}
		if !ok {
			violations = append(violations, fsm.Violation{Stream: p.GetStream(), Expected: exp,
				ActualRevision: info.LastRevision, StreamExists: info.Exists})
		}
		p.Expected = &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_KIND_ANY}
	}
	if len(violations) > 0 {
		return nil, &fsm.ConditionError{Violations: violations}
	}
	return out, nil
}

// predictResult is the planted AckBeforeCommit bug's guess of an append's result from this
// leader's local state: the next revisions and positions as if nothing else were in flight.
func (n *Node) predictResult(req *fsmpb.Request) fsm.Result {
	res := fsm.Result{LogIndex: n.raft.LastIndex(), Timestamp: time.Now().UnixNano()}
	pos := n.fsm.LastPosition()
	for _, p := range req.GetAppend().GetParts() {
		info := n.fsm.Stream(p.GetStream())
		count := uint64(len(p.GetEvents()))
		first := uint64(0)
		if info.Exists {
			first = info.LastRevision + 1
		}
		sr := fsm.StreamResult{Stream: p.GetStream(), Count: int(count), FirstRevision: first, LastRevision: first + count - 1,
			FirstPosition: pos + 1, LastPosition: pos + count}
		pos += count
		res.Streams = append(res.Streams, sr)
	}
	return res
}
