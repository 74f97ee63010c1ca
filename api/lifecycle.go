package api

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// Stream lifecycle RPCs (DESIGN §5): SetStreamMetadata, GetStreamMetadata and DeleteStream (soft
// delete). Hiding happens in the store at read time (fsm/visibility.go); see DESIGN.md, "Stream
// lifecycle".

const violationOutOfRange = "OUT_OF_RANGE"

// SetStreamMetadata implements cairnpb.EventsServer: it replaces a stream's metadata if the
// expected metadata revision holds, with the same forwarding rules as Append. Like Tombstone it
// is not idempotent: a retry after an unknown outcome with an EXACT condition fails with ABORTED
// if the first attempt was committed.
func (s *Service) SetStreamMetadata(ctx context.Context, req *cairnpb.SetStreamMetadataRequest) (*cairnpb.SetStreamMetadataResponse, error) {
	const op = "set_stream_metadata"
	cmd, err := s.validateSetMetadata(req)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	res, err := s.propose(ctx, cmd)
	if err != nil {
		return forwardOrFail(ctx, s, op, err, req.GetRequireLeader(), true,
			func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.SetStreamMetadataResponse, error) {
				return c.SetStreamMetadata(ctx, req)
			})
	}
	if len(res.Streams) != 1 {
		return nil, s.fail(ctx, op, fmt.Errorf("set metadata: state machine returned %d stream results, want 1", len(res.Streams)))
	}
	return &cairnpb.SetStreamMetadataResponse{
		MetadataRevision: res.Streams[0].FirstRevision,
		Position:         res.Streams[0].FirstPosition,
		LogIndex:         res.LogIndex,
		CommitTime:       commitTime(res.Timestamp),
	}, nil
}

// validateSetMetadata checks the stream name, the condition and the metadata (max_count >= 1,
// max_age a valid non-negative duration, user keys valid and within the limits of
// fsm.MaxMetadataUserKeys and fsm.MaxMetadataUserBytes) and builds the command.
func (s *Service) validateSetMetadata(req *cairnpb.SetStreamMetadataRequest) (*fsmpb.Request, error) {
	if err := s.checkRequestSize(req); err != nil {
		return nil, err
	}
	md := req.GetMetadata()
	if md == nil {
		md = &cairnpb.StreamMetadata{} // no metadata clears every limit and key
	}
	if n := len(md.GetUser()); n > fsm.MaxMetadataUserKeys {
		return nil, limitError("metadata_user_keys", fsm.MaxMetadataUserKeys, n, "metadata.user")
	}
	size := 0
	for k, v := range md.GetUser() {
		size += len(k) + len(v)
	}
	if size > fsm.MaxMetadataUserBytes {
		return nil, limitError("metadata_user_bytes", fsm.MaxMetadataUserBytes, size, "metadata.user")
	}
	var b badRequest
	s.checkName(&b, "stream", req.GetStream(), true)
	exp := checkExpected(&b, "expected", req.GetExpected())
	out := &fsmpb.StreamMetadata{MaxCount: md.MaxCount, TruncateBefore: md.TruncateBefore}
	if md.MaxCount != nil && md.GetMaxCount() == 0 {
		b.add("metadata.max_count", violationOutOfRange, "max_count must be at least 1 (leave it out for no bound)")
	}
	if d := md.GetMaxAge(); d != nil {
		switch err := d.CheckValid(); {
		case err != nil:
			b.add("metadata.max_age", violationInvalidDuration, "%v", err)
		case d.AsDuration() < 0:
			b.add("metadata.max_age", violationInvalidDuration, "max_age %v is negative", d.AsDuration())
		default:
			out.MaxAgeNanos = int64(d.AsDuration())
		}
	}
	keys := make([]string, 0, len(md.GetUser()))
	for k := range md.GetUser() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fsm.ValidMetadataKey(k); err != nil {
			b.add("metadata.user", violationUnexpectedValue, "%v", err)
			continue
		}
		out.User = append(out.User, &fsmpb.UserKey{Key: k, Value: md.GetUser()[k]})
	}
	if err := b.err(); err != nil {
		return nil, err
	}
	return &fsmpb.Request{Kind: &fsmpb.Request_SetMetadata{SetMetadata: &fsmpb.SetMetadataRequest{
		Stream: req.GetStream(), Expected: exp, Metadata: out,
	}}}, nil
}

// GetStreamMetadata implements cairnpb.EventsServer: the stream's latest metadata after the read
// fence of the requested consistency (forwarded like Read).
func (s *Service) GetStreamMetadata(ctx context.Context, req *cairnpb.GetStreamMetadataRequest) (*cairnpb.GetStreamMetadataResponse, error) {
	const op = "get_stream_metadata"
	var b badRequest
	s.checkName(&b, "stream", req.GetStream(), false)
	opts := checkReadOptions(&b, req.GetOptions())
	if err := b.err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	info, err := s.node.ReadFence(ctx, opts)
	if err != nil {
		return forwardOrFail(ctx, s, op, err, false, false,
			func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.GetStreamMetadataResponse, error) {
				return c.GetStreamMetadata(ctx, req)
			})
	}
	md, err := s.node.Store().StreamMetadata(ctx, req.GetStream())
	if err != nil {
		return nil, s.fail(ctx, op, &streamError{stream: req.GetStream(), err: err})
	}
	out := &cairnpb.GetStreamMetadataResponse{Stream: req.GetStream(), Exists: md.Exists, ServedBy: servedBy(info)}
	if md.Exists {
		out.MetadataRevision, out.Metadata = md.Revision, metadataToPB(md.Metadata)
	}
	return out, nil
}

// metadataToPB converts stored metadata to its API form.
func metadataToPB(md fsm.Metadata) *cairnpb.StreamMetadata {
	out := &cairnpb.StreamMetadata{User: md.User}
	if md.HasMaxCount {
		out.MaxCount = &md.MaxCount
	}
	if md.HasTruncateBefore {
		out.TruncateBefore = &md.TruncateBefore
	}
	if md.MaxAge > 0 {
		out.MaxAge = durationpb.New(time.Duration(md.MaxAge))
	}
	return out
}

// DeleteStream implements cairnpb.EventsServer: it soft-deletes a stream if the expected
// revision holds, with the same forwarding rules as Append. A stream without events fails with
// NOT_FOUND, a tombstoned one with FAILED_PRECONDITION.
func (s *Service) DeleteStream(ctx context.Context, req *cairnpb.DeleteStreamRequest) (*cairnpb.DeleteStreamResponse, error) {
	const op = "delete_stream"
	var b badRequest
	s.checkName(&b, "stream", req.GetStream(), true)
	exp := checkExpected(&b, "expected", req.GetExpected())
	if err := b.err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	cmd := &fsmpb.Request{Kind: &fsmpb.Request_SoftDelete{SoftDelete: &fsmpb.SoftDeleteRequest{Stream: req.GetStream(), Expected: exp}}}
	res, err := s.propose(ctx, cmd)
	if err != nil {
		if errors.Is(err, fsm.ErrStreamNotFound) {
			err = &streamError{stream: req.GetStream(), err: err} // names the stream in the details
		}
		return forwardOrFail(ctx, s, op, err, req.GetRequireLeader(), true,
			func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.DeleteStreamResponse, error) {
				return c.DeleteStream(ctx, req)
			})
	}
	if len(res.Streams) != 1 {
		return nil, s.fail(ctx, op, fmt.Errorf("delete: state machine returned %d stream results, want 1", len(res.Streams)))
	}
	return &cairnpb.DeleteStreamResponse{
		Position:   res.Streams[0].FirstPosition,
		LogIndex:   res.LogIndex,
		CommitTime: commitTime(res.Timestamp),
	}, nil
}
