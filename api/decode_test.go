package api

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/api/cairnpb"
)

// rawClientCodec sends a *[]byte as the request's bytes, unencoded, so tests can send what a
// well-behaved client library would refuse to encode, and receives responses as bytes.
type rawClientCodec struct{}

func (rawClientCodec) Name() string { return "proto" }
func (rawClientCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawClientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// withString appends a length-delimited field num holding s to b, with no UTF-8 check.
func withString(b []byte, num protowire.Number, s []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, s)
}

// TestUndecodableRequestIsInvalidArgument: invalid UTF-8 in a proto3 string and malformed wire
// data are the client's fault, so they are INVALID_ARGUMENT naming the field (gRPC's own answer
// is a bare INTERNAL), for unary and streaming calls alike, and nothing is proposed.
func TestUndecodableRequestIsInvalidArgument(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node)
	bad := []byte{'o', 0xff, 'k'}

	event := func(typ []byte) []byte {
		e := withString(nil, 1, []byte(uuidN(1)))
		return withString(e, 2, typ)
	}
	nested := withString(nil, 1, []byte("s"))
	nested = withString(nested, 3, event([]byte("A")))
	nested = withString(nested, 3, event(bad))

	cases := []struct {
		name, method string
		body         []byte
		field        string
		reason       string
	}{
		{"stream name", "/cairn.v1.Events/Append", withString(nil, 1, bad), "stream", violationInvalidUTF8},
		{"nested event type", "/cairn.v1.Events/Append", nested, "events[1].type", violationInvalidUTF8},
		{"read", "/cairn.v1.Events/Read", withString(nil, 1, bad), "stream", violationInvalidUTF8},
		{"malformed", "/cairn.v1.Events/Append", []byte{0xff, 0xff, 0xff}, "request", violationMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out []byte
			err := ts.conn.Invoke(ctxT(t), c.method, &c.body, &out, grpc.ForceCodecV2(rawClientCodec{}))
			st := wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)
			wantField(t, st, c.field, c.reason)
		})
	}
	t.Run("subscribe", func(t *testing.T) {
		desc := &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true}
		cs, err := ts.conn.NewStream(ctxT(t), desc, "/cairn.v1.Events/Subscribe", grpc.ForceCodecV2(rawClientCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		body := withString(nil, 1, bad)
		if err := cs.SendMsg(&body); err != nil {
			t.Fatal(err)
		}
		if err := cs.CloseSend(); err != nil {
			t.Fatal(err)
		}
		var out []byte
		st := wantStatus(t, cs.RecvMsg(&out), codes.InvalidArgument, ReasonInvalidArgument)
		wantField(t, st, "stream", violationInvalidUTF8)
	})
	if node.proposalCount() != 0 {
		t.Fatal("an undecodable request reached Propose")
	}
	if got := ts.svc.Stats().Errors[ReasonInvalidArgument]; got < 5 {
		t.Fatalf("INVALID_ARGUMENT counted %d times, want >= 5", got)
	}
	// A well-formed request still decodes normally through the same path.
	ok, _ := proto.Marshal(&cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{evt(1, "A")}})
	var out []byte
	if err := ts.conn.Invoke(ctxT(t), "/cairn.v1.Events/Append", &ok, &out, grpc.ForceCodecV2(rawClientCodec{})); err != nil {
		t.Fatalf("valid raw append: %v", err)
	}
	var resp cairnpb.AppendResponse
	if err := proto.Unmarshal(out, &resp); err != nil || resp.GetLastPosition() != 1 {
		t.Fatalf("response %v, err %v", &resp, err)
	}
}
