package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
)

// StreamMetadata is a stream's metadata (DESIGN §5). Limits hide a stream's oldest events at
// read time, in reads, $all and subscriptions, from the moment the metadata is committed.
type StreamMetadata struct {
	// MaxCount, when set, keeps only the newest *MaxCount events visible (at least 1).
	MaxCount *uint64
	// MaxAge, when not zero, hides events committed more than MaxAge before the read.
	MaxAge time.Duration
	// TruncateBefore, when set, hides every revision below it.
	TruncateBefore *uint64
	// User holds user keys: 1-255 bytes of UTF-8 not starting with '$'; at most 64 keys and
	// 16 KiB in all.
	User map[string][]byte
}

func (m *StreamMetadata) toPB() *cairnpb.StreamMetadata {
	if m == nil {
		return &cairnpb.StreamMetadata{}
	}
	out := &cairnpb.StreamMetadata{MaxCount: m.MaxCount, TruncateBefore: m.TruncateBefore, User: m.User}
	if m.MaxAge != 0 {
		out.MaxAge = durationpb.New(m.MaxAge)
	}
	return out
}

func metadataFromPB(m *cairnpb.StreamMetadata) *StreamMetadata {
	out := &StreamMetadata{MaxCount: m.MaxCount, TruncateBefore: m.TruncateBefore, User: m.GetUser()}
	if m.GetMaxAge() != nil {
		out.MaxAge = m.GetMaxAge().AsDuration()
	}
	return out
}

// MetadataResult describes committed metadata.
type MetadataResult struct {
	// MetadataRevision is the new metadata revision (0 for the first).
	MetadataRevision uint64
	// Position is the metadata record's position in the log ($all does not show it).
	Position   uint64
	LogIndex   uint64
	CommitTime time.Time
}

// SetStreamMetadata replaces a stream's metadata (all of it) if expected holds for the stream's
// *metadata* revision: ExpectNoStream means none set yet, ExpectStreamExists some set,
// ExpectRevision(n) the latest has revision n. Failures match ErrWrongExpectedRevision (with
// Violation.Metadata set), ErrStreamTombstoned and ErrInvalidArgument. Routing and retries are
// as for Tombstone: a retry that finds its own earlier attempt committed fails with
// ErrWrongExpectedRevision and ErrOutcomeUnknown together (with an EXACT or NO_STREAM condition).
func (c *Client) SetStreamMetadata(ctx context.Context, stream string, expected Expected, md *StreamMetadata, opts ...CallOption) (*MetadataResult, error) {
	cc := c.callConfig(opts)
	req := &cairnpb.SetStreamMetadataRequest{Stream: stream, Expected: expected.toPB(), Metadata: md.toPB(), RequireLeader: cc.requireLeader}
	var resp *cairnpb.SetStreamMetadataResponse
	err := c.invoke(ctx, call{
		route:   routeLeader,
		write:   true,
		settled: func(err error) bool { return definitive(err) && !errors.Is(err, ErrWrongExpectedRevision) },
		attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := cairnpb.NewEventsClient(conn).SetStreamMetadata(ctx, req)
			resp = r
			return err
		},
	}, cc)
	if err != nil {
		return nil, fmt.Errorf("cairn: set metadata of %q: %w", stream, err)
	}
	c.ObserveLogIndex(resp.GetLogIndex())
	return &MetadataResult{MetadataRevision: resp.GetMetadataRevision(), Position: resp.GetPosition(),
		LogIndex: resp.GetLogIndex(), CommitTime: timeFromPB(resp.GetCommitTime())}, nil
}

// StreamMetadataInfo is a stream's latest metadata as GetStreamMetadata returns it.
type StreamMetadataInfo struct {
	Stream string
	// Exists reports that metadata was set at least once; the fields below are meaningful only
	// then.
	Exists   bool
	Revision uint64
	Metadata *StreamMetadata
	ServedBy ServedBy
}

// GetStreamMetadata returns a stream's latest metadata. opts selects the consistency as for
// Read (Limit, From and Direction are ignored).
func (c *Client) GetStreamMetadata(ctx context.Context, stream string, opts ReadOptions, callOpts ...CallOption) (*StreamMetadataInfo, error) {
	ro, r, err := c.readOptionsToPB(opts.Consistency, opts.MinLogIndex, opts.MaxStaleness)
	if err != nil {
		return nil, fmt.Errorf("cairn: get metadata of %q: %w", stream, err)
	}
	var resp *cairnpb.GetStreamMetadataResponse
	err = c.invoke(ctx, call{route: r, attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
		rr, err := cairnpb.NewEventsClient(conn).GetStreamMetadata(ctx, &cairnpb.GetStreamMetadataRequest{Stream: stream, Options: ro})
		resp = rr
		return err
	}}, c.callConfig(callOpts))
	if err != nil {
		return nil, fmt.Errorf("cairn: get metadata of %q: %w", stream, err)
	}
	out := &StreamMetadataInfo{Stream: resp.GetStream(), Exists: resp.GetExists(), ServedBy: servedByFromPB(resp.GetServedBy())}
	if out.Exists {
		out.Revision, out.Metadata = resp.GetMetadataRevision(), metadataFromPB(resp.GetMetadata())
	}
	c.observeRead(out.ServedBy)
	return out, nil
}

// DeleteResult describes a committed soft delete.
type DeleteResult struct {
	// Position is the delete record's position; $all shows it with type "$deleted".
	Position   uint64
	LogIndex   uint64
	CommitTime time.Time
}

// DeleteStream soft-deletes a stream if expected holds: reads of it then fail with
// ErrStreamNotFound and its events are hidden everywhere, until it is appended to again
// (revisions continue after the last one; ExpectNoStream is accepted for that append). A stream
// without events fails with ErrStreamNotFound, a tombstoned one with ErrStreamTombstoned.
// Routing and retries are as for Tombstone.
func (c *Client) DeleteStream(ctx context.Context, stream string, expected Expected, opts ...CallOption) (*DeleteResult, error) {
	cc := c.callConfig(opts)
	req := &cairnpb.DeleteStreamRequest{Stream: stream, Expected: expected.toPB(), RequireLeader: cc.requireLeader}
	var resp *cairnpb.DeleteStreamResponse
	err := c.invoke(ctx, call{
		route:   routeLeader,
		write:   true,
		settled: func(err error) bool { return definitive(err) && !errors.Is(err, ErrWrongExpectedRevision) },
		attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := cairnpb.NewEventsClient(conn).DeleteStream(ctx, req)
			resp = r
			return err
		},
	}, cc)
	if err != nil {
		return nil, fmt.Errorf("cairn: delete stream %q: %w", stream, err)
	}
	c.ObserveLogIndex(resp.GetLogIndex())
	return &DeleteResult{Position: resp.GetPosition(), LogIndex: resp.GetLogIndex(), CommitTime: timeFromPB(resp.GetCommitTime())}, nil
}
