package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/internal/testcluster"
)

func TestTail(t *testing.T) {
	tc := testcluster.New(t, 1)
	addr := tc.Nodes[0].Addr
	at := func(args ...string) []string { return append([]string{"--addr", addr}, args...) }
	ok(t, at("append", "tail-1", "--type", "A", "--data", `{"n":1}`)...)
	ok(t, at("append", "tail-1", "--type", "B", "--data", `{"n":2}`)...)
	ok(t, at("append", "other", "--type", "C", "--data", `{"n":3}`)...)

	t.Run("AllFromStartAsText", func(t *testing.T) {
		r := wantExit(t, 0, at("tail", "$all", "--from-start", "--count", "3")...)
		lines := strings.Split(strings.TrimSpace(r.out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "1  tail-1@0  A  ") || !strings.Contains(lines[0], `{"n":1}`) ||
			!strings.HasPrefix(lines[2], "3  other@0  C  ") {
			t.Fatalf("tail output:\n%s\nstderr:\n%s", r.out, r.err)
		}
	})

	t.Run("StreamFromRevisionAsJSON", func(t *testing.T) {
		r := wantExit(t, 0, at("--json", "tail", "tail-1", "--from", "0", "--count", "1")...)
		var e eventJSON
		if err := json.Unmarshal([]byte(strings.TrimSpace(r.out)), &e); err != nil {
			t.Fatalf("%v in %q", err, r.out)
		}
		if e.Stream != "tail-1" || e.Revision != 1 || e.Type != "B" || string(e.Data) != `{"n":2}` {
			t.Fatalf("event %+v", e)
		}
	})

	t.Run("FilterAndTimeout", func(t *testing.T) {
		// Nothing new arrives: tail waits live and the explicit --timeout ends it with exit 0.
		r := wantExit(t, 0, at("--timeout", "2s", "tail", "--from-start", "--type", "C")...)
		if lines := strings.Split(strings.TrimSpace(r.out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "other@0") {
			t.Fatalf("filtered tail:\n%s", r.out)
		}
		if !strings.Contains(r.err, "caught up at position 3") {
			t.Fatalf("stderr:\n%s", r.err)
		}
	})

	t.Run("FromTime", func(t *testing.T) {
		// Every event so far is younger than an hour; one committed in the future is not there yet.
		r := wantExit(t, 0, at("tail", "$all", "--from-time", "1h", "--count", "1")...)
		if !strings.HasPrefix(r.out, "1  tail-1@0  A  ") {
			t.Fatalf("tail from an hour ago:\n%s", r.out)
		}
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		r = wantExit(t, 0, at("--timeout", "1s", "tail", "$all", "--from-time", future)...)
		if strings.TrimSpace(r.out) != "" {
			t.Fatalf("tail from the future printed:\n%s", r.out)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		wantExit(t, exitUsage, at("tail", "--from-time", "yesterday")...)
		wantExit(t, exitUsage, at("tail", "--from-time", "1h", "--from-start")...)
		wantExit(t, exitUsage, at("tail", "--from", "1", "--from-start")...)
		wantExit(t, exitUsage, at("tail", "a", "b")...)
		wantExit(t, exitUsage, at("tail", "--count", "-1")...)
		ok(t, at("tombstone", "tail-1")...)
		wantExit(t, exitConflict, at("tail", "tail-1", "--from-start")...)
	})
}
