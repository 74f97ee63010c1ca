package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
)

// eventsToPB converts events, giving each event without an id a fresh random UUID. The caller's
// slice is not modified. The ids are fixed here, before the first attempt, so that every retry
// carries the same ids and the server recognises a retried append (DESIGN §2).
func eventsToPB(events []EventData) ([]*cairnpb.EventData, []string) {
	out := make([]*cairnpb.EventData, len(events))
	ids := make([]string, len(events))
	for i, e := range events {
		id := e.ID
		if id == "" {
			id = NewEventID()
		}
		ids[i] = id
		out[i] = &cairnpb.EventData{
			Id:          id,
			Type:        e.Type,
			ContentType: e.ContentType,
			Data:        e.Data,
			Metadata:    e.Metadata,
			Tags:        e.Tags,
		}
	}
	return out, ids
}

// Append appends events to stream atomically, if expected holds (DESIGN §2). Events without an
// ID get a random UUID before the first attempt, so the call retries safely: if an earlier
// attempt was committed, the retry returns its result with Idempotent set and writes nothing.
// The append goes to the leader when the client knows it, else to any node, which forwards it.
//
// Failures match ErrWrongExpectedRevision (*WrongExpectedRevisionError), ErrStreamTombstoned,
// ErrEventIDConflict, ErrInvalidArgument (*InvalidArgumentError), ErrLimitExceeded
// (*LimitError), ErrUnavailable, or ErrOutcomeUnknown (*OutcomeUnknownError) when the client
// gave up without learning whether the append was committed.
func (c *Client) Append(ctx context.Context, stream string, expected Expected, events []EventData, opts ...CallOption) (*AppendResult, error) {
	cc := c.callConfig(opts)
	evs, ids := eventsToPB(events)
	req := &cairnpb.AppendRequest{Stream: stream, Expected: expected.toPB(), Events: evs, RequireLeader: cc.requireLeader}
	var resp *cairnpb.AppendResponse
	err := c.invoke(ctx, call{
		route:    routeLeader,
		write:    true,
		eventIDs: ids,
		attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := cairnpb.NewEventsClient(conn).Append(ctx, req)
			resp = r
			return err
		},
	}, cc)
	if err != nil {
		return nil, fmt.Errorf("cairn: append to stream %q: %w", stream, err)
	}
	c.ObserveLogIndex(resp.GetLogIndex())
	return &AppendResult{
		FirstRevision: resp.GetFirstRevision(),
		LastRevision:  resp.GetLastRevision(),
		FirstPosition: resp.GetFirstPosition(),
		LastPosition:  resp.GetLastPosition(),
		LogIndex:      resp.GetLogIndex(),
		CommitTime:    timeFromPB(resp.GetCommitTime()),
		Idempotent:    resp.GetIdempotent(),
		EventIDs:      ids,
	}, nil
}

// AppendMulti appends to several streams atomically: every part's condition must hold, and a
// *WrongExpectedRevisionError lists all violated conditions at once. Event order in $all follows
// the order of parts. Ids, routing, retries and errors are as for Append.
func (c *Client) AppendMulti(ctx context.Context, parts []StreamAppend, opts ...CallOption) (*AppendMultiResult, error) {
	cc := c.callConfig(opts)
	req := &cairnpb.AppendMultiRequest{Appends: make([]*cairnpb.StreamAppend, len(parts)), RequireLeader: cc.requireLeader}
	partIDs := make([][]string, len(parts))
	var allIDs []string
	for i, p := range parts {
		evs, ids := eventsToPB(p.Events)
		req.Appends[i] = &cairnpb.StreamAppend{Stream: p.Stream, Expected: p.Expected.toPB(), Events: evs}
		partIDs[i] = ids
		allIDs = append(allIDs, ids...)
	}
	var resp *cairnpb.AppendMultiResponse
	err := c.invoke(ctx, call{
		route:    routeLeader,
		write:    true,
		eventIDs: allIDs,
		attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := cairnpb.NewEventsClient(conn).AppendMulti(ctx, req)
			resp = r
			return err
		},
	}, cc)
	if err != nil {
		return nil, fmt.Errorf("cairn: append multi: %w", err)
	}
	c.ObserveLogIndex(resp.GetLogIndex())
	out := &AppendMultiResult{
		Results:    make([]StreamAppendResult, len(resp.GetResults())),
		LogIndex:   resp.GetLogIndex(),
		CommitTime: timeFromPB(resp.GetCommitTime()),
		Idempotent: resp.GetIdempotent(),
	}
	for i, r := range resp.GetResults() {
		out.Results[i] = StreamAppendResult{
			Stream:        r.GetStream(),
			Count:         int(r.GetCount()),
			FirstRevision: r.GetFirstRevision(),
			LastRevision:  r.GetLastRevision(),
			FirstPosition: r.GetFirstPosition(),
			LastPosition:  r.GetLastPosition(),
		}
		if i < len(partIDs) {
			out.Results[i].EventIDs = partIDs[i]
		}
	}
	return out, nil
}

// TombstoneResult describes a committed tombstone.
type TombstoneResult struct {
	// Position is the position of the tombstone record in $all.
	Position uint64
	// LogIndex is the raft index of the committing entry.
	LogIndex uint64
	// CommitTime is the leader-assigned commit timestamp.
	CommitTime time.Time
}

// Tombstone deletes stream for good, if expected holds: it can never be written again, and
// reads of it fail with ErrStreamTombstoned. Routing and retries are as for Append. A tombstone
// carries no event ids, so a retry cannot be recognised: when an attempt's answer was lost and a
// retry then finds the stream tombstoned, the error matches both ErrStreamTombstoned and
// ErrOutcomeUnknown (the lost attempt may be the one that tombstoned it).
func (c *Client) Tombstone(ctx context.Context, stream string, expected Expected, opts ...CallOption) (*TombstoneResult, error) {
	cc := c.callConfig(opts)
	req := &cairnpb.TombstoneRequest{Stream: stream, Expected: expected.toPB(), RequireLeader: cc.requireLeader}
	var resp *cairnpb.TombstoneResponse
	err := c.invoke(ctx, call{
		route:   routeLeader,
		write:   true,
		settled: func(err error) bool { return definitive(err) && !errors.Is(err, ErrStreamTombstoned) },
		attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := cairnpb.NewEventsClient(conn).Tombstone(ctx, req)
			resp = r
			return err
		},
	}, cc)
	if err != nil {
		return nil, fmt.Errorf("cairn: tombstone stream %q: %w", stream, err)
	}
	c.ObserveLogIndex(resp.GetLogIndex())
	return &TombstoneResult{Position: resp.GetPosition(), LogIndex: resp.GetLogIndex(), CommitTime: timeFromPB(resp.GetCommitTime())}, nil
}

// readOptionsToPB builds the consistency options of a read, adding the read-your-writes token to
// Stale reads, and returns the route the read takes.
func (c *Client) readOptionsToPB(cons Consistency, minIndex uint64, maxStale time.Duration) (*cairnpb.ReadOptions, route, error) {
	if maxStale < 0 {
		return nil, 0, invalidArg("options.max_staleness", "INVALID_DURATION", fmt.Sprintf("max staleness %v is negative", maxStale))
	}
	o := &cairnpb.ReadOptions{Consistency: cons.toPB()}
	if cons != Stale {
		return o, routeLeader, nil
	}
	if c.cfg.readYourWrites {
		minIndex = max(minIndex, c.token.Load())
	}
	o.MinLogIndex = minIndex
	if maxStale > 0 {
		o.MaxStaleness = durationpb.New(maxStale)
	}
	return o, routeStale, nil
}

// observeRead records what a read response says: the serving node's applied index raises the
// read-your-writes token (so later Stale reads are monotonic), and a leader that served it may
// reveal the leader's address.
func (c *Client) observeRead(s ServedBy) {
	c.ObserveLogIndex(s.AppliedIndex)
	if s.Leader {
		c.learnLeaderByID(s.NodeID)
	}
}

// Read reads events of one stream (DESIGN §3). Linearizable and Leader reads go to the leader
// when known (else any node forwards them); Stale reads go to the WithStaleReadAddress node or
// to the nodes in turn, and carry the read-your-writes token. Reads are retried like appends.
//
// Failures match ErrStreamNotFound (a stream without events), ErrStreamTombstoned,
// ErrInvalidArgument, ErrNotCaughtUp (a Stale read's bounds could not be met) or
// ErrUnavailable.
func (c *Client) Read(ctx context.Context, stream string, opts ReadOptions, callOpts ...CallOption) (*ReadResult, error) {
	limit, err := limitToPB(opts.Limit)
	if err != nil {
		return nil, fmt.Errorf("cairn: read stream %q: %w", stream, err)
	}
	ro, r, err := c.readOptionsToPB(opts.Consistency, opts.MinLogIndex, opts.MaxStaleness)
	if err != nil {
		return nil, fmt.Errorf("cairn: read stream %q: %w", stream, err)
	}
	req := &cairnpb.ReadRequest{
		Stream:         stream,
		FromRevision:   opts.From,
		FromEnd:        opts.FromEnd,
		FromTime:       timestampOrNil(opts.FromTime),
		StopAtPosition: opts.StopAtPosition,
		StopAtTime:     timestampOrNil(opts.StopAtTime),
		Direction:      opts.Direction.toPB(),
		Limit:          limit,
		Options:        ro,
	}
	var resp *cairnpb.ReadResponse
	err = c.invoke(ctx, call{
		route: r,
		attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
			rr, err := cairnpb.NewEventsClient(conn).Read(ctx, req)
			resp = rr
			return err
		},
	}, c.callConfig(callOpts))
	if err != nil {
		return nil, fmt.Errorf("cairn: read stream %q: %w", stream, err)
	}
	out := &ReadResult{
		Events:      eventsFromPB(resp.GetEvents()),
		ServedBy:    servedByFromPB(resp.GetServedBy()),
		EndOfStream: resp.GetEndOfStream(),
	}
	c.observeRead(out.ServedBy)
	return out, nil
}

// ReadAll reads the global log, $all, optionally filtered. Routing, retries and errors are as
// for Read (without ErrStreamNotFound: an empty log reads as no events).
func (c *Client) ReadAll(ctx context.Context, opts ReadAllOptions, callOpts ...CallOption) (*ReadAllResult, error) {
	limit, err := limitToPB(opts.Limit)
	if err != nil {
		return nil, fmt.Errorf("cairn: read $all: %w", err)
	}
	ro, r, err := c.readOptionsToPB(opts.Consistency, opts.MinLogIndex, opts.MaxStaleness)
	if err != nil {
		return nil, fmt.Errorf("cairn: read $all: %w", err)
	}
	req := &cairnpb.ReadAllRequest{
		FromPosition:   opts.From,
		FromEnd:        opts.FromEnd,
		FromTime:       timestampOrNil(opts.FromTime),
		StopAtPosition: opts.StopAtPosition,
		StopAtTime:     timestampOrNil(opts.StopAtTime),
		Direction:      opts.Direction.toPB(),
		Limit:          limit,
		Filter:         opts.Filter.toPB(),
		Options:        ro,
	}
	var resp *cairnpb.ReadAllResponse
	err = c.invoke(ctx, call{
		route: r,
		attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
			rr, err := cairnpb.NewEventsClient(conn).ReadAll(ctx, req)
			resp = rr
			return err
		},
	}, c.callConfig(callOpts))
	if err != nil {
		return nil, fmt.Errorf("cairn: read $all: %w", err)
	}
	out := &ReadAllResult{
		Events:     eventsFromPB(resp.GetEvents()),
		ServedBy:   servedByFromPB(resp.GetServedBy()),
		Checkpoint: resp.GetCheckpointPosition(),
		EndOfLog:   resp.GetEndOfLog(),
	}
	c.observeRead(out.ServedBy)
	return out, nil
}

// Status returns a node's view of the cluster: its role, the leader, raft indexes and the
// members. It asks the leader when the client knows it, else any node; pass ToAddress to ask a
// particular node. withLag makes the node ask every member for its applied index, so Member.Lag
// is filled in (one extra call per member). The answer teaches the client the leader's address.
func (c *Client) Status(ctx context.Context, withLag bool, opts ...CallOption) (*Status, error) {
	var (
		resp *cairnpb.StatusResponse
		addr string
	)
	err := c.invoke(ctx, call{
		route: routeLeader,
		attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := cairnpb.NewClusterClient(conn).Status(ctx, &cairnpb.StatusRequest{WithMemberLag: withLag})
			resp, addr = r, conn.Target()
			return err
		},
	}, c.callConfig(opts))
	if err != nil {
		return nil, fmt.Errorf("cairn: status: %w", err)
	}
	s := statusFromPB(addr, resp)
	c.learnStatus(s)
	return s, nil
}

// Health asks one node, with the standard gRPC health service, whether it is serving: the node
// given with ToAddress, else the first address the client was created with. It makes one attempt
// and returns true for SERVING, false (and no error) for any other answer, and an error when the
// node could not be asked.
func (c *Client) Health(ctx context.Context, opts ...CallOption) (bool, error) {
	cc := c.callConfig(opts)
	if cc.addr == "" {
		cc.addr = c.addrs[0]
	}
	cc.maxAttempts = 1
	var resp *healthpb.HealthCheckResponse
	err := c.invoke(ctx, call{
		route: routeLeader,
		attempt: func(ctx context.Context, conn *grpc.ClientConn) error {
			r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			resp = r
			return err
		},
	}, cc)
	if err != nil {
		return false, fmt.Errorf("cairn: health of %s: %w", cc.addr, err)
	}
	return resp.GetStatus() == healthpb.HealthCheckResponse_SERVING, nil
}
