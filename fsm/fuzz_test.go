package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

// The fuzz targets feed hostile raft log entries to a real FSM in a temporary directory (issue 9,
// "Hostile input"). A raft peer, or a bug in the api layer, can put any bytes into the log; every
// node then applies them. The properties checked for every input:
//
//   - nothing panics (a panic here would crash every node of the cluster on the same entry);
//   - an entry that is rejected as a whole (undecodable, unknown version) returns an error wrapping
//     ErrInvalidCommand and changes no record: Digest and LastPosition are the same before and after;
//   - a request that fails writes nothing: the records written are exactly those of the requests
//     that succeeded, at dense positions;
//   - whatever was written survives a restart: the FSM reopened from its files has the same digest.
//
// `go test` runs the seeds (f.Add and testdata/fuzz/<target>/) as ordinary tests; `make fuzz`
// explores for a bounded time.

// fuzzFSM opens an FSM in a fresh directory holding a little state the fuzzed entry can interact
// with: stream "s" with revisions 0..1 (ids 1, 2), stream "t" with revision 0 (id 3), and a
// tombstoned stream "dead". Small record and dedupe limits make the limit branches reachable.
func fuzzFSM(t *testing.T) (*FSM, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := func(c *Config) {
		c.Logger = slog.New(slog.DiscardHandler)
		c.Segment.MaxRecordBytes = 4 << 10
		c.Dedupe.MaxEvents = 64
	}
	f := mustOpen(t, dir, cfg)
	mustOK(t, apply1(t, f, 1, 100, appendReq(part("s", noStream(), ev(1), ev(2)))))
	mustOK(t, apply1(t, f, 2, 200, appendReq(part("t", any_(), ev(3)))))
	mustOK(t, apply1(t, f, 3, 300, appendReq(part("dead", any_(), ev(4)))))
	mustOK(t, apply1(t, f, 4, 400, tombstoneReq("dead", any_())))
	return f, dir
}

// fuzzSeedCommands are valid and nearly valid commands that reach every branch of apply: new
// appends, idempotent retries, conflicts, wrong expected revisions, tombstones, invalid requests.
func fuzzSeedCommands() []*fsmpb.Command {
	cmd := func(reqs ...*fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Version: CommandVersion, TimestampUnixNano: 1000, Requests: reqs}
	}
	big := ev(50)
	big.Data = bytes.Repeat([]byte("x"), 5<<10)
	return []*fsmpb.Command{
		cmd(appendReq(part("new", noStream(), ev(10), ev(11)))),
		cmd(appendReq(part("s", exact(1), ev(12)))),
		cmd(appendReq(part("s", noStream(), ev(1), ev(2)))),                             // idempotent retry
		cmd(appendReq(part("s", any_(), ev(2), ev(13)))),                                // partial overlap
		cmd(appendReq(part("t", any_(), ev(1)))),                                        // id in another stream
		cmd(appendReq(part("s", exact(7), ev(14)))),                                     // wrong expected revision
		cmd(appendReq(part("dead", any_(), ev(15)))),                                    // tombstoned
		cmd(appendReq(part("a", exists()), part("b", noStream(), ev(16)))),              // check-only part
		cmd(appendReq(part("a", any_(), ev(17)), part("a", any_(), ev(18)))),            // stream twice
		cmd(appendReq(part("a", any_(), ev(19), ev(19)))),                               // id twice
		cmd(appendReq(part("", any_(), ev(20)))),                                        // empty name
		cmd(appendReq(part("a", &fsmpb.ExpectedRevision{Kind: 99}, ev(21)))),            // bad kind
		cmd(appendReq(part("a", any_(), &fsmpb.Event{Id: []byte{1, 2}}))),               // short id
		cmd(appendReq(part("a", any_(), &fsmpb.Event{Id: make([]byte, 16)}))),           // nil id
		cmd(appendReq(part("a", any_(), big))),                                          // over the record limit
		cmd(appendReq()),                                                                // no parts
		cmd(tombstoneReq("t", exact(0)), tombstoneReq("t", any_())),                     // second one fails
		cmd(tombstoneReq("", any_())),                                                   // empty name
		cmd(appendReq(part("x", any_(), ev(22))), appendReq(part("x", any_(), ev(22)))), // retry in one entry
		cmd(&fsmpb.Request{}),                                                           // unknown kind
		{Version: 2, Requests: []*fsmpb.Request{appendReq(part("v", any_(), ev(23)))}},  // unknown version
		cmd(createTokenReq(1, "secret", RoleWriter, "orders-"), revokeTokenReq(1)),      // token created and revoked
		cmd(revokeTokenReq(9), createTokenReq(2, "s", "root")),                          // both rejected
	}
}

func FuzzApplyEntry(f *testing.F) {
	// The valid and nearly valid commands are the committed corpus in testdata/fuzz/FuzzApplyEntry
	// (see TestWriteFuzzCorpus); these add garbage.
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm, dir := fuzzFSM(t)
		checkApply(t, fsm, dir, &raft.Log{Index: 5, Term: 1, Type: raft.LogCommand, Data: data})
	})
}

// FuzzApplyFields builds one append or tombstone from fuzzed fields, so the fuzzer explores the
// request semantics rather than the protobuf wire format.
func FuzzApplyFields(f *testing.F) {
	f.Add("s", uint8(4), uint64(1), []byte{12}, "T", []byte("d"), false)
	f.Add("s", uint8(2), uint64(0), []byte{1, 2}, "T", []byte("d"), false)
	f.Add("dead", uint8(1), uint64(0), []byte{9}, "T", []byte{}, false)
	f.Add("t", uint8(4), uint64(0), []byte{}, "", []byte{}, true)
	f.Add("", uint8(0), uint64(3), []byte{0}, "T", []byte("x"), false)
	f.Fuzz(func(t *testing.T, stream string, kind uint8, rev uint64, ids []byte, typ string, data []byte, tomb bool) {
		exp := &fsmpb.ExpectedRevision{Kind: fsmpb.ExpectedRevision_Kind(kind % 6), Revision: rev}
		var req *fsmpb.Request
		if tomb {
			req = tombstoneReq(stream, exp)
		} else {
			var events []*fsmpb.Event
			for _, b := range ids { // each byte is one event; 0 gives the nil UUID
				var e *fsmpb.Event
				if b == 0 {
					e = &fsmpb.Event{Id: make([]byte, 16)}
				} else {
					e = ev(uint64(b % 32))
				}
				e.Type, e.Data = typ, data
				events = append(events, e)
			}
			req = appendReq(part(stream, exp, events...))
		}
		b, err := proto.Marshal(&fsmpb.Command{Version: CommandVersion, TimestampUnixNano: 1000, Requests: []*fsmpb.Request{req}})
		if err != nil {
			t.Skip("not encodable (invalid UTF-8 in a string field)")
		}
		fsm, dir := fuzzFSM(t)
		checkApply(t, fsm, dir, &raft.Log{Index: 5, Term: 1, Type: raft.LogCommand, Data: b})
	})
}

// checkApply applies l to f (whose directory is dir) and checks the properties listed at the top
// of this file.
func checkApply(t *testing.T, f *FSM, dir string, l *raft.Log) {
	t.Helper()
	beforePos := f.LastPosition()
	_, beforeDigest, err := f.Digest(0)
	if err != nil {
		t.Fatal(err)
	}
	out := f.Apply(l)
	afterPos := f.LastPosition()
	_, afterDigest, err := f.Digest(0)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.AppliedIndex(); got != l.Index {
		t.Fatalf("applied index %d after entry %d", got, l.Index)
	}
	written := uint64(0)
	switch out := out.(type) {
	case error:
		if !errors.Is(out, ErrInvalidCommand) {
			t.Fatalf("entry rejected with %v, want an error wrapping ErrInvalidCommand", out)
		}
	case []Result:
		next := beforePos + 1
		for i, r := range out {
			if r.Err != nil || r.Idempotent {
				continue
			}
			if r.LogIndex != l.Index {
				t.Fatalf("request %d: log index %d, want %d", i, r.LogIndex, l.Index)
			}
			for _, s := range r.Streams {
				if s.FirstPosition == 0 { // check-only part
					continue
				}
				if s.FirstPosition != next || s.LastPosition < s.FirstPosition {
					t.Fatalf("request %d stream %q: positions %d..%d, want from %d", i, s.Stream, s.FirstPosition, s.LastPosition, next)
				}
				written += s.LastPosition - s.FirstPosition + 1
				next = s.LastPosition + 1
			}
		}
	default:
		t.Fatalf("apply returned %T (%v)", out, out)
	}
	if afterPos != beforePos+written {
		t.Fatalf("last position %d -> %d, but the successful requests wrote %d records", beforePos, afterPos, written)
	}
	if written == 0 && afterDigest != beforeDigest {
		t.Fatalf("digest changed although nothing was written: %s -> %s", beforeDigest, afterDigest)
	}
	if written > 0 && afterDigest == beforeDigest {
		t.Fatalf("digest unchanged although %d records were written", written)
	}
	// What was written must read back after a restart.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := Open(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler), Segment: f.cfg.Segment, Dedupe: f.cfg.Dedupe})
	if err != nil {
		t.Fatalf("reopen after the fuzzed entry: %v", err)
	}
	defer g.Close()
	if _, d, err := g.Digest(0); err != nil || d != afterDigest || g.LastPosition() != afterPos {
		t.Fatalf("after reopen: digest %s err %v position %d, want %s at %d", d, err, g.LastPosition(), afterDigest, afterPos)
	}
}

// TestWriteFuzzCorpus regenerates the committed seed corpus in testdata/fuzz/FuzzApplyEntry from
// fuzzSeedCommands. It only runs with CAIRN_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("CAIRN_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set CAIRN_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz/FuzzApplyEntry")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzApplyEntry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, c := range fuzzSeedCommands() {
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
