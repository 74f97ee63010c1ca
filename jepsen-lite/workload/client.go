// Package workload generates jepsen-lite's client traffic and records it: every request is an
// invoke record before it is sent and a completion record (ok, fail or info) after its answer,
// classified by Classify. Workloads: streams (per-stream appends with expected revisions and
// linearizable reads on a few hot, rotated streams), global (many-stream appends, $all tailing,
// final drain), follower (streams plus STALE reads with min_log_index on every node); all of them
// retry appends of unknown outcome with the same event ids.
package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/jepsen-lite/driver"
	"github.com/cairndb/cairn/jepsen-lite/history"
)

// errorDomain is the Domain of Cairn's ErrorInfo details.
const errorDomain = "cairn.dev"

// Classify maps an RPC error to a history type and reason, never guessing "fail": an error is a
// definite failure only when the server says the request was not applied (wrong expected
// revision, invalid request, tombstoned, not leader / no leader — the node did not propose it).
// Everything else is info for writes: OUTCOME_UNKNOWN, deadlines, shutdown, INTERNAL, and every
// error without a Cairn ErrorInfo (transport failures, the client's own deadline), because the
// request may have been processed. For reads the distinction does not matter (a read has no
// effect): failed reads are fail, except STREAM_NOT_FOUND, which is an answer (an empty stream)
// and is returned as ok with reason set.
func Classify(err error, write bool) (history.Type, string) {
	if err == nil {
		return history.OK, ""
	}
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			st = status.New(codes.DeadlineExceeded, err.Error())
		} else {
			st = status.New(codes.Unknown, err.Error())
		}
	}
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			reason = info.GetReason()
		}
	}
	if reason == "" {
		reason = history.ReasonTransport + st.Code().String()
	}
	if !write {
		if reason == history.ReasonStreamNotFound {
			return history.OK, reason
		}
		return history.Fail, reason
	}
	switch reason {
	case history.ReasonWrongExpectedRevision, history.ReasonStreamTombstoned, history.ReasonEventIDConflict,
		history.ReasonInvalidArgument, history.ReasonInvalidCommand, history.ReasonLimitExceeded,
		history.ReasonNotLeader, history.ReasonNoLeader:
		return history.Fail, reason
	}
	return history.Info, reason
}

// conflictLength extracts the stream length a WRONG_EXPECTED_REVISION reported (-1 if none).
func conflictLength(err error) int64 {
	st, ok := status.FromError(err)
	if !ok {
		return -1
	}
	for _, d := range st.Details() {
		if w, ok := d.(*cairnpb.WrongExpectedRevision); ok && len(w.GetViolations()) > 0 {
			v := w.GetViolations()[0]
			if !v.GetStreamExists() {
				return 0
			}
			return int64(v.GetActualRevision()) + 1
		}
	}
	return -1
}

// Env is what clients share: the recorder, the cluster, the run's event-id nonce and timeouts.
type Env struct {
	Rec    *history.Recorder
	Driver driver.Driver
	// Nonce marks this run's event ids.
	Nonce uint32
	// OpTimeout bounds one request (default 2 s).
	OpTimeout time.Duration

	nextProcess atomic.Int64
	mu          sync.Mutex
	streams     map[string]bool
}

func (e *Env) newProcess() int { return int(e.nextProcess.Add(1) - 1) }

// touch remembers that stream was written to, for the final reads.
func (e *Env) touch(stream string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.streams == nil {
		e.streams = map[string]bool{}
	}
	e.streams[stream] = true
}

// Streams returns every stream an append was attempted on.
func (e *Env) Streams() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.streams))
	for s := range e.streams {
		out = append(out, s)
	}
	return out
}

// Client is one worker's connection to the history: a logical process that performs one
// operation at a time and is replaced by a fresh process after every info.
type Client struct {
	env     *Env
	process int
	slot    int
	counter uint32
	// Final marks every record of this client as part of the final phase.
	Final bool
	rng   *rand.Rand
}

// NewClient returns a client for worker slot (the writer recorded in its event ids).
func (e *Env) NewClient(slot int, seed uint64) *Client {
	return &Client{env: e, process: e.newProcess(), slot: slot, rng: rand.New(rand.NewPCG(seed, uint64(slot)))}
}

// NextIDs returns n fresh event ids.
func (c *Client) NextIDs(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		c.counter++
		out[i] = history.MakeID(c.slot, c.counter)
	}
	return out
}

func (c *Client) invoke(op history.Op) history.Op {
	op.Process, op.Type, op.Final = c.process, history.Invoke, c.Final
	return c.env.Rec.Add(op)
}

func (c *Client) complete(inv history.Op, out history.Op) history.Op {
	out.Process, out.F, out.Node, out.Stream, out.Final = inv.Process, inv.F, inv.Node, inv.Stream, c.Final
	rec := c.env.Rec.Add(out)
	if out.Type == history.Info {
		c.process = c.env.newProcess()
	}
	return rec
}

func (c *Client) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	t := c.env.OpTimeout
	if t <= 0 {
		t = 2 * time.Second
	}
	return context.WithTimeout(parent, t)
}

func (c *Client) events(node string) cairnpb.EventsClient {
	return cairnpb.NewEventsClient(c.env.Driver.Conn(node))
}

// Append appends ids to stream on node if expected holds (history.ExpectAny: no condition;
// n >= 0: the stream has n events). attempt > 0 marks a retry of the same ids.
func (c *Client) Append(parent context.Context, node, stream string, expected int64, ids []uint64, attempt int) history.Op {
	c.env.touch(stream)
	inv := c.invoke(history.Op{F: history.Append, Node: node, Stream: stream, Expected: expected, Events: ids, Attempt: attempt})
	req := &cairnpb.AppendRequest{Stream: stream, Expected: expectedPB(expected)}
	for _, id := range ids {
		req.Events = append(req.Events, &cairnpb.EventData{Id: history.FormatID(c.env.Nonce, id), Type: "jepsen",
			ContentType: "application/octet-stream", Data: []byte(history.IDString(id))})
	}
	ctx, cancel := c.ctx(parent)
	resp, err := c.events(node).Append(ctx, req)
	cancel()
	typ, reason := Classify(err, true)
	out := history.Op{Type: typ, Error: reason}
	if err != nil {
		out.Value = truncate(status.Convert(err).Message(), 200)
		if reason == history.ReasonWrongExpectedRevision {
			out.Version = conflictLength(err)
		}
		return c.complete(inv, out)
	}
	out.Version = int64(resp.GetLastRevision()) + 1
	out.Positions = []uint64{resp.GetFirstPosition(), resp.GetLastPosition()}
	out.LogIndex, out.Idempotent = resp.GetLogIndex(), resp.GetIdempotent()
	if got := resp.GetLastRevision() - resp.GetFirstRevision() + 1; int(got) != len(ids) {
		out.Value = fmt.Sprintf("malformed: acknowledged revisions %d..%d for %d events", resp.GetFirstRevision(), resp.GetLastRevision(), len(ids))
	}
	return c.complete(inv, out)
}

func expectedPB(expected int64) *cairnpb.ExpectedRevision {
	switch {
	case expected == history.ExpectAny:
		return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_ANY}
	case expected == 0:
		return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_NO_STREAM}
	default:
		return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_EXACT, Revision: uint64(expected - 1)}
	}
}

var linearizable = &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_LINEARIZABLE}

// readStream reads a whole stream with opts, page by page if needed (only final reads need
// more than one page; a multi-page read is not atomic, so other reads record End=false).
func (c *Client) readStream(ctx context.Context, node, stream string, opts *cairnpb.ReadOptions, allPages bool) (history.Op, error) {
	var out history.Op
	from := uint64(0)
	for page := 0; page < 1000; page++ {
		resp, err := c.events(node).Read(ctx, &cairnpb.ReadRequest{Stream: stream, FromRevision: from, Limit: 10000, Options: opts})
		if err != nil {
			return out, err
		}
		out.ServedBy, out.Applied = resp.GetServedBy().GetNodeId(), resp.GetServedBy().GetAppliedIndex()
		out.LastContact = resp.GetServedBy().GetLastContact().AsDuration().Nanoseconds()
		for i, e := range resp.GetEvents() {
			if want := from + uint64(i); e.GetRevision() != want && out.Value == "" {
				out.Value = fmt.Sprintf("malformed: event %d of the read has revision %d, want %d", len(out.Events), e.GetRevision(), want)
			}
			out.Events = append(out.Events, history.ParseID(c.env.Nonce, e.GetId()))
		}
		out.End = resp.GetEndOfStream()
		if out.End || len(resp.GetEvents()) == 0 || !allPages {
			break
		}
		from += uint64(len(resp.GetEvents()))
	}
	out.Version = int64(len(out.Events))
	return out, nil
}

// Read is a LINEARIZABLE read of a whole stream through node.
func (c *Client) Read(parent context.Context, node, stream string) history.Op {
	return c.read(parent, history.Read, node, stream, linearizable, 0)
}

// FinalRead is the final LINEARIZABLE read of a whole stream (all pages).
func (c *Client) FinalRead(parent context.Context, node, stream string) history.Op {
	return c.read(parent, history.FinalRead, node, stream, linearizable, 0)
}

// FollowerRead is a STALE read of a whole stream on node, waiting for minLogIndex if non-zero.
func (c *Client) FollowerRead(parent context.Context, node, stream string, minLogIndex uint64) history.Op {
	return c.read(parent, history.FollowerRead, node, stream,
		&cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_STALE, MinLogIndex: minLogIndex}, minLogIndex)
}

func (c *Client) read(parent context.Context, f, node, stream string, opts *cairnpb.ReadOptions, minLogIndex uint64) history.Op {
	inv := c.invoke(history.Op{F: f, Node: node, Stream: stream, MinLogIndex: minLogIndex})
	ctx, cancel := c.ctx(parent)
	out, err := c.readStream(ctx, node, stream, opts, f == history.FinalRead)
	cancel()
	typ, reason := Classify(err, false)
	if err != nil {
		if reason == history.ReasonStreamNotFound {
			return c.complete(inv, history.Op{Type: history.OK, End: true, Error: reason})
		}
		return c.complete(inv, history.Op{Type: typ, Error: reason, Value: truncate(status.Convert(err).Message(), 200)})
	}
	out.Type = history.OK
	return c.complete(inv, out)
}

// Head is a LINEARIZABLE read of a stream's last event.
func (c *Client) Head(parent context.Context, node, stream string) history.Op {
	inv := c.invoke(history.Op{F: history.Head, Node: node, Stream: stream})
	ctx, cancel := c.ctx(parent)
	resp, err := c.events(node).Read(ctx, &cairnpb.ReadRequest{Stream: stream, FromEnd: true,
		Direction: cairnpb.Direction_DIRECTION_BACKWARD, Limit: 1, Options: linearizable})
	cancel()
	typ, reason := Classify(err, false)
	if err != nil {
		if reason == history.ReasonStreamNotFound {
			return c.complete(inv, history.Op{Type: history.OK, Error: reason})
		}
		return c.complete(inv, history.Op{Type: typ, Error: reason, Value: truncate(status.Convert(err).Message(), 200)})
	}
	out := history.Op{Type: history.OK, ServedBy: resp.GetServedBy().GetNodeId(), Applied: resp.GetServedBy().GetAppliedIndex()}
	if ev := resp.GetEvents(); len(ev) > 0 {
		out.Version = int64(ev[0].GetRevision()) + 1
		out.LastID = history.ParseID(c.env.Nonce, ev[0].GetId())
	}
	return c.complete(inv, out)
}

func records(nonce uint32, evs []*cairnpb.RecordedEvent) []history.Record {
	out := make([]history.Record, len(evs))
	for i, e := range evs {
		out[i] = history.Record{ID: history.ParseID(nonce, e.GetId()), Stream: e.GetStream(), Revision: e.GetRevision(), Position: e.GetPosition()}
	}
	return out
}

// ReadAllPage reads one page of $all from position from on node.
func (c *Client) ReadAllPage(parent context.Context, node string, from uint64, linear bool, limit uint32) history.Op {
	inv := c.invoke(history.Op{F: history.ReadAll, Node: node, From: from, Value: consistencyName(linear)})
	opts := &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_STALE}
	if linear {
		opts = linearizable
	}
	ctx, cancel := c.ctx(parent)
	resp, err := c.events(node).ReadAll(ctx, &cairnpb.ReadAllRequest{FromPosition: from, Limit: limit, Options: opts})
	cancel()
	typ, reason := Classify(err, false)
	if err != nil {
		return c.complete(inv, history.Op{Type: typ, Error: reason, Value: truncate(status.Convert(err).Message(), 200)})
	}
	return c.complete(inv, history.Op{Type: history.OK, Records: records(c.env.Nonce, resp.GetEvents()), End: resp.GetEndOfLog(),
		ServedBy: resp.GetServedBy().GetNodeId(), Applied: resp.GetServedBy().GetAppliedIndex()})
}

func consistencyName(linear bool) string {
	if linear {
		return "linearizable"
	}
	return "stale"
}

// Tail is a LINEARIZABLE read of $all's last position (Version).
func (c *Client) Tail(parent context.Context, node string) history.Op {
	inv := c.invoke(history.Op{F: history.Tail, Node: node})
	ctx, cancel := c.ctx(parent)
	resp, err := c.events(node).ReadAll(ctx, &cairnpb.ReadAllRequest{FromEnd: true, Direction: cairnpb.Direction_DIRECTION_BACKWARD,
		Limit: 1, Options: linearizable})
	cancel()
	typ, reason := Classify(err, false)
	if err != nil {
		return c.complete(inv, history.Op{Type: typ, Error: reason, Value: truncate(status.Convert(err).Message(), 200)})
	}
	out := history.Op{Type: history.OK, ServedBy: resp.GetServedBy().GetNodeId()}
	if ev := resp.GetEvents(); len(ev) > 0 {
		out.Version = int64(ev[0].GetPosition())
	}
	return c.complete(inv, out)
}

// Drain reads all of $all from node with a STALE read that first waits for minLogIndex. The
// reference drain is the one the checkers treat as the truth of the global log.
func (c *Client) Drain(parent context.Context, node string, minLogIndex uint64, reference bool, timeout time.Duration) history.Op {
	v := ""
	if reference {
		v = "reference"
	}
	inv := c.invoke(history.Op{F: history.Drain, Node: node, MinLogIndex: minLogIndex, Value: v})
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var out history.Op
	from := uint64(1)
	for page := 0; page < 100000; page++ {
		resp, err := c.events(node).ReadAll(ctx, &cairnpb.ReadAllRequest{FromPosition: from, Limit: 10000,
			Options: &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_STALE, MinLogIndex: minLogIndex}},
			grpc.WaitForReady(true))
		if err != nil {
			typ, reason := Classify(err, false)
			return c.complete(inv, history.Op{Type: typ, Error: reason, Value: truncate(status.Convert(err).Message(), 200)})
		}
		out.Records = append(out.Records, records(c.env.Nonce, resp.GetEvents())...)
		out.ServedBy, out.Applied = resp.GetServedBy().GetNodeId(), resp.GetServedBy().GetAppliedIndex()
		if resp.GetEndOfLog() || len(resp.GetEvents()) == 0 {
			out.End = true
			break
		}
		from = resp.GetEvents()[len(resp.GetEvents())-1].GetPosition() + 1
	}
	out.Type = history.OK
	out.Version = int64(len(out.Records))
	return c.complete(inv, out)
}

// Digest asks node for Cluster.Digest up to position upTo.
func (c *Client) Digest(parent context.Context, node string, upTo uint64) history.Op {
	inv := c.invoke(history.Op{F: history.Digest, Node: node, From: upTo})
	ctx, cancel := c.ctx(parent)
	resp, err := cairnpb.NewClusterClient(c.env.Driver.Conn(node)).Digest(ctx, &cairnpb.DigestRequest{UpToPosition: upTo})
	cancel()
	typ, reason := Classify(err, false)
	if err != nil {
		return c.complete(inv, history.Op{Type: typ, Error: reason, Value: truncate(status.Convert(err).Message(), 200)})
	}
	return c.complete(inv, history.Op{Type: history.OK, Digest: resp.GetSha256(), Version: int64(resp.GetLastPosition()),
		LogIndex: resp.GetAppliedIndex()})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
