package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/tlsutil"
)

type tlsInitFlags struct {
	dir, nodes, hosts, clients, cluster string
	validity                            time.Duration
}

func newTLSCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "tls",
		Short: "Create development TLS material (CA, node and client certificates, gossip key)",
	}
	f := &tlsInitFlags{}
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a development CA, node and client certificates and a gossip key in a folder",
		Long: `Create, in --dir, everything a cluster needs to run with mutual TLS:

  ca.crt, ca.key                the cluster CA (ECDSA P-256; reused when already there)
  node-<id>.crt, node-<id>.key  one per --nodes id, for cairnd --tls-cert/--tls-key
  client-<name>.crt/.key        one per --clients name, for cairnctl --cert/--key
  gossip.key                    memberlist keyring for cairnd --gossip-key-file (kept when there)

Every certificate carries the identity cairn://<cluster-name>/<node|client>/<name> as a URI SAN;
nodes accept peers only with certificates of this CA and cluster name. Node certificates also
list --hosts (IPs and DNS names) and their own id as SANs. Keys are written 0600. Running it
again with more nodes issues them from the same CA. For development and tests: production
certificates come from your own CA with the same URI SANs.`,
		Example: `  cairnctl tls init --dir tls --nodes node1,node2,node3 --cluster-name dev
  cairnd --node-id node1 --tls-ca tls/ca.crt --tls-cert tls/node-node1.crt \
    --tls-key tls/node-node1.key --gossip-key-file tls/gossip.key ...
  cairnctl --ca tls/ca.crt --cert tls/client-admin.crt --key tls/client-admin.key status`,
		Args: exactArgs(0),
		RunE: a.run(func(_ context.Context, _ *cobra.Command, _ []string) error { return a.tlsInit(f) }),
	}
	fl := initCmd.Flags()
	fl.StringVar(&f.dir, "dir", "", "folder to write into (created 0700; required)")
	fl.StringVar(&f.nodes, "nodes", "", "comma-separated node ids to issue node certificates for (required)")
	fl.StringVar(&f.hosts, "hosts", "127.0.0.1,localhost", "comma-separated IPs and DNS names added to every node certificate")
	fl.StringVar(&f.clients, "clients", "admin", "comma-separated client certificates to issue: name[=admin|writer|reader[:prefix[;prefix]...]]; \"admin\" alone has the API role admin")
	fl.StringVar(&f.cluster, "cluster-name", "", "cluster name written into every certificate (required; a-z, 0-9, '-')")
	fl.DurationVar(&f.validity, "validity", 365*24*time.Hour, "validity of the CA and certificates")

	keyCmd := &cobra.Command{
		Use:   "gossip-key",
		Short: "Print a new random gossip key (base64, AES-256) for a gossip key file",
		Long: `Print a new random gossip key. To rotate the gossip key without a restart: add it as a new
line to every node's gossip key file and reload (SIGHUP, or wait --tls-reload-interval); then
move it to the first line (primary) everywhere and reload; then delete the old line and reload.`,
		Args: exactArgs(0),
		RunE: a.run(func(_ context.Context, _ *cobra.Command, _ []string) error {
			k, err := tlsutil.NewGossipKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(a.io.out, k)
			return nil
		}),
	}
	var rotateKey string
	rotateCmd := &cobra.Command{
		Use:   "rotate-gossip-key",
		Short: "Install a new primary gossip key on every member, then remove the old ones",
		Long: `Rotate the gossip key of the whole cluster without a restart, through each member's
GossipKey admin call: install the new key on every member (all can then decrypt it), make it
primary on every member (all now encrypt with it), then prune every other key on every member.
Members are the raft configuration of the first --addr node that answers, reached at their gRPC
addresses. Each node also rewrites its gossip key file, so restarts keep the new key; a node
whose key file is read-only refuses (nothing changes on it) and the rotation stops.

If a step fails on some member, the rotation stops before the next step, and running it again
with --new-key set to the same key resumes it safely (every step is idempotent). Without --new-key a
new random key is generated and printed once: nodes that join later need it in their key file.`,
		Args: exactArgs(0),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			return a.rotateGossipKey(ctx, rotateKey)
		}),
	}
	rotateCmd.Flags().StringVar(&rotateKey, "new-key", "", "the new key, base64 (default: a new random AES-256 key)")
	listCmd := &cobra.Command{
		Use:   "gossip-keys",
		Short: "Show every member's gossip keyring as fingerprints",
		Args:  exactArgs(0),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			return a.forEachMember(ctx, client.GossipKeyList, "", "keys")
		}),
	}
	root.AddCommand(initCmd, keyCmd, rotateCmd, listCmd)
	return root
}

// rotateGossipKey runs install, use and prune of key on every member, step by step.
func (a *app) rotateGossipKey(ctx context.Context, key string) error {
	generated := key == ""
	if generated {
		var err error
		if key, err = tlsutil.NewGossipKey(); err != nil {
			return err
		}
	} else if b, err := base64.StdEncoding.DecodeString(key); err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
		return usagef("--new-key must be a base64 key of 16, 24 or 32 bytes")
	}
	for _, step := range []struct {
		op   client.GossipKeyOp
		name string
	}{{client.GossipKeyInstall, "install"}, {client.GossipKeyUse, "use"}, {client.GossipKeyPrune, "prune"}} {
		if err := a.forEachMember(ctx, step.op, key, step.name); err != nil {
			if generated {
				fmt.Fprintf(a.io.err, "the new key, needed to resume with --new-key: %s\n", key)
			}
			return fmt.Errorf("gossip key rotation stopped at %q (safe to run again with the same --new-key): %w", step.name, err)
		}
	}
	if generated {
		fmt.Fprintf(a.io.out, "new gossip key (put it in the key file of nodes that join later): %s\n", key)
	}
	return nil
}

// forEachMember applies op to the gossip keyring of every member of the raft configuration and
// prints each node's keyring afterwards; it stops at the first failure.
func (a *app) forEachMember(ctx context.Context, op client.GossipKeyOp, key, step string) error {
	st, err := a.nodeStatus(ctx, false)
	if err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	for _, m := range st.Members {
		if m.GRPCAddress == "" {
			return fmt.Errorf("member %s has no known gRPC address", m.ID)
		}
		r, err := c.GossipKey(ctx, op, key, client.ToAddress(m.GRPCAddress))
		if err != nil {
			return fmt.Errorf("member %s (%s): %w", m.ID, m.GRPCAddress, err)
		}
		if a.json {
			if err := a.printJSON(map[string]any{"step": step, "node_id": r.NodeID, "primary": r.Primary, "keys": r.Keys}); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(a.io.out, "%-8s %-10s primary %s  keys %s\n", step, r.NodeID, r.Primary, strings.Join(r.Keys, ","))
	}
	return nil
}

func (a *app) tlsInit(f *tlsInitFlags) error {
	if f.dir == "" {
		return usagef("--dir is required")
	}
	if f.cluster == "" {
		return usagef("--cluster-name is required")
	}
	if err := tlsutil.ValidClusterName(f.cluster); err != nil {
		return usagef("--cluster-name: %w", err)
	}
	nodes, clients := splitCSV(f.nodes), splitCSV(f.clients)
	if len(nodes) == 0 {
		return usagef("--nodes names no node")
	}
	for _, n := range nodes {
		if strings.ContainsAny(n, "/\\ ") {
			return usagef("name %q may not contain '/', '\\' or spaces", n)
		}
	}
	clientIDs := make([]tlsutil.Identity, len(clients))
	for i, spec := range clients {
		id, err := tlsutil.ParseClientSpec(spec)
		if err != nil {
			return usagef("--clients: %w", err)
		}
		clientIDs[i] = id
	}
	if f.validity <= 0 {
		return usagef("--validity must be positive")
	}
	if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: f.dir, Cluster: f.cluster, Nodes: nodes, Hosts: splitCSV(f.hosts),
		Clients: clients, Validity: f.validity}); err != nil {
		return err
	}
	fmt.Fprintf(a.io.out, "wrote TLS material for cluster %q to %s:\n", f.cluster, f.dir)
	fmt.Fprintf(a.io.out, "  CA          %s\n", filepath.Join(f.dir, tlsutil.CACertFile))
	for _, n := range nodes {
		nf := tlsutil.NodeFiles(f.dir, n)
		fmt.Fprintf(a.io.out, "  node %-6s %s %s\n", n, nf.Cert, nf.Key)
	}
	for _, id := range clientIDs {
		cf := tlsutil.ClientFiles(f.dir, id.Name)
		fmt.Fprintf(a.io.out, "  client %-4s %s %s", id.Name, cf.Cert, cf.Key)
		if id.APIRole != "" {
			fmt.Fprintf(a.io.out, " (API role %s%s)", id.APIRole, prefixNote(id.Prefixes))
		}
		fmt.Fprintln(a.io.out)
	}
	fmt.Fprintf(a.io.out, "  gossip key  %s\n", filepath.Join(f.dir, tlsutil.GossipKeyFile))
	return nil
}

// splitCSV splits a comma-separated list, dropping blanks.
func splitCSV(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// prefixNote describes a certificate's stream prefixes for tls init's listing.
func prefixNote(prefixes []string) string {
	if len(prefixes) == 0 {
		return ""
	}
	return " on " + strings.Join(prefixes, ", ")
}
