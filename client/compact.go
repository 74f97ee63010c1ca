package client

import (
	"context"
	"time"

	"github.com/cairndb/cairn/api/cairnpb"
)

// ReclaimStats describes one space-reclaim pass of a node over its sealed segments.
type ReclaimStats struct {
	// SegmentsScanned is how many sealed segments the pass read; SegmentsRewritten how many of
	// them it replaced (a segment with nothing to drop is left as it is).
	SegmentsScanned   int
	SegmentsRewritten int
	// RecordsRedacted is how many events lost their content (they keep position and revision).
	RecordsRedacted uint64
	// BytesBefore and BytesAfter are the rewritten segments' total size before and after;
	// BytesReclaimed is the difference.
	BytesBefore    int64
	BytesAfter     int64
	BytesReclaimed int64
	// Duration is how long the pass took.
	Duration time.Duration
}

// CompactInfo reports a compaction and the space reclaim of the node that ran it (the leader).
type CompactInfo struct {
	// LogIndex and Position locate the compaction command and its marker record.
	LogIndex, Position uint64
	// NodeID is the node whose reclaim is reported.
	NodeID string
	// Status is "done" (Reclaim is the pass that covered this compaction) or "pending" (NoWait:
	// Reclaim is the node's last completed pass).
	Status string
	// Reclaim is the pass described by Status; Total sums the node's passes since it started.
	Reclaim, Total ReclaimStats
}

func reclaimFromPB(s *cairnpb.ReclaimStats) ReclaimStats {
	return ReclaimStats{SegmentsScanned: int(s.GetSegmentsScanned()), SegmentsRewritten: int(s.GetSegmentsRewritten()),
		RecordsRedacted: s.GetRecordsRedacted(), BytesBefore: s.GetBytesBefore(), BytesAfter: s.GetBytesAfter(),
		BytesReclaimed: s.GetBytesReclaimed(), Duration: s.GetDuration().AsDuration()}
}

// Compact makes every stream's hidden events (tombstoned streams, and later deletes and limits)
// gone for good on every node and reclaims their space. The leader proposes it (any node
// forwards); unless noWait, the call returns once the leader's reclaim covering it finished.
func (c *Client) Compact(ctx context.Context, noWait bool, opts ...CallOption) (*CompactInfo, error) {
	var out *CompactInfo
	err := c.admin(ctx, "compact", opts, func(ctx context.Context, cl cairnpb.ClusterClient) error {
		r, err := cl.Compact(ctx, &cairnpb.CompactRequest{NoWait: noWait})
		if err == nil {
			out = &CompactInfo{LogIndex: r.GetLogIndex(), Position: r.GetPosition(), NodeID: r.GetNodeId(),
				Status: r.GetStatus(), Reclaim: reclaimFromPB(r.GetReclaim()), Total: reclaimFromPB(r.GetTotal())}
		}
		return err
	})
	return out, err
}
