package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
	"github.com/cairndb/cairn/fsm"
)

// Subscriptions (DESIGN §4). A subscription is one goroutine — the gRPC handler's — that reads
// the local store in pages from its position up to the applied watermark, sends what matches,
// and, once nothing is left below the watermark, waits for the watermark to move (fsm.Watch)
// and reads the new range. History and live events come from the same log through the same
// code, so the hand-over can neither skip nor repeat an event: the position only moves forward,
// one record at a time, and a watermark snapshot comes with the channel that announces its next
// move, so no append can slip between "nothing new" and the wait. No lock is held while sending:
// a slow subscriber blocks only its own goroutine (gRPC flow control), never appends or other
// subscribers. See DESIGN.md, "Subscriptions".

// Subscription defaults.
const (
	// DefaultCheckpointInterval is how often a checkpoint is sent while the scanned position
	// advances without a matching event being sent.
	DefaultCheckpointInterval = time.Second
	// DefaultHeartbeatInterval is how long a subscription may stay silent before a heartbeat.
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultFellBehindRecords is the backlog (records of $all, or events of the stream, between
	// a live subscriber and the serving node's last one) beyond which it is told fell_behind.
	DefaultFellBehindRecords = 4096

	// minSubscribeInterval and maxSubscribeInterval bound the intervals a request may ask for.
	minSubscribeInterval = 10 * time.Millisecond
	maxSubscribeInterval = time.Minute
	// subscribeReadRetries bounds consecutive store read failures retried locally because the
	// watermark moved meanwhile (a snapshot restore swaps the segment files under a reader).
	subscribeReadRetries = 3
	// subscribeBatchBytes bounds the events packed into one message (one larger event is sent
	// alone).
	subscribeBatchBytes = 1 << 20
)

// AllStreamName is the stream name that, like an empty one, subscribes to the global log.
const AllStreamName = "$all"

// SubscribeConfig tunes subscriptions. Zero fields take the defaults above.
type SubscribeConfig struct {
	// CheckpointInterval is the default checkpoint interval (a request may ask for another, within
	// [10 ms, 1 min]). Default DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// HeartbeatInterval is the default heartbeat interval (same bounds). Default
	// DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// FellBehindRecords is the backlog beyond which a live subscriber is told fell_behind.
	// Default DefaultFellBehindRecords.
	FellBehindRecords int
}

func (c SubscribeConfig) withDefaults() SubscribeConfig {
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.FellBehindRecords <= 0 {
		c.FellBehindRecords = DefaultFellBehindRecords
	}
	return c
}

// SubscriptionStats is a snapshot of the subscription counters.
type SubscriptionStats struct {
	// Active is the number of subscriptions being served now.
	Active int64
	// Started counts subscriptions that passed validation and the drain check.
	Started uint64
	// EndedByClient counts subscriptions the client cancelled (the normal end).
	EndedByClient uint64
	// EndedWithError counts subscriptions that ended with an error status (also counted, by
	// reason, in Stats.Errors): fence failures, tombstoned streams, draining, store failures.
	EndedWithError uint64
	// Events, CaughtUp, Checkpoints, Heartbeats and FellBehind count the messages sent.
	Events, CaughtUp, Checkpoints, Heartbeats, FellBehind uint64
	// ReadRetries counts store reads that failed while the watermark moved and were retried.
	ReadRetries uint64
	// Skipped counts reads of $all whose first record came after the position asked for (history
	// no longer stored on this node; logged). Zero while positions are never removed.
	Skipped uint64
	// TailFills counts store reads into the shared cache of recent records that live $all
	// subscribers read from; TailResets counts restarts of that cache at another position.
	TailFills, TailResets uint64
}

// subscriptions is the service-wide subscription state: the drain switch and the counters. Its
// zero value is ready to use.
type subscriptions struct {
	mu       sync.Mutex
	drain    chan struct{} // closed to end every running subscription; nil until needed
	draining bool
	closed   bool

	active                                                atomic.Int64
	started, byClient, withError                          atomic.Uint64
	events, caughtUp, checkpoints, heartbeats, fellBehind atomic.Uint64
	readRetries, skipped                                  atomic.Uint64

	tail tailCache // recent records of $all for live subscribers (subscribe_tail.go)
}

// register admits a new subscription and returns the channel that ends it, or false while the
// service is draining.
func (h *subscriptions) register() (<-chan struct{}, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining {
		return nil, false
	}
	if h.drain == nil {
		h.drain = make(chan struct{})
	}
	h.active.Add(1)
	h.started.Add(1)
	return h.drain, true
}

func (h *subscriptions) unregister() { h.active.Add(-1) }

// setServing(false) ends every running subscription (UNAVAILABLE SHUTTING_DOWN, so clients
// resume on another node) and refuses new ones until setServing(true). Graceful server stops
// therefore do not wait for subscriptions, which never end by themselves.
func (h *subscriptions) setServing(serving bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if serving {
		h.draining = h.closed
		return
	}
	h.draining = true
	if h.drain != nil {
		close(h.drain)
		h.drain = nil
	}
}

// close drains for good.
func (h *subscriptions) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.setServing(false)
}

// SubscriptionStats returns a snapshot of the subscription counters.
func (s *Service) SubscriptionStats() SubscriptionStats {
	h := &s.subs
	return SubscriptionStats{
		Active: h.active.Load(), Started: h.started.Load(),
		EndedByClient: h.byClient.Load(), EndedWithError: h.withError.Load(),
		Events: h.events.Load(), CaughtUp: h.caughtUp.Load(), Checkpoints: h.checkpoints.Load(),
		Heartbeats: h.heartbeats.Load(), FellBehind: h.fellBehind.Load(), ReadRetries: h.readRetries.Load(),
		Skipped: h.skipped.Load(), TailFills: h.tail.fills.Load(), TailResets: h.tail.resets.Load(),
	}
}

// subParams is a validated SubscribeRequest.
type subParams struct {
	stream     string // "" for $all
	from       uint64 // exclusive; meaningful unless fromStart or fromEnd
	fromStart  bool
	fromEnd    bool
	filter     filter
	opts       cluster.ReadOptions
	checkpoint time.Duration
	heartbeat  time.Duration
}

// subscribeInterval validates and clamps a requested interval; nil or zero means def.
func subscribeInterval(b *badRequest, field string, d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	if err := d.CheckValid(); err != nil {
		b.add(field, violationInvalidDuration, "%v", err)
		return def
	}
	v := d.AsDuration()
	switch {
	case v < 0:
		b.add(field, violationInvalidDuration, "%s %v is negative", field, v)
		return def
	case v == 0:
		return def
	}
	return min(max(v, minSubscribeInterval), maxSubscribeInterval)
}

func (s *Service) validateSubscribe(req *cairnpb.SubscribeRequest) (subParams, error) {
	if err := s.checkRequestSize(req); err != nil {
		return subParams{}, err
	}
	if err := s.checkFilterSize(req.GetFilter()); err != nil {
		return subParams{}, err
	}
	var b badRequest
	cfg := s.cfg.Subscribe.withDefaults()
	p := subParams{
		stream:     req.GetStream(),
		from:       req.GetFrom(),
		fromStart:  req.GetFromStart(),
		fromEnd:    req.GetFromEnd(),
		filter:     newFilter(&b, req.GetFilter()),
		opts:       checkReadOptions(&b, req.GetOptions()),
		checkpoint: subscribeInterval(&b, "checkpoint_interval", req.GetCheckpointInterval(), cfg.CheckpointInterval),
		heartbeat:  subscribeInterval(&b, "heartbeat_interval", req.GetHeartbeatInterval(), cfg.HeartbeatInterval),
	}
	if p.stream == AllStreamName {
		p.stream = ""
	}
	if p.stream != "" {
		s.checkName(&b, "stream", p.stream, false)
	}
	if p.fromStart && p.fromEnd {
		b.add("from_end", violationUnexpectedValue, "from_start and from_end are exclusive")
	}
	if p.from != 0 && (p.fromStart || p.fromEnd) {
		b.add("from", violationUnexpectedValue, "from must be 0 with from_start or from_end")
	}
	return p, b.err()
}

// errDraining ends subscriptions while the service is not serving.
func errDraining() error {
	return newStatus(codes.Unavailable, ReasonShuttingDown,
		"node is draining: subscription ended; resume it on another node", nil).Err()
}

// Subscribe implements cairnpb.EventsServer (DESIGN §4): it passes the start fence, then
// delivers events after the start point from history and live, with caught_up, checkpoint,
// heartbeat and fell_behind messages, until the client cancels, the node drains or closes, or
// the stream is tombstoned (FAILED_PRECONDITION STREAM_TOMBSTONED). Every node serves every
// consistency level; see subscribeFence.
func (s *Service) Subscribe(req *cairnpb.SubscribeRequest, stream grpc.ServerStreamingServer[cairnpb.SubscribeResponse]) error {
	const op = "subscribe"
	ctx := stream.Context()
	p, err := s.validateSubscribe(req)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	drain, ok := s.subs.register()
	if !ok {
		s.subs.withError.Add(1)
		return s.fail(ctx, op, errDraining())
	}
	defer s.subs.unregister()
	info, err := s.subscribeFence(ctx, p.opts)
	if err != nil {
		s.subs.withError.Add(1)
		return s.fail(ctx, op, err)
	}
	sub := &subscription{s: s, store: s.node.Store(), stream: stream, p: p, nodeID: info.NodeID, drain: drain}
	if sub.nodeID == "" {
		sub.nodeID = s.node.ID()
	}
	if !p.filter.empty() {
		sub.match = p.filter.match
	}
	err = sub.run(ctx)
	if ctx.Err() != nil {
		// The client went away or cancelled: the normal end of a subscription.
		s.subs.byClient.Add(1)
		s.log.Debug("subscription ended by the client", "stream", sub.name(), "position", sub.scanned,
			"events", sub.sent, "error", err)
		return statusFromError(ctx.Err()).Err()
	}
	s.subs.withError.Add(1)
	if p.stream != "" {
		err = &streamError{stream: p.stream, err: err}
	}
	return s.fail(ctx, op, err)
}

// subscribeFence passes the start fence for opts. On the leader, or for STALE, it is the read
// fence. On a follower, LINEARIZABLE and LEADER are served too (a subscription is long-lived and
// should not have to live on the leader): the follower asks the leader for a read index — a
// forwarded one-record ReadAll at that consistency, whose served_by.applied_index is at least
// the commit index the leader confirmed after the request arrived — and then waits until it has
// applied that index itself (Raft thesis §6.4, follower reads). The fence is bounded by
// Config.ForwardTimeout.
func (s *Service) subscribeFence(ctx context.Context, opts cluster.ReadOptions) (cluster.ReadInfo, error) {
	fctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
	defer cancel()
	info, err := s.node.ReadFence(fctx, opts)
	if err == nil {
		return info, nil
	}
	addr, ok := s.forwardTarget(ctx, "subscribe", err, false)
	if !ok {
		return info, err
	}
	cons := cairnpb.Consistency_CONSISTENCY_LINEARIZABLE
	if opts.Consistency == cluster.Leader {
		cons = cairnpb.Consistency_CONSISTENCY_LEADER
	}
	resp, err := forward(fctx, s, "subscribe_fence", addr, false,
		func(ctx context.Context, c cairnpb.EventsClient) (*cairnpb.ReadAllResponse, error) {
			return c.ReadAll(ctx, &cairnpb.ReadAllRequest{FromEnd: true, Limit: 1, Options: &cairnpb.ReadOptions{Consistency: cons}})
		})
	if err != nil {
		return info, fmt.Errorf("subscribe: read index from the leader: %w", err)
	}
	idx := resp.GetServedBy().GetAppliedIndex()
	info, err = s.node.ReadFence(fctx, cluster.ReadOptions{Consistency: cluster.Stale, MinLogIndex: idx})
	if err != nil {
		return info, fmt.Errorf("subscribe: wait for the leader's read index %d: %w", idx, err)
	}
	return info, nil
}

// subscription is one running Subscribe call.
type subscription struct {
	s      *Service
	store  Store
	stream grpc.ServerStreamingServer[cairnpb.SubscribeResponse]
	p      subParams
	nodeID string
	drain  <-chan struct{}
	match  func(*fsm.RecordedEvent) bool // nil matches everything

	next       uint64 // $all: next position to scan; stream: next revision to read
	scanned    uint64 // every position <= scanned has been scanned (the checkpoint)
	announced  uint64 // the highest scanned position the client knows of (event, checkpoint, caught_up)
	caughtUp   bool
	applied    uint64 // applied index of the watermark the current page was read under
	sent       uint64 // events sent
	sentInStep bool   // an event was sent in the current step (lastSent is updated after it)

	batch      []*cairnpb.RecordedEvent // events read but not sent yet (see queueEvent)
	batchBytes int

	lastSent, lastCheckpoint, lastStaleCheck time.Time
}

func (sub *subscription) name() string {
	if sub.p.stream == "" {
		return AllStreamName
	}
	return sub.p.stream
}

// send sends one message stamped with the node's id and applied index. It does not update
// lastSent (a clock read per event is measurable at high rates): callers that send outside a
// page of events set it.
func (sub *subscription) send(m *cairnpb.SubscribeResponse) error {
	m.AppliedIndex, m.NodeId = sub.applied, sub.nodeID
	if err := sub.stream.Send(m); err != nil {
		return fmt.Errorf("subscribe: send: %w", err)
	}
	return nil
}

// queueEvent adds a matching event to the batch of the current read, sending the batch first
// when the event would take it over subscribeBatchBytes.
func (sub *subscription) queueEvent(r *fsm.RecordedEvent) error {
	ev := recordToPB(r)
	return sub.queuePB(ev, proto.Size(ev), r.Index)
}

// queuePB is queueEvent for an event already in wire form (possibly shared with other
// subscribers: it is never modified) of encoded size size.
func (sub *subscription) queuePB(ev *cairnpb.RecordedEvent, size int, index uint64) error {
	if len(sub.batch) > 0 && sub.batchBytes+size > subscribeBatchBytes {
		if err := sub.flush(); err != nil {
			return err
		}
	}
	sub.batch = append(sub.batch, ev)
	sub.batchBytes += size
	sub.applied = max(sub.applied, index)
	return nil
}

// flush sends the queued events: one as an event message, several as one events message.
func (sub *subscription) flush() error {
	n := len(sub.batch)
	if n == 0 {
		return nil
	}
	m := &cairnpb.SubscribeResponse{}
	if n == 1 {
		m.Kind = &cairnpb.SubscribeResponse_Event{Event: sub.batch[0]}
	} else {
		m.Kind = &cairnpb.SubscribeResponse_Events{Events: &cairnpb.SubscribeResponse_EventBatch{
			Events: append([]*cairnpb.RecordedEvent(nil), sub.batch...)}}
	}
	last := sub.batch[n-1].GetPosition()
	clear(sub.batch)
	sub.batch, sub.batchBytes = sub.batch[:0], 0
	if err := sub.send(m); err != nil {
		return err
	}
	sub.sent += uint64(n)
	sub.sentInStep = true
	sub.s.subs.events.Add(uint64(n))
	sub.announced = max(sub.announced, last)
	return nil
}

func (sub *subscription) sendCaughtUp() error {
	cu := &cairnpb.SubscribeResponse_CaughtUp{Position: sub.scanned}
	if sub.p.stream != "" && sub.next > 0 {
		rev := sub.next - 1
		cu.Revision = &rev
	}
	if err := sub.send(&cairnpb.SubscribeResponse{Kind: &cairnpb.SubscribeResponse_CaughtUp_{CaughtUp: cu}}); err != nil {
		return err
	}
	sub.caughtUp = true
	sub.announced = max(sub.announced, sub.scanned)
	sub.lastCheckpoint = time.Now()
	sub.lastSent = sub.lastCheckpoint
	sub.s.subs.caughtUp.Add(1)
	return nil
}

// checkpointDue sends a checkpoint if the scan advanced past what the client knows and the
// checkpoint interval has passed since the last one.
func (sub *subscription) checkpointDue(now time.Time) error {
	if sub.scanned <= sub.announced || now.Sub(sub.lastCheckpoint) < sub.p.checkpoint {
		return nil
	}
	m := &cairnpb.SubscribeResponse{Kind: &cairnpb.SubscribeResponse_Checkpoint_{
		Checkpoint: &cairnpb.SubscribeResponse_Checkpoint{Position: sub.scanned}}}
	if err := sub.send(m); err != nil {
		return err
	}
	sub.announced, sub.lastCheckpoint, sub.lastSent = sub.scanned, now, now
	sub.s.subs.checkpoints.Add(1)
	return nil
}

// heartbeatDue sends a heartbeat if nothing was sent for the heartbeat interval.
func (sub *subscription) heartbeatDue(now time.Time) error {
	if now.Sub(sub.lastSent) < sub.p.heartbeat {
		return nil
	}
	m := &cairnpb.SubscribeResponse{Kind: &cairnpb.SubscribeResponse_Heartbeat_{Heartbeat: &cairnpb.SubscribeResponse_Heartbeat{}}}
	if err := sub.send(m); err != nil {
		return err
	}
	sub.lastSent = now
	sub.s.subs.heartbeats.Add(1)
	return nil
}

// staleDue re-checks max_staleness of a STALE subscription once per checkpoint interval, so a
// subscription on a node cut off from the leader ends (TOO_STALE) instead of silently stalling.
func (sub *subscription) staleDue(ctx context.Context, now time.Time) error {
	o := sub.p.opts
	if o.Consistency != cluster.Stale || o.MaxStaleness <= 0 || now.Sub(sub.lastStaleCheck) < sub.p.checkpoint {
		return nil
	}
	sub.lastStaleCheck = now
	if _, err := sub.s.node.ReadFence(ctx, cluster.ReadOptions{Consistency: cluster.Stale, MaxStaleness: o.MaxStaleness}); err != nil {
		return fmt.Errorf("subscribe: staleness re-check: %w", err)
	}
	return nil
}

// start resolves the start point against the watermark after the fence.
func (sub *subscription) start(w fsm.Watermark) error {
	p := sub.p
	if p.stream == "" {
		switch {
		case p.fromEnd:
			sub.next = w.LastPosition + 1
		case p.fromStart:
			sub.next = 1
		default:
			sub.next = p.from + 1
		}
		sub.scanned = sub.next - 1
		return nil
	}
	info := sub.store.Stream(p.stream)
	if info.Tombstoned {
		return fmt.Errorf("subscribe to %q: %w", p.stream, fsm.ErrStreamTombstoned)
	}
	switch {
	case p.fromEnd:
		if info.Exists {
			sub.next = info.LastRevision + 1
		}
		sub.scanned = w.LastPosition
	case p.fromStart:
		sub.next = 0
	default:
		sub.next = p.from + 1
	}
	return nil
}

// run serves the subscription until an error, the client's cancellation, or a drain.
func (sub *subscription) run(ctx context.Context) error {
	now := time.Now()
	sub.lastSent, sub.lastCheckpoint, sub.lastStaleCheck = now, now, now
	w, err := sub.store.Watch()
	if err != nil {
		return err
	}
	sub.applied = w.AppliedIndex
	if err := sub.start(w); err != nil {
		return err
	}
	sub.s.log.Debug("subscription started", "stream", sub.name(), "next", sub.next,
		"consistency", sub.p.opts.Consistency.String(), "filtered", sub.match != nil)
	cfg := sub.s.cfg.Subscribe.withDefaults()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	failures := 0
	for {
		select {
		case <-sub.drain:
			return errDraining()
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if w, err = sub.store.Watch(); err != nil {
			return err
		}
		sub.applied = max(sub.applied, w.AppliedIndex)
		more, backlog, err := sub.step(w)
		if err != nil {
			// A read that failed while the watermark moved (a snapshot restore swaps the segment
			// files) is retried; anything else ends the subscription.
			if !isClosedChan(w.Changed) || failures >= subscribeReadRetries || errors.Is(err, fsm.ErrStreamTombstoned) {
				return err
			}
			failures++
			sub.s.subs.readRetries.Add(1)
			sub.s.log.Warn("subscription read failed while the watermark moved; retrying", "stream", sub.name(),
				"next", sub.next, "attempt", failures, "error", err)
			continue
		}
		failures = 0
		now := time.Now()
		if sub.sentInStep {
			sub.lastSent, sub.sentInStep = now, false
		}
		if more {
			if sub.caughtUp && backlog > uint64(cfg.FellBehindRecords) {
				if err := sub.fellBehind(w); err != nil {
					return err
				}
			}
			if err := sub.checkpointDue(now); err != nil {
				return err
			}
			continue
		}
		if !sub.caughtUp {
			if err := sub.sendCaughtUp(); err != nil {
				return err
			}
		}
		// Nothing left below the watermark: wait for it to move, sending checkpoints and
		// heartbeats as they fall due.
		for waiting := true; waiting; {
			now := time.Now()
			if err := sub.checkpointDue(now); err != nil {
				return err
			}
			if err := sub.heartbeatDue(now); err != nil {
				return err
			}
			if err := sub.staleDue(ctx, now); err != nil {
				return err
			}
			wait := sub.nextDue(now)
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-w.Changed:
				waiting = false
			case <-timer.C:
			case <-sub.drain:
				return errDraining()
			case <-ctx.Done():
				return ctx.Err()
			}
			timer.Stop()
		}
	}
}

// nextDue is how long the wait may last before a checkpoint, heartbeat or staleness check is due.
func (sub *subscription) nextDue(now time.Time) time.Duration {
	d := sub.lastSent.Add(sub.p.heartbeat).Sub(now)
	if sub.scanned > sub.announced {
		d = min(d, sub.lastCheckpoint.Add(sub.p.checkpoint).Sub(now))
	}
	if sub.p.opts.Consistency == cluster.Stale && sub.p.opts.MaxStaleness > 0 {
		d = min(d, sub.lastStaleCheck.Add(sub.p.checkpoint).Sub(now))
	}
	return max(d, time.Millisecond)
}

// fellBehind tells a live subscriber it is far behind; caught_up follows when it is not.
func (sub *subscription) fellBehind(w fsm.Watermark) error {
	m := &cairnpb.SubscribeResponse{Kind: &cairnpb.SubscribeResponse_FellBehind_{FellBehind: &cairnpb.SubscribeResponse_FellBehind{
		Position: sub.scanned, LastPosition: w.LastPosition}}}
	if err := sub.send(m); err != nil {
		return err
	}
	sub.lastSent = time.Now()
	sub.caughtUp = false
	sub.announced = max(sub.announced, sub.scanned)
	sub.s.subs.fellBehind.Add(1)
	sub.s.log.Debug("subscriber fell behind", "stream", sub.name(), "position", sub.scanned, "last_position", w.LastPosition)
	return nil
}

func isClosedChan(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// step reads and sends one page at or below the watermark w. more reports that records remain
// below w; backlog estimates how far behind w the subscriber is.
func (sub *subscription) step(w fsm.Watermark) (more bool, backlog uint64, err error) {
	if sub.p.stream == "" {
		return sub.stepAll(w)
	}
	return sub.stepStream(w)
}

func (sub *subscription) stepAll(w fsm.Watermark) (bool, uint64, error) {
	if sub.next > w.LastPosition {
		return false, 0, nil
	}
	if sub.caughtUp {
		// Live: the records every live subscriber needs next are read and converted once.
		recs, ok, err := sub.s.subs.tail.read(sub.store, sub.next, w.LastPosition, tailFillPage)
		if err != nil {
			return false, 0, fmt.Errorf("subscribe: %w", err)
		}
		if ok && len(recs) > 0 {
			for i := range recs {
				cr := &recs[i]
				if !fsm.SystemRecord(cr.rec.Kind) && (sub.match == nil || sub.match(&cr.rec)) {
					if err := sub.queuePB(cr.pb, cr.size, cr.rec.Index); err != nil {
						return false, 0, err
					}
				}
				sub.next, sub.scanned = cr.rec.Position+1, cr.rec.Position
			}
			if err := sub.flush(); err != nil {
				return false, 0, err
			}
			return sub.next <= w.LastPosition, w.LastPosition - sub.scanned, nil
		}
	}
	n := int(min(uint64(readPageSize), w.LastPosition-sub.next+1))
	page, err := sub.store.ReadAll(sub.next, fsm.Forward, n)
	if err != nil {
		return false, 0, fmt.Errorf("subscribe: read $all from %d: %w", sub.next, err)
	}
	if len(page) == 0 {
		return false, 0, fmt.Errorf("subscribe: read $all from %d returned nothing below the last position %d", sub.next, w.LastPosition)
	}
	if first := page[0].Position; first != sub.next {
		// Positions are dense and never removed today; should history ever start later than
		// asked (a snapshot without it), say so rather than skip silently.
		sub.s.subs.skipped.Add(1)
		sub.s.log.Warn("subscription skips positions that are no longer stored", "stream", sub.name(),
			"from", sub.next, "first_stored", first)
	}
	for i := range page {
		r := &page[i]
		if r.Position > w.LastPosition {
			break
		}
		// Compaction markers and redacted events hold positions but no event: skipped, and
		// the checkpoint moves past them.
		if !fsm.SystemRecord(r.Kind) && (sub.match == nil || sub.match(r)) {
			if err := sub.queueEvent(r); err != nil {
				return false, 0, err
			}
		}
		sub.next, sub.scanned = r.Position+1, r.Position
	}
	if err := sub.flush(); err != nil {
		return false, 0, err
	}
	return sub.next <= w.LastPosition, w.LastPosition - sub.scanned, nil
}

func (sub *subscription) stepStream(w fsm.Watermark) (bool, uint64, error) {
	name := sub.p.stream
	info := sub.store.Stream(name)
	if info.Tombstoned {
		return false, 0, fmt.Errorf("subscribe to %q: %w", name, fsm.ErrStreamTombstoned)
	}
	if !info.Exists || sub.next > info.LastRevision {
		// Every event of the stream up to the watermark has been delivered (or is before the
		// start point); a stream that does not exist yet is waited for.
		sub.scanned = max(sub.scanned, w.LastPosition)
		return false, 0, nil
	}
	page, err := sub.store.ReadStream(name, sub.next, fsm.Forward, readPageSize)
	switch {
	case errors.Is(err, fsm.ErrStreamNotFound):
		return false, 0, nil
	case err != nil:
		return false, 0, fmt.Errorf("subscribe: read %q from revision %d: %w", name, sub.next, err)
	}
	for i := range page {
		r := &page[i]
		if r.Position > w.LastPosition {
			// Applied after this watermark: the next round, under a newer one, sends it.
			return false, 0, sub.flush()
		}
		if sub.match == nil || sub.match(r) {
			if err := sub.queueEvent(r); err != nil {
				return false, 0, err
			}
		}
		sub.next, sub.scanned = r.Revision+1, r.Position
	}
	if err := sub.flush(); err != nil {
		return false, 0, err
	}
	if len(page) < readPageSize {
		sub.scanned = max(sub.scanned, w.LastPosition)
		return false, 0, nil
	}
	var backlog uint64
	if info.LastRevision >= sub.next {
		backlog = info.LastRevision - sub.next + 1
	}
	return true, backlog, nil
}
