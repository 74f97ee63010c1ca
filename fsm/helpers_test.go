package fsm

import (
	"encoding/binary"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

// mustOpen opens an FSM in dir and closes it when the test ends.
func mustOpen(t testing.TB, dir string, opts ...func(*Config)) *FSM {
	t.Helper()
	cfg := Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	for _, o := range opts {
		o(&cfg)
	}
	f, err := Open(cfg)
	if err != nil {
		t.Fatalf("open fsm in %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// id returns a deterministic, non-nil event id.
func id(n uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b[8:], n)
	b[0] = 0xCA
	return b
}

func ev(n uint64) *fsmpb.Event {
	return &fsmpb.Event{Id: id(n), Type: "Tested", ContentType: "application/json",
		Data: []byte(`{"n":1}`), Metadata: []byte("m"), Tags: []string{"t1"}}
}

func any_() *fsmpb.ExpectedRevision {
	return &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_KIND_ANY}
}
func noStream() *fsmpb.ExpectedRevision {
	return &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_KIND_NO_STREAM}
}
func exists() *fsmpb.ExpectedRevision {
	return &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_KIND_STREAM_EXISTS}
}
func exact(r uint64) *fsmpb.ExpectedRevision {
	return &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_KIND_EXACT, Revision: r}
}

func part(stream string, exp *fsmpb.ExpectedRevision, events ...*fsmpb.Event) *fsmpb.StreamAppend {
	return &fsmpb.StreamAppend{Stream: stream, Expected: exp, Events: events}
}

func appendReq(parts ...*fsmpb.StreamAppend) *fsmpb.Request {
	return &fsmpb.Request{Kind: &fsmpb.Request_Append{Append: &fsmpb.AppendRequest{Parts: parts}}}
}

func tombstoneReq(stream string, exp *fsmpb.ExpectedRevision) *fsmpb.Request {
	return &fsmpb.Request{Kind: &fsmpb.Request_Tombstone{Tombstone: &fsmpb.TombstoneRequest{Stream: stream, Expected: exp}}}
}

func setMetaReq(stream string, exp *fsmpb.ExpectedRevision, md *fsmpb.StreamMetadata) *fsmpb.Request {
	return &fsmpb.Request{Kind: &fsmpb.Request_SetMetadata{SetMetadata: &fsmpb.SetMetadataRequest{
		Stream: stream, Expected: exp, Metadata: md}}}
}

func softDeleteReq(stream string, exp *fsmpb.ExpectedRevision) *fsmpb.Request {
	return &fsmpb.Request{Kind: &fsmpb.Request_SoftDelete{SoftDelete: &fsmpb.SoftDeleteRequest{Stream: stream, Expected: exp}}}
}

// entry builds a raft command entry.
func entry(t testing.TB, index uint64, ts int64, reqs ...*fsmpb.Request) *raft.Log {
	t.Helper()
	b, err := EncodeCommand(&fsmpb.Command{TimestampUnixNano: ts, Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b}
}

// apply applies one entry and returns its request results.
func apply(t testing.TB, f *FSM, l *raft.Log) []Result {
	t.Helper()
	out := f.Apply(l)
	res, ok := out.([]Result)
	if !ok {
		t.Fatalf("apply index %d: got %T (%v), want []Result", l.Index, out, out)
	}
	return res
}

// apply1 applies an entry of one request and returns its result.
func apply1(t testing.TB, f *FSM, index uint64, ts int64, req *fsmpb.Request) Result {
	t.Helper()
	res := apply(t, f, entry(t, index, ts, req))
	if len(res) != 1 {
		t.Fatalf("got %d results, want 1", len(res))
	}
	return res[0]
}

func mustOK(t testing.TB, r Result) Result {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("unexpected error: %v", r.Err)
	}
	return r
}
