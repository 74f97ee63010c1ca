package systemtest

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/localcluster"
)

// segmentBytesOnDisk sums the sizes of a node's segment files.
func segmentBytesOnDisk(t *testing.T, n *localcluster.Node) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(n.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Snapshots hold hard links to segment files; count the live generation only.
		if d.IsDir() && d.Name() == "snapshots" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".seg") && strings.Contains(p, string(filepath.Separator)+"gen-") {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", n.DataDir, err)
	}
	return total
}

// TestCompactReclaimsSpaceAndKeepsReads: three real nodes with small segments; half the streams
// are tombstoned; `Compact` through a follower makes the leader propose it and report its own
// reclaim; every node's segment files shrink, reads of the remaining streams and of $all are what
// they were minus the compacted events, and the digests of all nodes are equal.
func TestCompactReclaimsSpaceAndKeepsReads(t *testing.T) {
	c := mustStartCluster(t, 3, "--segment-bytes", "262144")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const streams, batches, perBatch = 8, 10, 20
	data := make([]byte, 1024)
	var last *cairnpb.AppendResponse
	for b := range batches {
		for s := range streams {
			evs := make([]*cairnpb.EventData, perBatch)
			for i := range evs {
				evs[i] = &cairnpb.EventData{Id: newUUID(), Type: "Filled", ContentType: "application/octet-stream", Data: data}
			}
			last, err = leader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: fmt.Sprintf("c-%d", s), Expected: anyRev(), Events: evs})
			if err != nil {
				t.Fatalf("append batch %d stream %d: %v", b, s, err)
			}
		}
	}
	for s := 0; s < streams; s += 2 {
		last2, err := leader.Events().Tombstone(ctx, &cairnpb.TombstoneRequest{Stream: fmt.Sprintf("c-%d", s)})
		if err != nil {
			t.Fatalf("tombstone c-%d: %v", s, err)
		}
		last = &cairnpb.AppendResponse{LogIndex: last2.GetLogIndex()}
	}
	allBefore, err := readAll(ctx, leader, last.GetLogIndex())
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]int64{}
	for _, n := range c.Nodes {
		if _, err := readAll(ctx, n, last.GetLogIndex()); err != nil { // caught up
			t.Fatal(err)
		}
		before[n.ID] = segmentBytesOnDisk(t, n)
	}

	var follower *localcluster.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
			break
		}
	}
	resp, err := follower.Cluster().Compact(ctx, &cairnpb.CompactRequest{})
	if err != nil {
		t.Fatalf("compact through follower %s: %v", follower.ID, err)
	}
	r := resp.GetReclaim()
	t.Logf("compact: %v", resp)
	if resp.GetStatus() != "done" || resp.GetNodeId() != leader.ID || r.GetBytesReclaimed() <= 0 || r.GetSegmentsRewritten() == 0 {
		t.Fatalf("compact response %v: want the leader's finished reclaim with bytes freed", resp)
	}

	// Every node reclaims on its own, in the background: wait until each reports (Status) a
	// completed pass covering the compaction, then check its files shrank.
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range c.Nodes {
		for {
			st, err := n.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rs := st.GetReclaim()
			if rs.GetLastError() != "" {
				t.Fatalf("%s: reclaim failed: %s", n.ID, rs.GetLastError())
			}
			if !rs.GetRunning() && rs.GetCoveredIndex() >= resp.GetLogIndex() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: reclaim never covered index %d: %v", n.ID, resp.GetLogIndex(), rs)
			}
			time.Sleep(50 * time.Millisecond) // polling the node's status, bounded
		}
		now := segmentBytesOnDisk(t, n)
		t.Logf("%s: segment bytes %d -> %d", n.ID, before[n.ID], now)
		if now > before[n.ID]*3/4 {
			t.Fatalf("%s: segment bytes %d -> %d, want a drop of at least a quarter", n.ID, before[n.ID], now)
		}
	}

	// Reads: $all is what it was without the tombstoned streams' events; the marker is not
	// shown; live streams read the same on every node; digests agree.
	var want []*cairnpb.RecordedEvent
	for _, e := range allBefore {
		var s int
		if _, err := fmt.Sscanf(e.GetStream(), "c-%d", &s); err == nil && s%2 == 0 && e.GetType() != "$tombstone" {
			continue
		}
		want = append(want, e)
	}
	marker, err := leader.Events().Append(ctx, &cairnpb.AppendRequest{Stream: "marker", Expected: anyRev(), Events: []*cairnpb.EventData{event(newUUID())}})
	if err != nil {
		t.Fatal(err)
	}
	digest := ""
	for _, n := range c.Nodes {
		got, err := readAll(ctx, n, marker.GetLogIndex())
		if err != nil {
			t.Fatal(err)
		}
		got = got[:len(got)-1] // the final marker
		if len(got) != len(want) {
			t.Fatalf("%s: $all has %d events after compaction, want %d", n.ID, len(got), len(want))
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Fatalf("%s: $all event %d differs:\n got %v\nwant %v", n.ID, i, got[i], want[i])
			}
		}
		rs, err := n.Events().Read(ctx, &cairnpb.ReadRequest{Stream: "c-1", Limit: 1000, Options: stale(marker.GetLogIndex())})
		if err != nil || len(rs.GetEvents()) != batches*perBatch {
			t.Fatalf("%s: read c-1: %d events, %v", n.ID, len(rs.GetEvents()), err)
		}
		d, err := n.Cluster().Digest(ctx, &cairnpb.DigestRequest{UpToPosition: marker.GetLastPosition()})
		if err != nil {
			t.Fatal(err)
		}
		if digest != "" && d.GetSha256() != digest {
			t.Fatalf("%s: digest differs after compaction", n.ID)
		}
		digest = d.GetSha256()
	}
}
