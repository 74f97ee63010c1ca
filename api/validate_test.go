package api

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
)

// TestInvalidInput checks every validation rule over gRPC and that no invalid request reaches
// Propose.
func TestInvalidInput(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node)
	ctx := ctxT(t)
	one := []*cairnpb.EventData{evt(1, "A")}
	app := func(stream string, events ...*cairnpb.EventData) func() error {
		return func() error {
			_, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: stream, Events: events})
			return err
		}
	}
	multi := func(parts ...*cairnpb.StreamAppend) func() error {
		return func() error {
			_, err := ts.events.AppendMulti(ctx, &cairnpb.AppendMultiRequest{Appends: parts})
			return err
		}
	}
	withID := func(id string) *cairnpb.EventData {
		e := evt(1, "A")
		e.Id = id
		return e
	}
	for _, c := range []struct {
		name   string
		call   func() error
		field  string
		reason string
	}{
		{"empty stream", app("", one...), "stream", violationRequired},
		{"reserved stream", app("$x", one...), "stream", violationReservedPrefix},
		{"control character", app("a\x01b", one...), "stream", violationControlCharacter},
		{"DEL character", app("a\x7fb", one...), "stream", violationControlCharacter},
		{"256 bytes", app(strings.Repeat("x", 256), one...), "stream", violationTooLong},
		{"bad uuid", app("s", withID("not-a-uuid")), "events[0].id", violationInvalidUUID},
		{"uuid without hyphens", app("s", withID("ca00000000000000000000000000000a")), "events[0].id", violationInvalidUUID},
		{"uuid in braces", app("s", withID("{ca000000-0000-0000-0000-00000000000a}")), "events[0].id", violationInvalidUUID},
		{"uuid with bad hex", app("s", withID("ca000000-0000-0000-0000-00000000000g")), "events[0].id", violationInvalidUUID},
		{"nil uuid", app("s", withID("00000000-0000-0000-0000-000000000000")), "events[0].id", violationNilUUID},
		{"duplicate ids", app("s", evt(1, "A"), evt(2, "A"), evt(1, "A")), "events[2].id", violationDuplicate},
		{"empty batch", app("s"), "events", violationRequired},
		{"missing type", app("s", evt(1, "")), "events[0].type", violationRequired},
		{"reserved type", app("s", evt(1, "$tombstone")), "events[0].type", violationReservedPrefix},
		{"empty tag", app("s", evt(1, "A", "ok", "")), "events[0].tags[1]", violationRequired},
		{"bad expected kind", func() error {
			_, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: one,
				Expected: &cairnpb.ExpectedRevision{Kind: 99}})
			return err
		}, "expected.kind", violationInvalidEnum},
		{"revision without exact", func() error {
			_, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: one,
				Expected: &cairnpb.ExpectedRevision{Revision: 5}})
			return err
		}, "expected.revision", violationUnexpectedValue},
		{"multi without parts", multi(), "appends", violationRequired},
		{"multi duplicate streams", multi(&cairnpb.StreamAppend{Stream: "s", Events: one},
			&cairnpb.StreamAppend{Stream: "t"}, &cairnpb.StreamAppend{Stream: "s"}), "appends[2].stream", violationDuplicate},
		{"multi only checks", multi(&cairnpb.StreamAppend{Stream: "s"}, &cairnpb.StreamAppend{Stream: "t"}), "appends", violationRequired},
		{"multi id repeated across parts", multi(&cairnpb.StreamAppend{Stream: "s", Events: one},
			&cairnpb.StreamAppend{Stream: "t", Events: []*cairnpb.EventData{evt(1, "A")}}), "appends[1].events[0].id", violationDuplicate},
		{"multi bad name", multi(&cairnpb.StreamAppend{Stream: "$s", Events: one}), "appends[0].stream", violationReservedPrefix},
		{"read empty stream", func() error {
			_, err := ts.events.Read(ctx, &cairnpb.ReadRequest{})
			return err
		}, "stream", violationRequired},
		{"read bad direction", func() error {
			_, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", Direction: 7})
			return err
		}, "direction", violationInvalidEnum},
		{"read bad consistency", func() error {
			_, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", Options: &cairnpb.ReadOptions{Consistency: 9}})
			return err
		}, "options.consistency", violationInvalidEnum},
		{"read negative staleness", func() error {
			_, err := ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: "s", Options: &cairnpb.ReadOptions{
				Consistency: cairnpb.Consistency_CONSISTENCY_STALE, MaxStaleness: durationpb.New(-1)}})
			return err
		}, "options.max_staleness", violationInvalidDuration},
		{"read all empty filter entry", func() error {
			_, err := ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{StreamPrefixes: []string{"a", ""}}})
			return err
		}, "filter.stream_prefixes[1]", violationRequired},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := wantStatus(t, c.call(), codes.InvalidArgument, ReasonInvalidArgument)
			wantField(t, st, c.field, c.reason)
		})
	}
	if n := node.proposalCount(); n != 0 {
		t.Fatalf("%d invalid requests reached Propose", n)
	}
	if got := ts.svc.Stats().Errors[ReasonInvalidArgument]; got == 0 {
		t.Fatal("invalid arguments not counted")
	}
}

// TestInvalidUTF8 calls the service directly: gRPC's codec refuses invalid UTF-8 in proto3
// strings before the service sees them, but an in-process caller could still pass them.
func TestInvalidUTF8(t *testing.T) {
	node := newFakeNode(t, "n1")
	svc := NewService(node, Config{}, discardLogger())
	defer svc.Close()
	_, err := svc.Append(context.Background(), &cairnpb.AppendRequest{Stream: "a\xffb", Events: []*cairnpb.EventData{evt(1, "T\xff")}})
	st := wantStatus(t, err, codes.InvalidArgument, ReasonInvalidArgument)
	wantField(t, st, "stream", violationInvalidUTF8)
	wantField(t, st, "events[0].type", violationInvalidUTF8)
	if node.proposalCount() != 0 {
		t.Fatal("invalid request reached Propose")
	}
}

func TestLimits(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node, func(c *Config) {
		c.MaxEventBytes, c.MaxRequestBytes, c.MaxEventsPerAppend, c.MaxFilterEntries = 1024, 4096, 5, 2
	})
	ctx := ctxT(t)
	big := func(n, size int) *cairnpb.EventData {
		e := evt(n, "A")
		e.Data, e.Metadata, e.ContentType, e.Tags = bytes.Repeat([]byte("x"), size), nil, "", nil
		return e
	}
	check := func(err error, limit string, maxV, actual uint64) {
		t.Helper()
		st := wantStatus(t, err, codes.ResourceExhausted, ReasonLimitExceeded)
		d := detailOf[*cairnpb.LimitExceeded](t, st)
		if d.GetLimit() != limit || d.GetMax() != maxV || (actual != 0 && d.GetActual() != actual) || d.GetActual() <= d.GetMax() {
			t.Fatalf("limit detail %v, want %s max %d actual %d", d, limit, maxV, actual)
		}
	}
	// Exactly at the limit is fine.
	if _, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{big(1, 1023)}}); err != nil {
		t.Fatalf("event at the limit: %v", err)
	}
	_, err := ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{big(2, 1024)}})
	check(err, "event_bytes", 1024, 1025)

	var evs []*cairnpb.EventData
	for i := range 5 {
		evs = append(evs, big(10+i, 1000))
	}
	_, err = ts.events.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: evs})
	check(err, "request_bytes", 4096, 0)

	evs = nil
	for i := range 6 {
		evs = append(evs, evt(20+i, "A"))
	}
	_, err = ts.events.AppendMulti(ctx, &cairnpb.AppendMultiRequest{Appends: []*cairnpb.StreamAppend{
		{Stream: "a", Events: evs[:3]}, {Stream: "b", Events: evs[3:]}}})
	check(err, "events_per_append", 5, 6)

	_, err = ts.events.ReadAll(ctx, &cairnpb.ReadAllRequest{Filter: &cairnpb.Filter{Tags: []string{"a", "b", "c"}}})
	check(err, "filter_entries", 2, 3)

	_, err = ts.events.Read(ctx, &cairnpb.ReadRequest{Stream: strings.Repeat("s", 9000)})
	check(err, "request_bytes", 4096, 0)

	if n := node.proposalCount(); n != 1 {
		t.Fatalf("%d proposals, want only the one within limits", n)
	}
}

func TestUUID(t *testing.T) {
	for i := range 100 {
		id := newUUID()
		s := formatUUID(id)
		back, err := parseUUID(s)
		if err != nil || back != id {
			t.Fatalf("round trip %d: %s -> %x, %v", i, s, back, err)
		}
		if id[6]>>4 != 4 || id[8]>>6 != 2 {
			t.Fatalf("%s is not a v4 RFC 9562 UUID", s)
		}
	}
	if got := formatUUID([16]byte{}); got != "" {
		t.Fatalf("zero id formats as %q", got)
	}
	for _, bad := range []string{"", "x", "6ba7b810-9dad-11d1-80b4-00c04fd430c", "6ba7b810-9dad-11d1-80b4-00c04fd430c8a",
		"6ba7b810+9dad-11d1-80b4-00c04fd430c8", "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8"} {
		if _, err := parseUUID(bad); err == nil {
			t.Errorf("parseUUID(%q) accepted", bad)
		}
	}
	if _, err := parseUUID("6BA7B810-9DAD-11D1-80B4-00C04FD430C8"); err != nil {
		t.Errorf("upper case refused: %v", err)
	}
}

// TestOversizeRequestDefaults: with the default limits and ServerOptions, a request above
// MaxRequestBytes (and above gRPC's default 4 MiB) reaches the service and gets the typed error.
func TestOversizeRequestDefaults(t *testing.T) {
	node := newFakeNode(t, "n1")
	ts := mustNewServer(t, node)
	var evs []*cairnpb.EventData
	for i := range 6 {
		e := evt(i+1, "A")
		e.Data = bytes.Repeat([]byte("x"), 900<<10)
		evs = append(evs, e)
	}
	_, err := ts.events.Append(ctxT(t), &cairnpb.AppendRequest{Stream: "s", Events: evs})
	st := wantStatus(t, err, codes.ResourceExhausted, ReasonLimitExceeded)
	if d := detailOf[*cairnpb.LimitExceeded](t, st); d.GetLimit() != "request_bytes" || d.GetMax() != DefaultMaxRequestBytes {
		t.Fatalf("detail %v", d)
	}
	if node.proposalCount() != 0 {
		t.Fatal("oversize request reached Propose")
	}
}
