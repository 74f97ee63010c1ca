package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/internal/testcluster"
)

// memberSuffrage reads one member's suffrage from `cairnctl members --json`.
func memberSuffrage(t *testing.T, addr, id string) string {
	t.Helper()
	var members []memberJSON
	if err := json.Unmarshal([]byte(ok(t, "--addr", addr, "--json", "members")), &members); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.ID == id {
			return m.Suffrage
		}
	}
	return "absent"
}

func TestAdminCommands(t *testing.T) {
	tc := testcluster.New(t, 3)
	leader := tc.WaitLeader(t)
	followers := tc.Followers(leader)
	via, target := followers[0].Addr, followers[1]
	at := func(args ...string) []string { return append([]string{"--addr", via, "--timeout", "20s"}, args...) }

	ok(t, at("demote", target.ID())...)
	deadline := time.Now().Add(10 * time.Second)
	for memberSuffrage(t, via, target.ID()) != "nonvoter" {
		if time.Now().After(deadline) {
			t.Fatalf("%s still a voter after demote", target.ID())
		}
		time.Sleep(20 * time.Millisecond) // polling the follower's configuration, bounded
	}
	if out := ok(t, at("promote", target.ID())...); !strings.Contains(out, "promoted to voter") {
		t.Fatalf("promote output: %s", out)
	}
	wantExit(t, exitNotFound, at("remove", "no-such-node")...)
	wantExit(t, exitUsage, at("join", "only-an-id")...)

	ok(t, at("transfer-leader", "--to", target.ID())...)
	if l := tc.WaitLeader(t); l.ID() != target.ID() {
		t.Fatalf("leader %s, want %s", l.ID(), target.ID())
	}

	ok(t, at("append", "s", "--type", "T", "--data", "{}")...)
	var snap map[string]any
	if err := json.Unmarshal([]byte(ok(t, at("--json", "snapshot")...)), &snap); err != nil || snap["index"].(float64) == 0 {
		t.Fatalf("snapshot: %v %v", snap, err)
	}
	out := ok(t, at("raft", "config", "set", "--trailing-logs", "123")...)
	if !strings.Contains(out, "TRAILING LOGS       123") {
		t.Fatalf("raft config set:\n%s", out)
	}
	var rc map[string]any
	if err := json.Unmarshal([]byte(ok(t, at("--json", "raft", "config", "get")...)), &rc); err != nil || rc["trailing_logs"].(float64) != 123 {
		t.Fatalf("raft config get: %v %v", rc, err)
	}
	wantExit(t, exitUsage, at("raft", "config", "set")...)
}

func TestStreamInfoCommand(t *testing.T) {
	tc := testcluster.New(t, 1)
	addr := tc.Nodes[0].Addr
	ok(t, "--addr", addr, "append", "orders-9", "--type", "A", "--data", "{}")
	ok(t, "--addr", addr, "append", "orders-9", "--type", "B", "--data", "{}")
	out := ok(t, "--addr", addr, "stream", "info", "orders-9")
	if !strings.Contains(out, "EVENTS         2") || !strings.Contains(out, "REVISIONS      0..1") {
		t.Fatalf("stream info:\n%s", out)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(ok(t, "--addr", addr, "--json", "stream", "info", "nope")), &info); err != nil || info["exists"] != false {
		t.Fatalf("stream info of a missing stream: %v %v", info, err)
	}
}
