package api_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/internal/testcluster"
)

func mustConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func clusterClient(t *testing.T, addr string) cairnpb.ClusterClient {
	return cairnpb.NewClusterClient(mustConn(t, addr))
}

// waitSuffrage waits until the node behind c sees id with the wanted suffrage ("absent" for not
// in the configuration): a follower learns configuration changes one replication round later.
func waitSuffrage(t *testing.T, c cairnpb.ClusterClient, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.Status(ctx, &cairnpb.StatusRequest{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got = "absent"
		for _, m := range st.GetMembers() {
			if m.GetId() == id {
				got = m.GetSuffrage()
			}
		}
		if got == want {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling the node's configuration, bounded
	}
	t.Fatalf("%s is %s, want %s", id, got, want)
}

// Operator calls through a follower's address: membership changes are forwarded to the leader.
func TestAdminThroughFollower(t *testing.T) {
	c := testcluster.New(t, 3)
	leader := c.WaitLeader(t)
	followers := c.Followers(leader)
	via := clusterClient(t, followers[0].Addr)
	target := followers[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := via.Demote(ctx, &cairnpb.DemoteRequest{Id: target.ID()}); err != nil {
		t.Fatalf("demote: %v", err)
	}
	waitSuffrage(t, via, target.ID(), "nonvoter")
	if _, err := via.Promote(ctx, &cairnpb.PromoteRequest{Id: target.ID()}); err != nil {
		t.Fatalf("promote: %v", err)
	}
	waitSuffrage(t, via, target.ID(), "voter")

	if _, err := via.TransferLeader(ctx, &cairnpb.TransferLeaderRequest{ToId: target.ID()}); err != nil {
		t.Fatalf("transfer leader: %v", err)
	}
	if l := c.WaitLeader(t); l.ID() != target.ID() {
		t.Fatalf("leader is %s, want %s", l.ID(), target.ID())
	}

	_, err := via.RemoveServer(ctx, &cairnpb.RemoveServerRequest{Id: "no-such-node"})
	if st := status.Convert(err); st.Code() != codes.NotFound {
		t.Fatalf("remove unknown server: %v", err)
	}
	_, err = via.AddServer(ctx, &cairnpb.AddServerRequest{Id: "x"})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument {
		t.Fatalf("add server without address: %v", err)
	}

	// The old leader leaves the configuration for good.
	if _, err := via.RemoveServer(ctx, &cairnpb.RemoveServerRequest{Id: leader.ID()}); err != nil {
		t.Fatalf("remove %s: %v", leader.ID(), err)
	}
	waitSuffrage(t, via, leader.ID(), "absent")
}

func TestSnapshotAndRaftConfig(t *testing.T) {
	c := testcluster.New(t, 3)
	n := c.Followers(c.WaitLeader(t))[0]
	cl := clusterClient(t, n.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ev := cairnpb.NewEventsClient(mustConn(t, n.Addr))
	app, err := ev.Append(ctx, &cairnpb.AppendRequest{Stream: "s", Events: []*cairnpb.EventData{{Type: "T"}}})
	if err != nil {
		t.Fatal(err)
	}
	// The append went through the leader: wait until this follower applied it, so it has
	// something new to snapshot.
	if _, err := ev.Read(ctx, &cairnpb.ReadRequest{Stream: "s", Options: &cairnpb.ReadOptions{
		Consistency: cairnpb.Consistency_CONSISTENCY_STALE, MinLogIndex: app.GetLogIndex()}}); err != nil {
		t.Fatal(err)
	}
	snap, err := cl.Snapshot(ctx, &cairnpb.SnapshotRequest{})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if snap.GetIndex() == 0 || snap.GetId() == "" {
		t.Fatalf("snapshot %v", snap)
	}

	got, err := cl.GetRaftConfig(ctx, &cairnpb.GetRaftConfigRequest{})
	if err != nil || got.GetConfig().GetTrailingLogs() == 0 || got.GetNodeId() != n.ID() {
		t.Fatalf("get raft config: %v %v", got, err)
	}
	set, err := cl.SetRaftConfig(ctx, &cairnpb.SetRaftConfigRequest{Config: &cairnpb.RaftConfig{
		TrailingLogs: 77, SnapshotInterval: durationpb.New(45 * time.Second)}})
	if err != nil {
		t.Fatalf("set raft config: %v", err)
	}
	if set.GetConfig().GetTrailingLogs() != 77 || set.GetConfig().GetSnapshotInterval().AsDuration() != 45*time.Second ||
		set.GetConfig().GetSnapshotThreshold() != got.GetConfig().GetSnapshotThreshold() {
		t.Fatalf("after set: %v (before %v)", set.GetConfig(), got.GetConfig())
	}
	again, _ := cl.GetRaftConfig(ctx, &cairnpb.GetRaftConfigRequest{})
	if again.GetConfig().GetTrailingLogs() != 77 {
		t.Fatalf("get after set: %v", again.GetConfig())
	}
	_, err = cl.SetRaftConfig(ctx, &cairnpb.SetRaftConfigRequest{Config: &cairnpb.RaftConfig{
		ElectionTimeout: durationpb.New(-time.Second)}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("negative election timeout: %v", err)
	}
}
