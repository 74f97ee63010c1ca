package api_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api"
	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/testcluster"
)

// FuzzRequest sends fuzzed request bytes to every Events RPC and the read-only Cluster RPCs of a
// real single-node cluster (raft, state machine, gRPC server) in this process (issue 9, "Hostile
// input"). The first input selects the method, the second is the request's wire bytes, sent
// undecoded, so the server's own decoding is fuzzed too. Properties:
//
//   - the node does not panic (a panic in a handler would end this test process);
//   - no request gets INTERNAL, UNKNOWN or DATA_LOSS: bad input is the client's fault and is
//     answered as such (DESIGN §6);
//   - a write that fails changes nothing: the log's last position is the same before and after.
//
// The seeds are testdata/fuzz/FuzzRequest (regenerate with CAIRN_WRITE_FUZZ_CORPUS=1, see
// TestWriteRequestCorpus); `make fuzz` explores for a bounded time.
func FuzzRequest(f *testing.F) {
	// Small limits make every limit branch reachable with small inputs.
	limits := api.Config{MaxEventBytes: 1 << 10, MaxRequestBytes: 8 << 10, MaxEventsPerAppend: 8, MaxStreamNameBytes: 32}
	c := testcluster.NewWithOptions(f, 1, testcluster.Options{API: limits, LogLevel: slog.LevelError})
	node := c.Nodes[0]
	conn, err := grpc.NewClient(node.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = conn.Close() })
	f.Add(uint8(0), []byte{0x0a, 0x01, 0xff}) // Append, stream "\xff"
	f.Fuzz(func(t *testing.T, sel uint8, body []byte) {
		m := fuzzMethods[int(sel)%len(fuzzMethods)]
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		before := node.FSM().LastPosition()
		var err error
		if m.stream {
			err = subscribeOnce(ctx, conn, m.name, body)
		} else {
			var out []byte
			err = conn.Invoke(ctx, m.name, &body, &out)
		}
		switch status.Code(err) {
		case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
			t.Fatalf("%s(%x): %v", m.name, body, err)
		}
		if m.write && err != nil {
			if after := node.FSM().LastPosition(); after != before {
				t.Fatalf("%s(%x) failed with %v but moved the log from position %d to %d", m.name, body, err, before, after)
			}
		}
	})
}

type fuzzMethod struct {
	name          string
	write, stream bool
}

// fuzzMethods are the RPCs FuzzRequest calls. Membership changes, leadership transfer and
// snapshots are left out: a fuzzed RemoveServer would legitimately take the one node away.
var fuzzMethods = []fuzzMethod{
	{name: "/cairn.v1.Events/Append", write: true},
	{name: "/cairn.v1.Events/AppendMulti", write: true},
	{name: "/cairn.v1.Events/Read"},
	{name: "/cairn.v1.Events/ReadAll"},
	{name: "/cairn.v1.Events/Tombstone", write: true},
	{name: "/cairn.v1.Events/GetStreamInfo"},
	{name: "/cairn.v1.Events/Subscribe", stream: true},
	{name: "/cairn.v1.Cluster/Status"},
	{name: "/cairn.v1.Cluster/Digest"},
	{name: "/cairn.v1.Auth/CreateToken", write: true},
	{name: "/cairn.v1.Auth/ListTokens"},
	{name: "/cairn.v1.Auth/RevokeToken", write: true},
}

// subscribeOnce opens a subscription with request body and waits for its first message or
// error. A subscription that is accepted and then cut by our cancel is fine.
func subscribeOnce(ctx context.Context, conn *grpc.ClientConn, method string, body []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return err
	}
	if err := cs.SendMsg(&body); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	var out []byte
	if err := cs.RecvMsg(&out); err != nil && status.Code(err) != codes.DeadlineExceeded {
		return err
	}
	return nil
}

// rawCodec sends a *[]byte as the request's wire bytes and receives responses as bytes.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// requestSeeds are valid and nearly valid requests for each method of fuzzMethods, by index.
func requestSeeds() map[uint8][]proto.Message {
	ev := func(id, typ string) *cairnpb.EventData {
		return &cairnpb.EventData{Id: id, Type: typ, ContentType: "application/json", Data: []byte(`{}`),
			Metadata: []byte("m"), Tags: []string{"t"}}
	}
	id1, id2 := "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
	exact := &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_EXACT, Revision: 0}
	stale := &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_STALE, MaxStaleness: durationpb.New(time.Second)}
	filter := &cairnpb.Filter{StreamPrefixes: []string{"orders-"}, EventTypes: []string{"A"}, Tags: []string{"t"}}
	return map[uint8][]proto.Message{
		0: {
			&cairnpb.AppendRequest{Stream: "orders-1", Events: []*cairnpb.EventData{ev(id1, "A")}},
			&cairnpb.AppendRequest{Stream: "orders-1", Expected: exact, Events: []*cairnpb.EventData{ev(id2, "B")}},
			&cairnpb.AppendRequest{Stream: "$sys", Events: []*cairnpb.EventData{ev("", "A")}},
			&cairnpb.AppendRequest{Stream: "x", Events: []*cairnpb.EventData{ev("not-a-uuid", "")}},
			&cairnpb.AppendRequest{Stream: "big", Events: []*cairnpb.EventData{{Type: "A", Data: bytes.Repeat([]byte("x"), 1<<10+1)}}},
		},
		1: {&cairnpb.AppendMultiRequest{Appends: []*cairnpb.StreamAppend{
			{Stream: "a", Events: []*cairnpb.EventData{ev("", "A")}},
			{Stream: "b", Expected: &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_NO_STREAM}},
		}}},
		2: {
			&cairnpb.ReadRequest{Stream: "orders-1", Limit: 10},
			&cairnpb.ReadRequest{Stream: "orders-1", FromEnd: true, Direction: cairnpb.Direction_DIRECTION_BACKWARD, Options: stale},
		},
		3: {
			&cairnpb.ReadAllRequest{Limit: 5, Filter: filter},
			&cairnpb.ReadAllRequest{FromEnd: true, Direction: cairnpb.Direction_DIRECTION_BACKWARD, StopAtPosition: 3},
		},
		4: {&cairnpb.TombstoneRequest{Stream: "a", Expected: exact}},
		5: {&cairnpb.GetStreamInfoRequest{Stream: "orders-1", Options: stale}},
		6: {
			&cairnpb.SubscribeRequest{Stream: "orders-1", FromStart: true},
			&cairnpb.SubscribeRequest{Stream: "$all", FromEnd: true, Filter: filter},
		},
		7: {&cairnpb.StatusRequest{}},
		8: {&cairnpb.DigestRequest{}},
		9: {
			&cairnpb.CreateTokenRequest{Role: cairnpb.Role_ROLE_WRITER, Prefixes: []string{"orders-"}, Name: "w"},
			&cairnpb.CreateTokenRequest{Role: cairnpb.Role_ROLE_UNSPECIFIED, Prefixes: []string{""}},
		},
		10: {&cairnpb.ListTokensRequest{}},
		11: {&cairnpb.RevokeTokenRequest{Id: id1}},
	}
}

// TestWriteRequestCorpus regenerates testdata/fuzz/FuzzRequest from requestSeeds. It only runs
// with CAIRN_WRITE_FUZZ_CORPUS=1.
func TestWriteRequestCorpus(t *testing.T) {
	if os.Getenv("CAIRN_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set CAIRN_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz/FuzzRequest")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzRequest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for sel, msgs := range requestSeeds() {
		for i, m := range msgs {
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%q)\n", sel, b)
			name := filepath.Join(dir, fmt.Sprintf("seed-%d-%d", sel, i))
			if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
