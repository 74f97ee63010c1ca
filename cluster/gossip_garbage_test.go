package cluster

import (
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cairndb/cairn/internal/tlsutil"
)

// TestGossipPortSurvivesGarbage (issue 9: a malformed or malicious memberlist peer cannot crash a
// node): random UDP datagrams and TCP streams, some starting with memberlist's own message-type
// bytes, sent to a member's gossip port, with and without keyring encryption, leave the cluster
// serving: the node stays up, keeps its gossip membership and commits proposals afterwards.
func TestGossipPortSurvivesGarbage(t *testing.T) {
	for _, encrypted := range []bool{true, false} {
		name := "plaintext"
		if encrypted {
			name = "encrypted"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			keyFile := ""
			if encrypted {
				k, err := tlsutil.NewGossipKey()
				if err != nil {
					t.Fatal(err)
				}
				keyFile = filepath.Join(dir, "gossip.key")
				if err := os.WriteFile(keyFile, []byte(k+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var nodes []*testNode
			var seeds []string
			for i, id := range []string{"node1", "node2"} {
				cfg := testConfig(t, id, filepath.Join(dir, id), seeds, 2)
				cfg.GossipKeyFile = keyFile
				n := mustNewNode(t, cfg)
				if i == 0 {
					seeds = []string{n.GossipAddr()}
				}
				nodes = append(nodes, n)
			}
			waitLeader(t, nodes)
			target := nodes[0].GossipAddr()
			rng := rand.New(rand.NewPCG(1, 2))
			garbage := func() []byte {
				b := make([]byte, 1+rng.IntN(1400))
				for i := range b {
					b[i] = byte(rng.UintN(256))
				}
				// memberlist's first byte is the message type (ping, push-pull, compound, ...):
				// small values reach its decoders instead of being dropped at once.
				if rng.IntN(2) == 0 {
					b[0] = byte(rng.IntN(16))
				}
				return b
			}
			udp, err := net.Dial("udp", target)
			if err != nil {
				t.Fatal(err)
			}
			defer udp.Close()
			for range 2000 {
				_, _ = udp.Write(garbage()) // loss is fine: the node must only survive
			}
			for range 100 {
				c, err := net.DialTimeout("tcp", target, time.Second)
				if err != nil {
					t.Fatalf("gossip TCP port stopped accepting: %v", err)
				}
				_ = c.SetDeadline(time.Now().Add(time.Second))
				_, _ = c.Write(garbage())
				_ = c.Close()
			}

			leader := waitLeader(t, nodes)
			if _, err := leader.Propose(ctxT(t, 5*time.Second), appendReq("s", 1)); err != nil {
				t.Fatalf("propose after the garbage: %v", err)
			}
			for _, n := range nodes {
				if m := n.GossipMembers(); !slices.Contains(m, "node1") || !slices.Contains(m, "node2") {
					t.Fatalf("%s gossip members after the garbage: %v", n.ID(), m)
				}
			}
		})
	}
}
