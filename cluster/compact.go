package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// CompactInfo describes a compaction this node proposed.
type CompactInfo struct {
	// LogIndex is the raft index of the compaction command; Position that of its marker record.
	LogIndex, Position uint64
	// Reclaim is this node's physical reclaim state when Compact returned. When Compact waited,
	// Reclaim.Covering is what the passes covering this compaction reclaimed.
	Reclaim fsm.ReclaimStatus
	// Waited reports that Compact waited for this node's reclaim.
	Waited bool
}

// Compact proposes a compaction (fsm CompactRequest): every node applies it at the same log index
// and from then on treats every stream's hidden events as gone, then reclaims their space in the
// background. With wait, it returns once this node's reclaim pass covering the command finished,
// so Reclaim.Covering says what this node reclaimed for it.
//
// Errors: as Propose (*NotLeaderError on a follower, nothing proposed), or the context's error
// while waiting for the reclaim (the compaction itself is then applied and stays).
func (n *Node) Compact(ctx context.Context, wait bool) (CompactInfo, error) {
	res, err := n.Propose(ctx, &fsmpb.Request{Kind: &fsmpb.Request_Compact{Compact: &fsmpb.CompactRequest{}}})
	if err != nil {
		return CompactInfo{}, err
	}
	if res.Err != nil {
		return CompactInfo{}, fmt.Errorf("cluster: compact: %w", res.Err)
	}
	info := CompactInfo{LogIndex: res.LogIndex}
	if len(res.Streams) > 0 {
		info.Position = res.Streams[0].FirstPosition
	}
	n.log.Info("compaction applied", "index", info.LogIndex, "position", info.Position)
	if !wait {
		info.Reclaim = n.fsm.ReclaimStatus()
		return info, nil
	}
	st, err := n.fsm.WaitReclaimed(ctx, res.LogIndex)
	info.Reclaim, info.Waited = st, err == nil
	if err != nil {
		return info, fmt.Errorf("cluster: compaction applied at index %d, waiting for this node's reclaim: %w", res.LogIndex, err)
	}
	return info, nil
}

// compactLoop is the compaction policy: every CompactInterval, the leader proposes a compaction
// if some stream hides events that no compaction made gone yet (fsm.CompactionDue). Followers
// only apply what the leader proposes. A failure is logged and retried at the next tick.
func (n *Node) compactLoop() {
	defer n.wg.Done()
	if n.cfg.CompactInterval <= 0 {
		return
	}
	t := time.NewTicker(n.cfg.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		}
		if n.raft.State() != raft.Leader || !n.fsm.CompactionDue(time.Now().UnixNano()) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
		info, err := n.Compact(ctx, false)
		cancel()
		if err != nil {
			n.log.Warn("policy compaction failed; retrying at the next interval", "error", err)
			continue
		}
		n.log.Info("policy compaction proposed", "index", info.LogIndex, "interval", n.cfg.CompactInterval)
	}
}

// ReclaimStatsPB converts reclaim statistics to their wire form.
func ReclaimStatsPB(st fsm.ReclaimStats) *cairnpb.ReclaimStats {
	return &cairnpb.ReclaimStats{SegmentsScanned: uint32(st.SegmentsScanned), SegmentsRewritten: uint32(st.SegmentsRewritten),
		RecordsRedacted: uint64(st.RecordsRedacted), BytesBefore: st.BytesBefore, BytesAfter: st.BytesAfter,
		BytesReclaimed: st.BytesReclaimed(), Duration: durationpb.New(st.Duration)}
}

// reclaimStatusPB converts this node's reclaim state for Status.
func reclaimStatusPB(st fsm.ReclaimStatus) *cairnpb.ReclaimStatus {
	out := &cairnpb.ReclaimStatus{Running: st.Running, Compactions: st.Compactions, CoveredIndex: st.CoveredIndex,
		Last: ReclaimStatsPB(st.Last), Total: ReclaimStatsPB(st.Total)}
	if st.LastError != nil {
		out.LastError = st.LastError.Error()
	}
	return out
}
