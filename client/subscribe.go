package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cairndb/cairn/api/cairnpb"
)

// AllStream is the stream name that, like an empty Stream, subscribes to the global log ($all).
const AllStream = "$all"

// DefaultSubscribeHeartbeat is the heartbeat interval a subscription asks the server for when
// SubscribeOptions.HeartbeatInterval is zero. The client treats a stream that stays silent for
// three intervals as dead and resumes elsewhere.
const DefaultSubscribeHeartbeat = 5 * time.Second

// ErrSubscriptionClosed is returned by Next after Close.
var ErrSubscriptionClosed = errors.New("cairn: subscription closed")

// SubscribeOptions says what a subscription delivers, from where, and how consistent its start
// must be. The zero value subscribes to $all from the first event, linearizably.
type SubscribeOptions struct {
	// Stream is the stream to follow; "" or AllStream follows the global log.
	Stream string
	// From is the exclusive start: the revision (a stream) or position ($all) after which events
	// are delivered. For $all, 0 means from the first event. For a stream, From 0 starts after
	// revision 0: use FromStart to get revision 0 too. Ignored with FromStart or FromEnd.
	From uint64
	// FromStart delivers every event, from the first one.
	FromStart bool
	// FromEnd delivers only events after the end of the stream (or of $all) as the serving node
	// sees it when the subscription starts, after the start fence.
	FromEnd bool
	// FromTime, when not zero, delivers events committed at or after it (inclusive), found by
	// binary search over commit times on the server. Exclusive with From, FromStart and FromEnd.
	FromTime time.Time
	// Filter selects events, as for ReadAll; it applies to stream subscriptions too.
	Filter Filter
	// Consistency is the consistency of the start: catch-up begins after this fence. Any node
	// serves any level (a follower gets a Linearizable or Leader fence from the leader). Resumes
	// after a broken stream are Stale with MinLogIndex set to the highest applied index seen, so
	// they need no leader and never go back in time.
	Consistency Consistency
	// MinLogIndex and MaxStaleness (Stale only) are as for reads. With MaxStaleness the serving
	// node also re-checks it periodically and ends the stream when it exceeds it, so the client
	// moves to a fresher node.
	MinLogIndex  uint64
	MaxStaleness time.Duration
	// CheckpointInterval is how often the server sends a checkpoint while it scans without a
	// matching event; 0 means the server default (1 s).
	CheckpointInterval time.Duration
	// HeartbeatInterval is how long the server may stay silent before a heartbeat; 0 means
	// DefaultSubscribeHeartbeat.
	HeartbeatInterval time.Duration
	// Address, when set, is the node tried first, and again on every resume unless the stream
	// broke there. Otherwise the client's WithStaleReadAddress node, then its addresses in turn.
	Address string
	// MaxRetries bounds the resumes in a row that end before any message arrives: after that
	// many, the next failure ends the subscription with its error. 0 means no bound: the
	// subscription resumes until its context ends or Close is called.
	MaxRetries int
}

// MessageKind tells the messages of a subscription apart.
type MessageKind int

const (
	// MessageEvent carries an event.
	MessageEvent MessageKind = iota + 1
	// MessageCaughtUp marks the hand-over from history to live events: every matching event up
	// to Position (for a stream: Revision) was delivered before it. It comes once after the
	// catch-up, again after each MessageFellBehind, and again after a resume on another node.
	MessageCaughtUp
	// MessageCheckpoint says every position up to Position was scanned and every matching event
	// at or before it delivered; store it to resume a subscription later from Position.
	MessageCheckpoint
	// MessageFellBehind says the subscriber is far behind the serving node's log; delivery goes
	// on (no action needed) and a MessageCaughtUp follows when it has caught up.
	MessageFellBehind
)

// String returns "event", "caught-up", "checkpoint" or "fell-behind".
func (k MessageKind) String() string {
	switch k {
	case MessageEvent:
		return "event"
	case MessageCaughtUp:
		return "caught-up"
	case MessageCheckpoint:
		return "checkpoint"
	case MessageFellBehind:
		return "fell-behind"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// SubscriptionMessage is one message of a subscription. Heartbeats are not delivered: the
// subscription uses them to tell a quiet stream from a dead one.
type SubscriptionMessage struct {
	// Kind says which fields are set.
	Kind MessageKind
	// Event is the event of a MessageEvent.
	Event *RecordedEvent
	// Position is the event's position, or the scanned position of the other kinds.
	Position uint64
	// Revision, when HasRevision, is the stream revision of an event, or the revision after
	// which a stream subscription continues (MessageCaughtUp).
	Revision    uint64
	HasRevision bool
	// NodeID and AppliedIndex describe the serving node when it sent the message.
	NodeID       string
	AppliedIndex uint64
}

// Subscription is a running subscription (see Client.Subscribe). Next delivers its messages;
// it must not be called concurrently. Close may be called from any goroutine.
type Subscription struct {
	c      *Client
	opts   SubscribeOptions
	all    bool
	ctx    context.Context
	cancel context.CancelFunc
	idle   time.Duration
	closed atomic.Bool

	// Resume point, known once started. $all: every position <= pos was delivered or scanned.
	// Stream: revision rev was delivered (hasRev), else the start is before the first event.
	started bool
	pos     uint64
	rev     uint64
	hasRev  bool
	fenced  bool   // a message arrived: the start fence was passed
	applied uint64 // highest applied index seen

	stream   grpc.ServerStreamingClient[cairnpb.SubscribeResponse]
	attempt  context.CancelFunc // cancels the current stream
	watchdog *time.Timer        // cancels the current stream when it stays silent too long
	stalled  *atomic.Bool       // set by the watchdog
	addr     string
	avoid    string
	failed   map[string]bool // nodes whose attempt failed since the last message
	failures int             // consecutive attempts that ended before any message
	err      error
	pending  []SubscriptionMessage // the rest of a received batch of events

	mu      sync.Mutex
	resumes int
	lastErr error
}

// Subscribe starts a subscription (DESIGN §4): the events of opts.Stream, or of $all, after the
// start point, first from history and then live, with no gap and no duplicate. When a stream
// breaks (the node died, drained, fell too stale) the subscription resumes on another node from
// the last event or checkpoint it delivered, so the caller sees every matching event exactly
// once, in order, across node failures. It ends when ctx ends, on Close, or on an error that a
// resume cannot cure (a tombstoned stream: ErrStreamTombstoned; an invalid request:
// ErrInvalidArgument), which Next returns.
//
// Subscribe does no I/O; problems with the first attempt are reported by Next.
func (c *Client) Subscribe(ctx context.Context, opts SubscribeOptions) (*Subscription, error) {
	switch {
	case opts.FromStart && opts.FromEnd:
		return nil, fmt.Errorf("cairn: subscribe: %w", invalidArg("from_end", "UNEXPECTED_VALUE", "FromStart and FromEnd are exclusive"))
	case opts.From != 0 && (opts.FromStart || opts.FromEnd):
		return nil, fmt.Errorf("cairn: subscribe: %w", invalidArg("from", "UNEXPECTED_VALUE", "From must be 0 with FromStart or FromEnd"))
	case !opts.FromTime.IsZero() && (opts.From != 0 || opts.FromStart || opts.FromEnd):
		return nil, fmt.Errorf("cairn: subscribe: %w", invalidArg("from_time", "UNEXPECTED_VALUE", "FromTime excludes From, FromStart and FromEnd"))
	case opts.MaxStaleness < 0 || opts.CheckpointInterval < 0 || opts.HeartbeatInterval < 0:
		return nil, fmt.Errorf("cairn: subscribe: %w", invalidArg("options", "INVALID_DURATION", "durations must not be negative"))
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = DefaultSubscribeHeartbeat
	}
	s := &Subscription{c: c, opts: opts, all: opts.Stream == "" || opts.Stream == AllStream,
		idle: max(3*opts.HeartbeatInterval, time.Second)}
	s.ctx, s.cancel = context.WithCancel(ctx)
	// The start point is known unless the server must resolve it (FromEnd, FromTime).
	switch {
	case opts.FromEnd, !opts.FromTime.IsZero():
	case s.all:
		s.started, s.pos = true, opts.From
	case opts.FromStart:
		s.started = true
	default:
		s.started, s.rev, s.hasRev = true, opts.From, true
	}
	return s, nil
}

// Close ends the subscription; a Next in progress or later returns ErrSubscriptionClosed. Close
// is idempotent and always returns nil.
func (s *Subscription) Close() error {
	s.closed.Store(true)
	s.cancel()
	return nil
}

// Resumes returns how many times the subscription reconnected after a broken stream, and the
// error that broke it last.
func (s *Subscription) Resumes() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumes, s.lastErr
}

// Position returns the resume point: for $all the position up to which every event was
// delivered or scanned; for a stream the last revision delivered (ok false before any). Like
// Next, it must not be called concurrently with Next.
func (s *Subscription) Position() (pos uint64, ok bool) {
	if s.all {
		return s.pos, s.started
	}
	return s.rev, s.hasRev
}

// Next returns the next message, resuming on another node when the stream breaks. It returns
// an error only when the subscription is over: ErrSubscriptionClosed after Close, the context's
// error, ErrStreamTombstoned when the stream is (or becomes) tombstoned, ErrInvalidArgument, or
// the last error after MaxRetries consecutive failures. Once it returned an error it returns the
// same error again.
func (s *Subscription) Next() (SubscriptionMessage, error) {
	for {
		if s.err != nil {
			return SubscriptionMessage{}, s.err
		}
		if len(s.pending) > 0 {
			m := s.pending[0]
			s.pending = s.pending[1:]
			return m, nil
		}
		if s.stream == nil {
			if err := s.connect(); err != nil {
				s.finish(err)
			}
			continue // connected, failed (a resume is prepared) or finished
		}
		m, err := s.recv()
		if err != nil {
			s.broken(err)
			continue
		}
		s.failures = 0
		clear(s.failed)
		s.accept(m)
	}
}

// Messages iterates over the subscription's messages until it ends; the last pair carries the
// error that ended it (see Next).
func (s *Subscription) Messages() iter.Seq2[SubscriptionMessage, error] {
	return func(yield func(SubscriptionMessage, error) bool) {
		for {
			m, err := s.Next()
			if !yield(m, err) || err != nil {
				return
			}
		}
	}
}

// finish ends the subscription with err.
func (s *Subscription) finish(err error) {
	switch {
	case s.closed.Load():
		err = ErrSubscriptionClosed
	case s.ctx.Err() != nil && !errors.Is(err, s.ctx.Err()):
		err = fmt.Errorf("%w (last error: %w)", s.ctx.Err(), err)
	}
	if !errors.Is(err, ErrSubscriptionClosed) {
		err = fmt.Errorf("cairn: subscribe to %s: %w", s.name(), err)
	}
	s.err = err
	s.drop()
	s.cancel()
}

func (s *Subscription) name() string {
	if s.all {
		return AllStream
	}
	return fmt.Sprintf("stream %q", s.opts.Stream)
}

// drop abandons the current stream.
func (s *Subscription) drop() {
	if s.watchdog != nil {
		s.watchdog.Stop()
	}
	if s.attempt != nil {
		s.attempt()
	}
	s.stream, s.attempt, s.watchdog, s.stalled = nil, nil, nil, nil
}

// connect opens a stream at the next node, after a backoff when the previous attempts failed.
func (s *Subscription) connect() error {
	if s.closed.Load() || s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	if s.failures > 0 {
		if s.opts.MaxRetries > 0 && s.failures > s.opts.MaxRetries {
			return s.lastError()
		}
		if err := s.c.backoff(s.ctx, s.failures); err != nil {
			return err
		}
	}
	addr := s.pickAddr()
	conn, err := s.c.conn(addr)
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(s.ctx)
	st, err := cairnpb.NewEventsClient(conn).Subscribe(actx, s.request())
	if err != nil {
		cancel()
		s.addr = addr
		s.broken(decodeError(err, addr))
		return nil
	}
	stalled := new(atomic.Bool)
	s.stream, s.attempt, s.addr, s.stalled = st, cancel, addr, stalled
	s.watchdog = time.AfterFunc(time.Hour, func() {
		stalled.Store(true)
		cancel()
	})
	s.watchdog.Stop()
	return nil
}

func (s *Subscription) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr == nil {
		return errors.New("too many failed attempts")
	}
	return s.lastErr
}

// pickAddr chooses the node for the next attempt: the preferred Address, else the client's
// stale-read node, else the addresses in turn, skipping the nodes that failed since the last
// message (all of them are tried again once every one has failed).
func (s *Subscription) pickAddr() string {
	if a := s.opts.Address; a != "" && !s.failed[a] {
		return a
	}
	for range len(s.c.addrs) + 1 {
		if a := s.c.pick(routeStale, "", s.avoid); !s.failed[a] {
			return a
		}
	}
	clear(s.failed)
	return s.c.pick(routeStale, "", s.avoid)
}

// request builds the SubscribeRequest of the next attempt: the caller's start and consistency
// for the first, the resume point with a Stale fence at the highest applied index seen after.
func (s *Subscription) request() *cairnpb.SubscribeRequest {
	o := s.opts
	req := &cairnpb.SubscribeRequest{Stream: o.Stream, Filter: o.Filter.toPB(),
		HeartbeatInterval: durationpb.New(o.HeartbeatInterval)}
	if o.CheckpointInterval > 0 {
		req.CheckpointInterval = durationpb.New(o.CheckpointInterval)
	}
	ro, _, _ := s.c.readOptionsToPB(o.Consistency, o.MinLogIndex, o.MaxStaleness) // durations checked in Subscribe
	req.Options = ro
	if !s.started {
		req.From, req.FromStart, req.FromEnd = o.From, o.FromStart, o.FromEnd
		if !o.FromTime.IsZero() {
			req.FromTime = timestamppb.New(o.FromTime)
		}
		return req
	}
	switch {
	case s.all:
		req.From = s.pos
	case s.hasRev:
		req.From = s.rev
	default:
		req.FromStart = true
	}
	if s.fenced {
		ro, _, _ := s.c.readOptionsToPB(Stale, max(o.MinLogIndex, s.applied), o.MaxStaleness)
		req.Options = ro
	}
	return req
}

// recv receives one message, declaring the stream dead (and cancelling it) when nothing, not
// even a heartbeat, arrives for three heartbeat intervals.
func (s *Subscription) recv() (*cairnpb.SubscribeResponse, error) {
	s.watchdog.Reset(s.idle)
	m, err := s.stream.Recv()
	s.watchdog.Stop()
	if err == nil {
		return m, nil
	}
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("node %s ended the subscription without a status", s.addr)
	}
	if s.stalled.Load() && s.ctx.Err() == nil {
		return nil, fmt.Errorf("node %s sent nothing for %v: %w", s.addr, s.idle, ErrUnavailable)
	}
	return nil, decodeError(err, s.addr)
}

// broken handles the end of a stream: it ends the subscription on a terminal error and otherwise
// prepares a resume away from the node that failed.
func (s *Subscription) broken(err error) {
	addr := s.addr
	s.drop()
	if s.closed.Load() || s.ctx.Err() != nil || !s.resumable(err, addr) {
		s.finish(err)
		return
	}
	s.failures++
	s.avoid = addr
	if s.failed == nil {
		s.failed = make(map[string]bool)
	}
	s.failed[addr] = true
	s.mu.Lock()
	s.resumes++
	s.lastErr = err
	s.mu.Unlock()
}

// resumable reports whether a stream that ended with err may be resumed on another node. Like
// reads, everything that may be transient is; unlike reads, INTERNAL is too (another node may
// serve the subscription), and so is a stream that ended without a status.
func (s *Subscription) resumable(err error, addr string) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return true // stall or missing status
	}
	switch se.Code {
	case codes.Internal, codes.Canceled:
		return true
	}
	return s.c.classify(err, addr, false).retry
}

// accept turns a server message into what the caller sees (queued in pending), updating the
// resume point; it drops heartbeats and anything at or before the resume point (a duplicate
// after a resume).
func (s *Subscription) accept(m *cairnpb.SubscribeResponse) {
	s.applied, s.fenced = max(s.applied, m.GetAppliedIndex()), true
	s.c.ObserveLogIndex(m.GetAppliedIndex())
	out := SubscriptionMessage{NodeID: m.GetNodeId(), AppliedIndex: m.GetAppliedIndex()}
	switch k := m.GetKind().(type) {
	case *cairnpb.SubscribeResponse_Event:
		s.acceptEvents(out, []*cairnpb.RecordedEvent{k.Event})
		return
	case *cairnpb.SubscribeResponse_Events:
		s.acceptEvents(out, k.Events.GetEvents())
		return
	case *cairnpb.SubscribeResponse_CaughtUp_:
		cu := k.CaughtUp
		out.Kind, out.Position = MessageCaughtUp, cu.GetPosition()
		if !s.all {
			if cu.Revision != nil && (!s.hasRev || *cu.Revision > s.rev) {
				s.rev, s.hasRev = *cu.Revision, true
			}
			out.Revision, out.HasRevision = s.rev, s.hasRev
		}
		s.pos = max(s.pos, cu.GetPosition())
		s.started = true
	case *cairnpb.SubscribeResponse_Checkpoint_:
		p := k.Checkpoint.GetPosition()
		if p <= s.pos {
			return
		}
		s.pos = p
		s.started = s.started || s.all // for a stream, only an event or caught_up fixes the start
		out.Kind, out.Position = MessageCheckpoint, p
	case *cairnpb.SubscribeResponse_FellBehind_:
		out.Kind, out.Position = MessageFellBehind, k.FellBehind.GetPosition()
		s.pos = max(s.pos, out.Position)
	default: // heartbeats, and kinds a newer server may add
		return
	}
	s.pending = append(s.pending, out)
}

// acceptEvents queues the events of one message that are past the resume point.
func (s *Subscription) acceptEvents(base SubscriptionMessage, evs []*cairnpb.RecordedEvent) {
	for i, ev := range eventsFromPB(evs) {
		e := evs[i]
		if s.all {
			if s.started && e.GetPosition() <= s.pos {
				continue
			}
			s.pos = e.GetPosition()
		} else {
			if s.hasRev && e.GetRevision() <= s.rev {
				continue
			}
			s.rev, s.hasRev = e.GetRevision(), true
			s.pos = max(s.pos, e.GetPosition())
		}
		s.started = true
		out := base
		out.Kind, out.Event, out.Position = MessageEvent, &ev, e.GetPosition()
		out.Revision, out.HasRevision = e.GetRevision(), true
		s.pending = append(s.pending, out)
	}
}
