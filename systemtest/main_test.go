package systemtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/localcluster"
)

// binary is the cairnd built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-systemtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	binary, err = localcluster.Build(ctx, "..", dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fastRaft makes failover quick on loopback.
var fastRaft = []string{"--heartbeat-timeout", "500ms", "--election-timeout", "500ms", "--log-level", "info"}

// mustStartCluster starts n cairnd processes and waits for an agreed leader. On failure the node
// logs are printed, so a red CI run says why.
func mustStartCluster(t testing.TB, n int, extra ...string) *localcluster.Cluster {
	t.Helper()
	return mustStartClusterWith(t, localcluster.Options{Nodes: n, ExtraArgs: extra})
}

// mustStartClusterWith is mustStartCluster with more options (TLS, a token): Binary and Dir are
// filled in and the fast raft timeouts go before opts.ExtraArgs.
func mustStartClusterWith(t testing.TB, opts localcluster.Options) *localcluster.Cluster {
	t.Helper()
	opts.Binary, opts.Dir = binary, t.TempDir()
	opts.ExtraArgs = append(append([]string{}, fastRaft...), opts.ExtraArgs...)
	c, err := localcluster.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			dumpLogs(t, c)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func dumpLogs(t testing.TB, c *localcluster.Cluster) {
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.LogPath)
		if err != nil {
			continue
		}
		// Errors, lifecycle lines and the tail: enough to see why without flooding the output.
		var keep []string
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for i, l := range lines {
			if i >= len(lines)-40 || strings.Contains(l, `"level":"ERROR"`) && !strings.Contains(l, "appendEntries") && !strings.Contains(l, "heartbeat") ||
				strings.Contains(l, "cairnd started") || strings.Contains(l, "shutting down") || strings.Contains(l, "panic") {
				keep = append(keep, l)
			}
		}
		t.Logf("==== %s (%s) ====\n%s", n.ID, filepath.Base(n.LogPath), strings.Join(keep, "\n"))
	}
}

func newUUID() string { return uuid.NewString() }

func anyRev() *cairnpb.ExpectedRevision {
	return &cairnpb.ExpectedRevision{Kind: cairnpb.ExpectedRevision_KIND_ANY}
}

func event(id string) *cairnpb.EventData {
	return &cairnpb.EventData{Id: id, Type: "Tested", ContentType: "application/octet-stream", Data: make([]byte, 256)}
}

// retryable reports whether an append may be retried with the same ids: the server said no
// leader / not leader / outcome unknown, or the call never got an answer.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Unknown, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

func stale(minIndex uint64) *cairnpb.ReadOptions {
	return &cairnpb.ReadOptions{Consistency: cairnpb.Consistency_CONSISTENCY_STALE, MinLogIndex: minIndex}
}

// readAll reads the whole global log from one node with a STALE read that waits for minIndex.
func readAll(ctx context.Context, n *localcluster.Node, minIndex uint64) ([]*cairnpb.RecordedEvent, error) {
	var out []*cairnpb.RecordedEvent
	from := uint64(1)
	for {
		// WaitForReady: the node may have just restarted; wait for its listener, not fail fast.
		resp, err := n.Events().ReadAll(ctx, &cairnpb.ReadAllRequest{FromPosition: from, Limit: 10000, Options: stale(minIndex)},
			grpc.WaitForReady(true))
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetEvents()...)
		if resp.GetEndOfLog() || len(resp.GetEvents()) == 0 {
			return out, nil
		}
		from = resp.GetEvents()[len(resp.GetEvents())-1].GetPosition() + 1
	}
}
