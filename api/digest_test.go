package api

import (
	"testing"
	"time"

	"github.com/cairndb/cairn/api/cairnpb"
)

func TestDigest(t *testing.T) {
	a, b := newFakeNode(t, "a"), newFakeNode(t, "b")
	// Two replicas of one log: the same leader-assigned timestamps.
	fixed := func() time.Time { return time.Unix(1_700_000_000, 0) }
	a.clock, b.clock = fixed, fixed
	sa, sb := mustNewServer(t, a), mustNewServer(t, b)
	ctx := ctxT(t)
	for i := 1; i <= 5; i++ {
		e := evt(i, "A")
		mustAppend(t, sa.events, "s", e)
		mustAppend(t, sb.events, "s", e)
	}
	da, err := sa.cluster.Digest(ctx, &cairnpb.DigestRequest{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sb.cluster.Digest(ctx, &cairnpb.DigestRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if da.GetSha256() != db.GetSha256() || da.GetLastPosition() != 5 || da.GetNodeId() != "a" || da.GetAppliedIndex() == 0 {
		t.Fatalf("digests %v %v", da, db)
	}
	mustAppend(t, sb.events, "s", evt(6, "A"))
	db, _ = sb.cluster.Digest(ctx, &cairnpb.DigestRequest{})
	if db.GetSha256() == da.GetSha256() {
		t.Fatal("digest unchanged after an append")
	}
	db, _ = sb.cluster.Digest(ctx, &cairnpb.DigestRequest{UpToPosition: 5})
	if db.GetSha256() != da.GetSha256() || db.GetLastPosition() != 5 {
		t.Fatalf("prefix digest %v, want %v", db, da)
	}
}
