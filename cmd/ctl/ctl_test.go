package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
)

// cliResult is the outcome of one cairnctl invocation.
type cliResult struct {
	out, err string
	code     int
}

// runCLI runs cairnctl in-process with args and stdin; env is what getenv returns.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	code := execute(context.Background(), args, stdio{in: strings.NewReader(stdin), out: &out, err: &errOut},
		func(k string) string { return env[k] })
	return cliResult{out: out.String(), err: errOut.String(), code: code}
}

// ok runs cairnctl and fails the test unless it exits 0.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	r := runCLI(t, nil, "", args...)
	if r.code != 0 {
		t.Fatalf("cairnctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// wantExit runs cairnctl and fails the test unless it exits with code.
func wantExit(t *testing.T, code int, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, nil, "", args...)
	if r.code != code {
		t.Fatalf("cairnctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.out, r.err)
	}
	return r
}

func TestCLIAgainstCluster(t *testing.T) {
	tc := testcluster.New(t, 3)
	leader := tc.WaitLeader(t)
	follower := tc.Followers(leader)[0]
	all := strings.Join(tc.Addrs(), ",")
	at := func(addr string, args ...string) []string {
		return append([]string{"--addr", addr, "--timeout", "10s"}, args...)
	}

	t.Run("AppendThenReadAsText", func(t *testing.T) {
		out := ok(t, at(follower.Addr, "append", "orders-1", "--expected", "no-stream", "--type", "OrderPlaced",
			"--data", `{"id":1}`, "--tag", "eu", "--tag", "web")...)
		if !strings.Contains(out, "appended: orders-1 revision 0") || !strings.Contains(out, "LOG INDEX") {
			t.Fatalf("append output:\n%s", out)
		}
		ok(t, at(all, "append", "orders-1", "--expected", "0", "--type", "OrderPaid", "--data", `{"id":1,"paid":true}`)...)
		out = ok(t, at(follower.Addr, "read", "orders-1")...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "REVISION") ||
			!strings.Contains(lines[1], "OrderPlaced") || !strings.Contains(lines[1], `{"id":1}`) ||
			!strings.Contains(lines[2], "OrderPaid") || !strings.Contains(lines[3], "2 events, end of stream") ||
			!strings.Contains(lines[3], "served by "+leader.ID()+" (leader)") {
			t.Fatalf("read output:\n%s", out)
		}
		out = ok(t, at(all, "read", "orders-1", "--from-end", "--backwards", "--limit", "1")...)
		if !strings.Contains(out, "OrderPaid") || strings.Contains(out, "OrderPlaced") {
			t.Fatalf("backward read:\n%s", out)
		}
		out = ok(t, at(all, "read-all", "--stream-prefix", "orders-", "--tag", "eu")...)
		if !strings.Contains(out, "orders-1") || !strings.Contains(out, "1 events") {
			t.Fatalf("read-all:\n%s", out)
		}
	})

	t.Run("AppendThenReadAsJSON", func(t *testing.T) {
		id := "7d3b1f0a-1c2e-4b5a-9c8d-0123456789ab"
		out := ok(t, at(all, "--json", "append", "json-1", "--type", "Created", "--id", id, "--data", `{"n": 1}`,
			"--metadata", `{"by":"test"}`)...)
		var ar appendJSON
		if err := json.Unmarshal([]byte(out), &ar); err != nil {
			t.Fatalf("append --json: %v\n%s", err, out)
		}
		if ar.Stream != "json-1" || ar.LastRevision != 0 || ar.LogIndex == 0 || len(ar.EventIDs) != 1 || ar.EventIDs[0] != id || ar.Idempotent {
			t.Fatalf("append --json: %+v", ar)
		}
		// The same command again is an idempotent retry.
		out = ok(t, at(all, "--json", "append", "json-1", "--type", "Created", "--id", id, "--data", `{"n": 1}`,
			"--metadata", `{"by":"test"}`)...)
		var again appendJSON
		if err := json.Unmarshal([]byte(out), &again); err != nil || !again.Idempotent || again.LogIndex != ar.LogIndex {
			t.Fatalf("repeated append: %v %+v", err, again)
		}
		// Data from stdin, not JSON.
		r := runCLI(t, nil, "plain text\n", at(all, "--json", "append", "json-1", "--type", "Note", "--content-type", "text/plain", "--data-file", "-")...)
		var note appendJSON
		if r.code != 0 || json.Unmarshal([]byte(r.out), &note) != nil {
			t.Fatalf("append from stdin: %d %s %s", r.code, r.out, r.err)
		}
		// A stale read on a follower, with the append's log index as the read-your-writes token.
		out = ok(t, at(follower.Addr, "--json", "read", "json-1", "--consistency", "stale", "--min-log-index", fmt.Sprint(note.LogIndex))...)
		var rr struct {
			Events      []eventJSON  `json:"events"`
			ServedBy    servedByJSON `json:"served_by"`
			EndOfStream bool         `json:"end_of_stream"`
		}
		if err := json.Unmarshal([]byte(out), &rr); err != nil {
			t.Fatalf("read --json: %v\n%s", err, out)
		}
		if len(rr.Events) != 2 || !rr.EndOfStream || rr.ServedBy.NodeID != follower.ID() {
			t.Fatalf("read --json: %+v", rr)
		}
		e := rr.Events[0]
		if e.ID != id || e.Type != "Created" || e.ContentType != "application/json" || compact(t, e.Data) != `{"n":1}` ||
			compact(t, e.Metadata) != `{"by":"test"}` || e.Revision != 0 || e.CommitTime.IsZero() {
			t.Fatalf("event: %+v (data %s)", e, e.Data)
		}
		if rr.Events[1].Data != nil || rr.Events[1].DataBase64 == "" {
			t.Fatalf("non-JSON data should be base64: %+v", rr.Events[1])
		}
		out = ok(t, at(all, "--json", "read-all", "--type", "Note")...)
		var ra struct {
			Events     []eventJSON `json:"events"`
			Checkpoint uint64      `json:"checkpoint_position"`
			EndOfLog   bool        `json:"end_of_log"`
		}
		if err := json.Unmarshal([]byte(out), &ra); err != nil || len(ra.Events) != 1 || ra.Events[0].Stream != "json-1" || !ra.EndOfLog {
			t.Fatalf("read-all --json: %v\n%s", err, out)
		}
	})

	t.Run("ExitCodes", func(t *testing.T) {
		ok(t, at(all, "append", "codes-1", "--type", "T", "--data", "{}")...)
		r := wantExit(t, exitConflict, at(all, "append", "codes-1", "--expected", "no-stream", "--type", "T", "--data", "{}")...)
		if !strings.Contains(r.err, "wrong expected revision") || !strings.Contains(r.err, "actual revision 0") {
			t.Fatalf("stderr: %s", r.err)
		}
		wantExit(t, exitConflict, at(all, "append", "codes-1", "--expected", "7", "--type", "T", "--data", "{}")...)
		r = wantExit(t, exitNotFound, at(all, "read", "codes-missing")...)
		if !strings.Contains(r.err, "not found") {
			t.Fatalf("stderr: %s", r.err)
		}
		// Refused by the server.
		r = wantExit(t, exitUsage, at(all, "append", "codes-1", "--type", "$reserved", "--data", "{}")...)
		if !strings.Contains(r.err, "events[0].type") {
			t.Fatalf("stderr: %s", r.err)
		}
		// Refused by cairnctl or cobra before any call.
		wantExit(t, exitUsage, at(all, "append", "codes-1", "--data", "{}")...)                                   // --type missing
		wantExit(t, exitUsage, at(all, "append", "codes-1", "--type", "T", "--data", "{nope")...)                 // not JSON
		wantExit(t, exitUsage, at(all, "append", "codes-1", "--type", "T", "--expected", "maybe")...)             // bad --expected
		wantExit(t, exitUsage, at(all, "append", "codes-1", "--type", "T", "--data", "1", "--data-file", "x")...) // exclusive
		wantExit(t, exitUsage, at(all, "read")...)                                                                // stream missing
		wantExit(t, exitUsage, at(all, "read", "s", "--consistency", "eventual")...)
		wantExit(t, exitUsage, at(all, "read", "s", "--min-log-index", "3")...) // needs stale
		wantExit(t, exitUsage, at(all, "no-such-command")...)
		wantExit(t, exitUsage, at(all, "status", "--no-such-flag")...)
		// Tombstoned streams are a conflict.
		ok(t, at(all, "tombstone", "codes-1")...)
		wantExit(t, exitConflict, at(all, "append", "codes-1", "--type", "T", "--data", "{}")...)
		wantExit(t, exitConflict, at(all, "read", "codes-1")...)
		// Nothing listens at port 1: unavailable.
		r = wantExit(t, exitUnavailable, "--addr", "127.0.0.1:1", "--timeout", "1s", "read", "s")
		if r.err == "" {
			t.Fatal("no error message")
		}
	})

	t.Run("StreamLifecycle", func(t *testing.T) {
		for range 3 { // revisions 0-2
			ok(t, at(all, "append", "life-1", "--type", "T", "--data", "{}")...)
		}
		out := ok(t, at(follower.Addr, "stream", "meta", "set", "life-1", "--expected-revision", "no-stream",
			"--max-count", "2", "--user", "owner=team-a")...)
		if !strings.Contains(out, "metadata of life-1 set: revision 0") {
			t.Fatalf("meta set output:\n%s", out)
		}
		// The metadata revision moved: a stale condition is a conflict; the old --expected spelling works.
		wantExit(t, exitConflict, at(all, "stream", "meta", "set", "life-1", "--expected", "no-stream")...)
		var md struct {
			Exists           bool   `json:"exists"`
			MetadataRevision uint64 `json:"metadata_revision"`
			Metadata         struct {
				MaxCount *uint64           `json:"max_count"`
				User     map[string]string `json:"user"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(ok(t, at(all, "--json", "stream", "meta", "get", "life-1")...)), &md); err != nil {
			t.Fatal(err)
		}
		if !md.Exists || md.MetadataRevision != 0 || md.Metadata.MaxCount == nil || *md.Metadata.MaxCount != 2 || md.Metadata.User["owner"] != "team-a" {
			t.Fatalf("meta get: %+v", md)
		}
		if out := ok(t, at(all, "stream", "meta", "get", "life-1")...); !strings.Contains(out, "MAX COUNT") || !strings.Contains(out, "USER owner") {
			t.Fatalf("meta get text:\n%s", out)
		}
		if out := ok(t, at(all, "read", "life-1")...); !strings.Contains(out, "2 events") {
			t.Fatalf("read with max-count 2:\n%s", out)
		}
		wantExit(t, exitUsage, at(all, "stream", "meta", "set", "life-1", "--max-count", "0")...)
		wantExit(t, exitUsage, at(all, "stream", "meta", "set", "life-1", "--user", "novalue")...)
		wantExit(t, exitUsage, at(all, "stream", "meta", "set", "life-1", "--user", "$acl=x")...) // reserved key: server-side INVALID_ARGUMENT

		wantExit(t, exitConflict, at(all, "stream", "delete", "life-1", "--expected-revision", "0")...)
		var del struct {
			Stream   string `json:"stream"`
			Position uint64 `json:"position"`
		}
		if err := json.Unmarshal([]byte(ok(t, at(all, "--json", "stream", "delete", "life-1", "--expected-revision", "2")...)), &del); err != nil || del.Position == 0 {
			t.Fatalf("delete: %+v %v", del, err)
		}
		wantExit(t, exitNotFound, at(all, "read", "life-1")...)
		wantExit(t, exitNotFound, at(all, "stream", "delete", "never-1")...)
		var info struct {
			Exists  bool `json:"exists"`
			Deleted bool `json:"deleted"`
		}
		if err := json.Unmarshal([]byte(ok(t, at(all, "--json", "stream", "info", "life-1")...)), &info); err != nil || info.Exists || !info.Deleted {
			t.Fatalf("info after delete: %+v %v", info, err)
		}
		// Appending again continues the revisions.
		if out := ok(t, at(all, "append", "life-1", "--expected", "no-stream", "--type", "T", "--data", "{}")...); !strings.Contains(out, "revision 3") {
			t.Fatalf("append after delete:\n%s", out)
		}
		// Time travel: everything is younger than an hour and nothing is older than now-1h.
		if out := ok(t, at(all, "read", "life-1", "--from-time", "1h")...); !strings.Contains(out, "1 events") {
			t.Fatalf("read --from-time 1h:\n%s", out)
		}
		if out := ok(t, at(all, "read-all", "--as-of-time", "1h")...); !strings.Contains(out, "0 events") {
			t.Fatalf("read-all as of an hour ago:\n%s", out)
		}
		wantExit(t, exitUsage, at(all, "read", "life-1", "--from-time", "soon")...)
		wantExit(t, exitUsage, at(all, "read", "life-1", "--from-time", "1h", "--from-end")...)
		ok(t, at(all, "stream", "tombstone", "life-1", "--expected-revision", "3")...)
		wantExit(t, exitConflict, at(all, "read", "life-1")...)
		wantExit(t, exitConflict, at(all, "stream", "delete", "life-1")...)
	})

	t.Run("StatusAndMembers", func(t *testing.T) {
		out := ok(t, at(follower.Addr, "status")...)
		for _, want := range []string{"NODE", follower.ID(), "ROLE", "follower", "LEADER", leader.ID() + " (" + leader.Addr + ")", "APPLIED INDEX", "LAST CONTACT",
			"SECURITY", "INSECURE dev mode"} {
			if !strings.Contains(out, want) {
				t.Fatalf("status lacks %q:\n%s", want, out)
			}
		}
		out = ok(t, at(leader.Addr, "--json", "status")...)
		var st statusJSON
		if err := json.Unmarshal([]byte(out), &st); err != nil || st.NodeID != leader.ID() || st.Role != "leader" || len(st.Members) != 3 || st.LastContact != "" ||
			!strings.HasPrefix(st.Security, "INSECURE dev mode") {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		// The first address that answers is asked: a dead first address is skipped.
		out = ok(t, at("127.0.0.1:1,"+follower.Addr, "--json", "status")...)
		if err := json.Unmarshal([]byte(out), &st); err != nil || st.NodeID != follower.ID() {
			t.Fatalf("status with a dead first address: %v\n%s", err, out)
		}
		out = ok(t, at(all, "members")...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(out, "leader") || strings.Count(out, "voter") != 3 {
			t.Fatalf("members:\n%s", out)
		}
		out = ok(t, at(all, "--json", "members")...)
		var ms []memberJSON
		if err := json.Unmarshal([]byte(out), &ms); err != nil || len(ms) != 3 {
			t.Fatalf("members --json: %v\n%s", err, out)
		}
		for _, m := range ms {
			if m.GRPCAddress == "" || m.Role == "unknown" || m.Gossip != "alive" {
				t.Fatalf("member %+v", m)
			}
		}
	})

	t.Run("AddressFromEnvironment", func(t *testing.T) {
		r := runCLI(t, map[string]string{"CAIRN_ADDR": follower.Addr}, "", "--json", "status")
		var st statusJSON
		if r.code != 0 || json.Unmarshal([]byte(r.out), &st) != nil || st.NodeID != follower.ID() {
			t.Fatalf("status with CAIRN_ADDR: %d %s %s", r.code, r.out, r.err)
		}
	})

	t.Run("Health", func(t *testing.T) {
		out := ok(t, at(all, "health")...)
		if strings.Count(out, "SERVING") != 3 {
			t.Fatalf("health:\n%s", out)
		}
		r := wantExit(t, exitUnavailable, "--addr", leader.Addr+",127.0.0.1:1", "--timeout", "2s", "--json", "health")
		var hs []healthJSON
		if err := json.Unmarshal([]byte(r.out), &hs); err != nil || len(hs) != 2 || hs[0].Status != "SERVING" || hs[1].Status != "UNREACHABLE" {
			t.Fatalf("health --json: %v\n%s", err, r.out)
		}
		// A node that reports NOT_SERVING fails the check too.
		follower.Service.SetServing(false)
		defer follower.Service.SetServing(true)
		r = wantExit(t, exitUnavailable, at(follower.Addr, "health")...)
		if !strings.Contains(r.out, "NOT_SERVING") {
			t.Fatalf("health of a draining node:\n%s", r.out)
		}
	})
}

func compact(t *testing.T, raw []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("not JSON: %q", raw)
	}
	return b.String()
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	out := ok(t, "--help")
	for _, want := range []string{"Exit codes:", "0  ok", "3  wrong expected revision", "4  unavailable", "append", "read-all", "members", "health", "dev"} {
		if !strings.Contains(out, want) {
			t.Fatalf("--help lacks %q:\n%s", want, out)
		}
	}
}

func TestDataFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "data.json")
	if err := os.WriteFile(p, []byte(`{"from":"file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &app{io: stdio{in: strings.NewReader("")}}
	b, err := a.readData(&appendFlags{dataFile: p})
	if err != nil || string(b) != `{"from":"file"}` {
		t.Fatalf("data file: %q %v", b, err)
	}
	a.io.in = strings.NewReader("stdin")
	if b, err := a.readData(&appendFlags{data: "-"}); err != nil || string(b) != "stdin" {
		t.Fatalf("--data -: %q %v", b, err)
	}
	if _, err := a.readData(&appendFlags{dataFile: filepath.Join(dir, "missing")}); exitCode(err) != exitUsage {
		t.Fatalf("missing file: %v", err)
	}
}

func TestPreview(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "-",
		`{"a":1}`:               `{"a":1}`,
		"two\nlines":            "two lines",
		"\x00\x01":              "<2 bytes>",
		strings.Repeat("x", 70): strings.Repeat("x", 60) + "…",
	} {
		if got := preview([]byte(in)); got != want {
			t.Errorf("preview(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExitCodeMapping(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{usagef("bad flag"), exitUsage},
		{fmt.Errorf("x: %w", client.ErrInvalidArgument), exitUsage},
		{fmt.Errorf("x: %w", client.ErrLimitExceeded), exitUsage},
		{fmt.Errorf("x: %w", client.ErrStreamNotFound), exitNotFound},
		{fmt.Errorf("x: %w", client.ErrWrongExpectedRevision), exitConflict},
		{fmt.Errorf("x: %w", client.ErrEventIDConflict), exitConflict},
		{fmt.Errorf("x: %w", client.ErrStreamTombstoned), exitConflict},
		{fmt.Errorf("x: %w", client.ErrUnavailable), exitUnavailable},
		{fmt.Errorf("x: %w", client.ErrNotLeader), exitUnavailable},
		{fmt.Errorf("x: %w", client.ErrNotCaughtUp), exitUnavailable},
		{fmt.Errorf("x: %w", client.ErrOutcomeUnknown), exitUnavailable},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), exitUnavailable},
		{errNotServing, exitUnavailable},
		{errors.New("boom"), exitOther},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
