package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/cairndb/cairn/api/cairnpb"
)

// StreamInfo describes a stream's state.
type StreamInfo struct {
	Stream string
	// Exists is false for a stream that never had events (not an error) and for a soft-deleted
	// one (Deleted).
	Exists     bool
	Tombstoned bool
	// Deleted: the stream is soft-deleted and was not appended to since.
	Deleted bool
	// FirstRevision is the first visible revision (lower ones are hidden by the stream's
	// metadata limits, a soft delete or a tombstone); LastRevision the last event's, hidden or
	// not; EventCount counts the visible events.
	FirstRevision, LastRevision uint64
	LastPosition                uint64
	EventCount                  uint64
	// Created and Updated are the commit times of the first and last event (zero when unknown,
	// e.g. for a tombstoned stream).
	Created, Updated time.Time
	// Metadata is the stream's latest metadata, nil when none was set; MetadataRevision its
	// revision.
	Metadata         *StreamMetadata
	MetadataRevision uint64
	ServedBy         ServedBy
}

// GetStreamInfo describes a stream. opts selects the consistency as for Read (Limit, From and
// Direction are ignored).
func (c *Client) GetStreamInfo(ctx context.Context, stream string, opts ReadOptions, callOpts ...CallOption) (*StreamInfo, error) {
	ro, r, err := c.readOptionsToPB(opts.Consistency, opts.MinLogIndex, opts.MaxStaleness)
	if err != nil {
		return nil, fmt.Errorf("cairn: stream info %q: %w", stream, err)
	}
	var resp *cairnpb.GetStreamInfoResponse
	err = c.invoke(ctx, call{route: r, attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
		rr, err := cairnpb.NewEventsClient(conn).GetStreamInfo(ctx, &cairnpb.GetStreamInfoRequest{Stream: stream, Options: ro})
		resp = rr
		return err
	}}, c.callConfig(callOpts))
	if err != nil {
		return nil, fmt.Errorf("cairn: stream info %q: %w", stream, err)
	}
	out := &StreamInfo{Stream: resp.GetStream(), Exists: resp.GetExists(), Tombstoned: resp.GetTombstoned(), Deleted: resp.GetDeleted(),
		FirstRevision: resp.GetFirstRevision(), LastRevision: resp.GetLastRevision(), LastPosition: resp.GetLastPosition(),
		EventCount: resp.GetEventCount(), ServedBy: servedByFromPB(resp.GetServedBy())}
	if resp.GetMetadata() != nil {
		out.Metadata, out.MetadataRevision = metadataFromPB(resp.GetMetadata()), resp.GetMetadataRevision()
	}
	if resp.GetCreated() != nil {
		out.Created = resp.GetCreated().AsTime()
	}
	if resp.GetUpdated() != nil {
		out.Updated = resp.GetUpdated().AsTime()
	}
	c.observeRead(out.ServedBy)
	return out, nil
}
