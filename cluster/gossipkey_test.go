package cluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cairndb/cairn/internal/tlsutil"
)

// The gossip keyring rotates without a restart: add the new key, make it primary, drop the old
// one, reloading every node after each step. Afterwards a node holding only the new key joins,
// one holding only the old key does not, and a bad file changes nothing.
func TestGossipKeyRotationByReload(t *testing.T) {
	dir := t.TempDir()
	k1, _ := tlsutil.NewGossipKey()
	k2, _ := tlsutil.NewGossipKey()
	shared := filepath.Join(dir, "gossip.key")
	write := func(path string, keys ...string) {
		t.Helper()
		var b bytes.Buffer
		for _, k := range keys {
			b.WriteString(k + "\n")
		}
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(shared, k1)
	var nodes []*testNode
	var seeds []string
	for i, id := range []string{"node1", "node2"} {
		cfg := testConfig(t, id, filepath.Join(dir, id), seeds, 2)
		cfg.GossipKeyFile = shared
		n := mustNewNode(t, cfg)
		if i == 0 {
			seeds = []string{n.GossipAddr()}
		}
		nodes = append(nodes, n)
	}
	waitLeader(t, nodes)
	reloadAll := func(keys ...string) {
		t.Helper()
		write(shared, keys...)
		for _, n := range nodes {
			if err := n.ReloadGossipKeys(); err != nil {
				t.Fatalf("%s: reload: %v", n.ID(), err)
			}
		}
	}
	reloadAll(k1, k2) // new key as secondary
	reloadAll(k2, k1) // new key primary
	reloadAll(k2)     // old key gone
	for _, n := range nodes {
		if got := len(n.keyring.GetKeys()); got != 1 {
			t.Fatalf("%s holds %d keys after rotation, want 1", n.ID(), got)
		}
	}

	// A bad file leaves the keyring as it was.
	write(shared, "not base64!")
	if err := nodes[0].ReloadGossipKeys(); err == nil {
		t.Fatal("a malformed key file was accepted")
	}
	if len(nodes[0].keyring.GetKeys()) != 1 {
		t.Fatal("a failed reload changed the keyring")
	}
	write(shared, k2)

	oldOnly, newOnly := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	write(oldOnly, k1)
	write(newOnly, k2)
	for _, x := range []struct {
		id, key string
		in      bool
	}{{"node3", newOnly, true}, {"node4", oldOnly, false}} {
		cfg := testConfig(t, x.id, filepath.Join(dir, x.id), seeds, 0)
		cfg.GossipKeyFile = x.key
		mustNewNode(t, cfg)
		if x.in {
			deadline := time.Now().Add(15 * time.Second)
			for !slices.Contains(nodes[0].GossipMembers(), x.id) {
				if time.Now().After(deadline) {
					t.Fatalf("%s with the new key did not join gossip: %v", x.id, nodes[0].GossipMembers())
				}
				time.Sleep(20 * time.Millisecond) // polling gossip membership, bounded
			}
		} else if slices.Contains(nodes[0].GossipMembers(), x.id) {
			// Open returned after its own join attempts failed (5 s wiped-member check).
			t.Fatalf("%s with only the old key joined gossip", x.id)
		}
	}

	plain := mustNewNode(t, testConfig(t, "node5", filepath.Join(dir, "node5"), nil, 0))
	if err := plain.ReloadGossipKeys(); !errors.Is(err, ErrGossipPlaintext) {
		t.Fatalf("reload without a key file = %v, want ErrGossipPlaintext", err)
	}
}
