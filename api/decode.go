package api

import (
	"context"
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Request decoding. gRPC decodes a request before any handler or interceptor runs, and answers a
// decoding failure (malformed wire data, invalid UTF-8 in a proto3 string) with a bare INTERNAL:
// the client cannot tell its own bad input from a server bug. The service therefore decodes its
// requests itself: the server codec (serverCodec, installed by ServerOptions) hands the raw bytes
// of a request to the service's wrapped handlers (decodingDesc, installed by Register), which
// unmarshal them and answer a failure with INVALID_ARGUMENT and a BadRequest naming the field.

// Field violation reason for request bytes that are not a valid protobuf message.
const violationMalformed = "MALFORMED"

// rawFrame receives a request's bytes undecoded from serverCodec. It is also a protobuf message
// without fields (the embedded Empty), so on a server built without ServerOptions gRPC's own codec
// decodes the request into it as unknown fields, which hold the same bytes: the service still
// works there, only malformed wire data is then gRPC's INTERNAL.
type rawFrame struct {
	emptypb.Empty
	b   []byte
	raw bool // b was set by serverCodec
}

// bytes returns the request's wire bytes.
func (f *rawFrame) bytes() []byte {
	if f.raw {
		return f.b
	}
	return f.ProtoReflect().GetUnknown()
}

// serverCodec is the proto codec, except that it passes a request's bytes through undecoded to a
// *rawFrame.
type serverCodec struct{ inner encoding.CodecV2 }

func newServerCodec() serverCodec { return serverCodec{inner: encoding.GetCodecV2("proto")} }

// Name is "proto": the codec replaces gRPC's own for the content type clients send.
func (serverCodec) Name() string { return "proto" }

// Marshal encodes responses with the proto codec.
func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) { return c.inner.Marshal(v) }

// Unmarshal copies the bytes into a *rawFrame, and decodes into anything else with the proto
// codec (services other than Cairn's: health, reflection).
func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*rawFrame); ok {
		f.b, f.raw = data.Materialize(), true
		return nil
	}
	return c.inner.Unmarshal(data, v)
}

// decodingDesc returns a copy of desc whose handlers decode requests with s.decode, and, with
// auth enabled, refuse calls that did not pass the auth interceptor and authorise stream
// requests (auth.go).
func (s *Service) decodingDesc(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i := range d.Methods {
		h, name := d.Methods[i].Handler, d.Methods[i].MethodName
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error { return s.decode(ctx, name, dec, v) }, s.guardUnary(ic))
		}
	}
	d.Streams = slices.Clone(desc.Streams)
	for i := range d.Streams {
		h, name := d.Streams[i].Handler, "/"+desc.ServiceName+"/"+d.Streams[i].StreamName
		d.Streams[i].Handler = func(srv any, ss grpc.ServerStream) error {
			return h(srv, &decodingStream{ServerStream: ss, s: s, name: name})
		}
	}
	return &d
}

// decodingStream decodes the messages a stream handler receives with Service.decode.
type decodingStream struct {
	grpc.ServerStream
	s    *Service
	name string
}

// RecvMsg receives the next request, decodes it with Service.decode and authorises it
// (auth.go).
func (d *decodingStream) RecvMsg(m any) error {
	if err := d.s.decode(d.Context(), d.name, d.ServerStream.RecvMsg, m); err != nil {
		return err
	}
	return d.s.authorizeStreamMsg(d.Context(), d.name, m)
}

// decode receives one request with recv (into a rawFrame) and unmarshals it into v. A request
// that does not decode is INVALID_ARGUMENT (counted and logged by fail). Receive errors (size
// limits, cancellation) pass through.
func (s *Service) decode(ctx context.Context, op string, recv func(any) error, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return recv(v)
	}
	var f rawFrame
	if err := recv(&f); err != nil {
		return err
	}
	b := f.bytes()
	if err := proto.Unmarshal(b, m); err != nil {
		return s.fail(ctx, op, decodeError(b, m.ProtoReflect().Descriptor(), err))
	}
	return nil
}

// decodeError is INVALID_ARGUMENT for request bytes b that failed to unmarshal into a message
// of descriptor md with err: INVALID_UTF8 on the string field at fault when there is one,
// MALFORMED on "request" otherwise.
func decodeError(b []byte, md protoreflect.MessageDescriptor, err error) error {
	var br badRequest
	if field := invalidUTF8Field(b, md, 0); field != "" {
		br.add(field, violationInvalidUTF8, "string field is not valid UTF-8")
	} else {
		br.add("request", violationMalformed, "request is not a valid %s message: %v", md.FullName(), err)
	}
	return br.err()
}

// maxDecodeDepth bounds the recursion of invalidUTF8Field (protobuf's own decoder allows 100).
const maxDecodeDepth = 100

// invalidUTF8Field returns the path (as validation names fields, e.g. "events[2].type") of the
// first string field in the wire bytes b of a message md that is not valid UTF-8, or "".
func invalidUTF8Field(b []byte, md protoreflect.MessageDescriptor, depth int) string {
	if depth > maxDecodeDepth {
		return ""
	}
	seen := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			continue
		}
		name := string(fd.Name())
		if fd.IsList() {
			name = fmt.Sprintf("%s[%d]", name, seen[num])
			seen[num]++
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name
			}
		case protoreflect.MessageKind:
			if sub := invalidUTF8Field(v, fd.Message(), depth+1); sub != "" {
				return name + "." + sub
			}
		}
	}
	return ""
}
