package api

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
)

// ForwardedMetadataKey is the gRPC metadata key that marks a request forwarded by a follower; its
// value is the forwarding node's id. A node that receives a marked request never forwards it
// again: forwarding is one hop, so a stale view of the leader cannot make requests loop.
const ForwardedMetadataKey = "cairn-forwarded"

var errForwarderClosed = errors.New("api: service closed")

// connPool holds one client connection per leader address.
type connPool struct {
	dial Dialer

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newConnPool(dial Dialer) *connPool {
	return &connPool{dial: dial, conns: make(map[string]*grpc.ClientConn)}
}

// get returns the pooled connection to addr, dialing one if there is none.
func (p *connPool) get(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errForwarderClosed
	}
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := p.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dial leader %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// drop closes and forgets c if it is still the pooled connection to addr, so the next get dials
// afresh. A connection to a leader that restarted can stay broken (in reconnect backoff) long
// after the leader is back; rqlite met this in production.
func (p *connPool) drop(addr string, c *grpc.ClientConn) bool {
	p.mu.Lock()
	if p.conns[addr] != c {
		p.mu.Unlock()
		return false
	}
	delete(p.conns, addr)
	p.mu.Unlock()
	_ = c.Close()
	return true
}

// close closes every pooled connection; later gets fail.
func (p *connPool) close() error {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	var errs []error
	for addr, c := range conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// forwardedBy returns the id of the node that forwarded this request, "" if it came from a
// client.
func forwardedBy(ctx context.Context) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ""
	}
	if v := md.Get(ForwardedMetadataKey); len(v) > 0 {
		if v[0] == "" {
			return "unknown"
		}
		return v[0]
	}
	return ""
}

// forwardTarget decides whether a failed Propose or ReadFence should be forwarded, and to which
// address. It forwards only a *cluster.NotLeaderError that names a leader, for a request that
// did not set require_leader and was not itself forwarded.
func (s *Service) forwardTarget(ctx context.Context, op string, err error, requireLeader bool) (string, bool) {
	var nl *cluster.NotLeaderError
	if !errors.As(err, &nl) || requireLeader || nl.LeaderAddr == "" {
		return "", false
	}
	if by := forwardedBy(ctx); by != "" {
		s.stats.forwardRefused.Add(1)
		s.log.Warn("not forwarding a forwarded request again", "op", op, "forwarded_by", by,
			"leader_id", nl.LeaderID, "leader_addr", nl.LeaderAddr)
		return "", false
	}
	return nl.LeaderAddr, true
}

// isTransportFailure reports whether a forwarded call failed without an answer from a Cairn
// node: UNAVAILABLE without our ErrorInfo (connection refused, reset, closing transport).
// Statuses that a node produced, including its own UNAVAILABLE NOT_LEADER, are answers and are
// passed to the client unchanged.
func isTransportFailure(st *status.Status) bool {
	return st.Code() == codes.Unavailable && reasonOf(st) == ""
}

// forward sends a request to the leader at addr over the pooled connection and returns its
// answer. On a transport failure it drops the connection and tries once more on a fresh one
// (re-asking the node for the leader's address). When both attempts fail: a write whose request
// may have been sent is OUTCOME_UNKNOWN (it may have been committed; appends are forwarded with
// their event ids filled in, so retrying is safe), anything else is UNAVAILABLE FORWARD_FAILED.
func forward[T proto.Message](ctx context.Context, s *Service, op, addr string, write bool,
	call func(context.Context, cairnpb.EventsClient) (T, error)) (T, error) {
	return forwardConn(ctx, s, op, addr, write, func(ctx context.Context, cc grpc.ClientConnInterface) (T, error) {
		return call(ctx, cairnpb.NewEventsClient(cc))
	})
}

// forwardConn is forward for any service on the leader's connection (Events, Cluster admin).
func forwardConn[T proto.Message](ctx context.Context, s *Service, op, addr string, write bool,
	call func(context.Context, grpc.ClientConnInterface) (T, error)) (T, error) {
	var zero T
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, ForwardedMetadataKey, s.node.ID())
	// The leader authenticates and authorises the forwarded call itself, with the caller's token.
	// A caller authenticated by its client certificate cannot be forwarded as itself (the leader
	// sees this node's certificate), so its identity travels in ForwardedIdentityMetadataKey,
	// which the leader believes only from a node certificate (auth_cert.go).
	md, _ := metadata.FromIncomingContext(ctx)
	if auth := md.Get("authorization"); len(auth) > 0 {
		for _, v := range auth {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
		}
	} else if id, ok := IdentityFrom(ctx); ok {
		ctx = metadata.AppendToOutgoingContext(ctx, ForwardedIdentityMetadataKey, encodeForwardedIdentity(id))
	}
	s.stats.forwarded.Add(1)
	var (
		lastErr   error
		maybeSent bool
	)
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			if ctx.Err() != nil {
				break
			}
			s.stats.forwardRetries.Add(1)
			if _, a := s.node.Leader(); a != "" {
				addr = a
			}
		}
		conn, err := s.pool.get(ctx, addr)
		if err != nil {
			lastErr = err
			if errors.Is(err, errForwarderClosed) {
				break
			}
			continue
		}
		resp, err := call(ctx, conn)
		if err == nil {
			return resp, nil
		}
		st := status.Convert(err)
		if !isTransportFailure(st) {
			if write && maybeSent && st.Code() == codes.Unavailable {
				// An earlier attempt may have reached the leader and may still commit: a "not
				// applied here" answer to the retry (NOT_LEADER, NO_LEADER) does not settle the
				// outcome. (A retried append that did commit would have been recognised by its ids
				// and answered with the original result instead.)
				s.stats.forwardFailures.Add(1)
				return zero, newStatus(codes.Unknown, ReasonOutcomeUnknown,
					fmt.Sprintf("%s (an earlier forward to %s may have been delivered; the retry got: %v)", outcomeUnknownMsg, addr, err),
					nil).Err()
			}
			return zero, err // the leader's answer, or gRPC's own verdict (deadline, limits)
		}
		maybeSent = true
		lastErr = err
		if s.pool.drop(addr, conn) {
			s.stats.connsDropped.Add(1)
		}
		s.log.Warn("forwarding to leader failed", "op", op, "leader_addr", addr, "attempt", attempt+1, "error", err)
	}
	s.stats.forwardFailures.Add(1)
	leaderID, leaderAddr := s.node.Leader()
	if leaderAddr == "" {
		leaderAddr = addr
	}
	s.log.Warn("giving up forwarding to leader", "op", op, "leader_addr", addr, "error", lastErr)
	if errors.Is(lastErr, errForwarderClosed) {
		return zero, newStatus(codes.Unavailable, ReasonShuttingDown, lastErr.Error(), nil).Err()
	}
	if write && maybeSent {
		return zero, newStatus(codes.Unknown, ReasonOutcomeUnknown,
			fmt.Sprintf("%s (forwarding to leader %s failed: %v)", outcomeUnknownMsg, addr, lastErr),
			map[string]string{"leader_id": leaderID, "leader_address": leaderAddr}).Err()
	}
	return zero, newStatus(codes.Unavailable, ReasonForwardFailed,
		fmt.Sprintf("forwarding to leader %s failed: %v", addr, lastErr),
		map[string]string{"leader_id": leaderID, "leader_address": leaderAddr},
		&cairnpb.NotLeader{LeaderId: leaderID, LeaderAddress: leaderAddr}).Err()
}

// fillIDs gives events without an id a fresh random UUID, in place. It is applied to the copy
// of an append that is forwarded, so that the forwarding node's own retry on a fresh connection
// cannot write the events twice.
func fillIDs(events []*cairnpb.EventData) {
	for _, e := range events {
		if e.GetId() == "" {
			e.Id = formatUUID(newUUID())
		}
	}
}
