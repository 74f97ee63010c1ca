package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cairndb/cairn/internal/testcluster"
)

// TestCompactCommand runs `cairnctl compact` through a follower: the leader proposes the
// compaction, waits for its own reclaim and reports it; --json gives the same as fields.
func TestCompactCommand(t *testing.T) {
	tc := testcluster.New(t, 3)
	leader := tc.WaitLeader(t)
	via := tc.Followers(leader)[0].Addr
	at := func(args ...string) []string { return append([]string{"--addr", via, "--timeout", "20s"}, args...) }

	ok(t, at("append", "gone", "--type", "T", "--data", "{}")...)
	ok(t, at("tombstone", "gone")...)
	var res map[string]any
	if err := json.Unmarshal([]byte(ok(t, at("--json", "compact")...)), &res); err != nil {
		t.Fatal(err)
	}
	if res["status"] != "done" || res["node_id"] != leader.ID() || res["log_index"].(float64) == 0 || res["position"].(float64) != 3 {
		t.Fatalf("compact --json: %v", res)
	}
	if _, ok := res["bytes_reclaimed"]; !ok {
		t.Fatalf("compact --json lacks bytes_reclaimed: %v", res)
	}
	// status shows the node's reclaim state: the leader has covered the compaction it waited for.
	var st map[string]any
	if err := json.Unmarshal([]byte(ok(t, "--addr", leader.Addr, "--json", "status")), &st); err != nil {
		t.Fatal(err)
	}
	rec, _ := st["reclaim"].(map[string]any)
	if rec == nil || rec["compactions"].(float64) != 1 || rec["covered_index"].(float64) < res["log_index"].(float64) {
		t.Fatalf("status --json reclaim: %v (compaction at index %v)", st["reclaim"], res["log_index"])
	}
	if text := ok(t, "--addr", leader.Addr, "status"); !strings.Contains(text, "RECLAIM") || !strings.Contains(text, "1 compaction(s)") {
		t.Fatalf("status lacks the reclaim line:\n%s", text)
	}
	out := ok(t, at("compact", "--no-wait")...)
	if !strings.Contains(out, "compaction at index") || !strings.Contains(out, "pending") {
		t.Fatalf("compact --no-wait output: %s", out)
	}
}
