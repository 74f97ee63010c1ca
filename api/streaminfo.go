package api

import (
	"context"
	"errors"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm"
)

// GetStreamInfo implements cairnpb.EventsServer: a stream's state after the read fence of the
// requested consistency (forwarded like Read), with its lifecycle applied: first_revision and
// event_count describe the visible events, deleted a soft delete, metadata the latest metadata.
// The first and last visible events are read to report their commit times.
func (s *Service) GetStreamInfo(ctx context.Context, req *cairnpb.GetStreamInfoRequest) (*cairnpb.GetStreamInfoResponse, error) {
	const op = "get_stream_info"
	var b badRequest
	s.checkName(&b, "stream", req.GetStream(), false)
	opts := checkReadOptions(&b, req.GetOptions())
	if err := b.err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	info, err := s.node.ReadFence(ctx, opts)
	if err != nil {
		return forwardOrFail(ctx, s, op, err, false, false,
			func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.GetStreamInfoResponse, error) {
				return c.GetStreamInfo(ctx, req)
			})
	}
	store := s.node.Store()
	st := store.Stream(req.GetStream())
	out := &cairnpb.GetStreamInfoResponse{Stream: req.GetStream(), Exists: st.Exists, Tombstoned: st.Tombstoned,
		Deleted: st.Deleted, ServedBy: servedBy(info)}
	if st.HasMetadata {
		md, err := store.StreamMetadata(ctx, req.GetStream())
		if err != nil {
			return nil, s.fail(ctx, op, &streamError{stream: req.GetStream(), err: err})
		}
		if md.Exists {
			rev := md.Revision
			out.Metadata, out.MetadataRevision = metadataToPB(md.Metadata), &rev
		}
	}
	if !st.Exists && !st.Deleted {
		return out, nil
	}
	out.LastRevision, out.LastPosition = st.LastRevision, st.LastPosition
	out.FirstRevision, out.EventCount = st.FirstRevision, st.Count
	if st.Count == 0 {
		return out, nil // tombstoned, soft-deleted or every event hidden: nothing to read
	}
	first, err := store.ReadStream(req.GetStream(), fsm.Start, fsm.Forward, 1)
	if err == nil && len(first) == 1 {
		out.FirstRevision, out.Created = first[0].Revision, commitTime(first[0].Timestamp)
		var last []fsm.RecordedEvent
		if last, err = store.ReadStream(req.GetStream(), fsm.End, fsm.Backward, 1); err == nil && len(last) == 1 {
			out.Updated = commitTime(last[0].Timestamp)
		}
	}
	if err != nil && !errors.Is(err, fsm.ErrStreamTombstoned) && !errors.Is(err, fsm.ErrStreamNotFound) {
		return nil, s.fail(ctx, op, &streamError{stream: req.GetStream(), err: err})
	}
	return out, nil
}
