package api

import (
	"context"
	"errors"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm"
)

// GetStreamInfo implements cairnpb.EventsServer: a stream's state after the read fence of the
// requested consistency (forwarded like Read). The first and last events are read to report
// their commit times.
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
		ServedBy: servedBy(info)}
	if !st.Exists {
		return out, nil
	}
	out.LastRevision, out.LastPosition, out.EventCount = st.LastRevision, st.LastPosition, st.LastRevision+1
	if st.Tombstoned {
		return out, nil // its events can no longer be read
	}
	first, err := store.ReadStream(req.GetStream(), fsm.Start, fsm.Forward, 1)
	if err == nil && len(first) == 1 {
		out.FirstRevision, out.Created = first[0].Revision, commitTime(first[0].Timestamp)
		var last []fsm.RecordedEvent
		if last, err = store.ReadStream(req.GetStream(), fsm.End, fsm.Backward, 1); err == nil && len(last) == 1 {
			out.Updated = commitTime(last[0].Timestamp)
		}
	}
	if err != nil && !errors.Is(err, fsm.ErrStreamTombstoned) {
		return nil, s.fail(ctx, op, &streamError{stream: req.GetStream(), err: err})
	}
	return out, nil
}
