package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairndb/cairn/client"
)

// newAdminCommands builds the operator commands: membership, leadership, snapshots, raft
// settings. Membership commands go to the leader (any --addr node forwards); snapshot and raft
// config act on one node: the first --addr, or --node.
func newAdminCommands(a *app) []*cobra.Command {
	simple := func(use, short, long string, do func(ctx context.Context, c *client.Client, id string) error, done string) *cobra.Command {
		return &cobra.Command{
			Use: use + " <node-id>", Short: short, Long: long, Args: exactArgs(1),
			RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
				if err := do(ctx, c, args[0]); err != nil {
					return err
				}
				return a.report(map[string]string{"node_id": args[0], "result": done}, fmt.Sprintf("%s: %s", args[0], done))
			}),
		}
	}
	var voter bool
	join := &cobra.Command{
		Use:   "join <node-id> <raft-address>",
		Short: "Add a server to the raft configuration (as a non-voter unless --voter)",
		Long: `Add a server to the raft configuration. Nodes started with --join find the cluster through
gossip and are added by the leader on their own; use this for a node that cannot gossip with the
cluster. It joins as a non-voter (and is promoted by the leader once caught up, if it gossips,
or with 'cairnctl promote'); --voter adds it as a voter at once, for a node already caught up.`,
		Args: exactArgs(2),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			if err := c.AddServer(ctx, args[0], args[1], voter); err != nil {
				return err
			}
			return a.report(map[string]any{"node_id": args[0], "raft_address": args[1], "voter": voter},
				fmt.Sprintf("%s (%s) added as a %s", args[0], args[1], map[bool]string{true: "voter", false: "non-voter"}[voter]))
		}),
	}
	join.Flags().BoolVar(&voter, "voter", false, "add as a voter at once")

	var to string
	transfer := &cobra.Command{
		Use:   "transfer-leader",
		Short: "Hand leadership to another voter (--to, else the most up-to-date one)",
		Args:  exactArgs(0),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, _ []string) error {
			if err := c.TransferLeader(ctx, to); err != nil {
				return err
			}
			target := to
			if target == "" {
				target = "the most up-to-date voter"
			}
			return a.report(map[string]string{"to": to, "result": "transferred"}, "leadership transferred to "+target)
		}),
	}
	transfer.Flags().StringVar(&to, "to", "", "id of the voter to hand leadership to")

	var node string
	nodeOpt := func() []client.CallOption {
		if node != "" {
			return []client.CallOption{client.ToAddress(node)}
		}
		if addrs, err := a.addrs(); err == nil && len(addrs) > 0 {
			return []client.CallOption{client.ToAddress(addrs[0])}
		}
		return nil
	}
	snapshot := &cobra.Command{
		Use:   "snapshot",
		Short: "Make a node snapshot its state and compact its raft log",
		Args:  exactArgs(0),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, _ []string) error {
			s, err := c.Snapshot(ctx, nodeOpt()...)
			if err != nil {
				return err
			}
			return a.report(map[string]any{"id": s.ID, "index": s.Index, "term": s.Term, "size_bytes": s.SizeBytes,
				"duration": s.Duration.String()},
				fmt.Sprintf("snapshot %s at index %d (term %d): %d bytes in %v", s.ID, s.Index, s.Term, s.SizeBytes, s.Duration))
		}),
	}
	snapshot.Flags().StringVar(&node, "node", "", "gRPC address of the node (default: the first --addr)")

	var noWait bool
	compact := &cobra.Command{
		Use:   "compact",
		Short: "Make hidden events gone for good on every node and reclaim their space",
		Long: `Propose a compaction: every node applies it at the same log index, from then on treats the
events that deletes and tombstones hide as gone, and rewrites its sealed segments without them in
the background (appends are never blocked). The command waits for the leader's reclaim and prints
what it freed; --no-wait returns once the compaction is applied.`,
		Args: exactArgs(0),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, _ []string) error {
			ci, err := c.Compact(ctx, noWait)
			if err != nil {
				return err
			}
			r := ci.Reclaim
			return a.report(map[string]any{"log_index": ci.LogIndex, "position": ci.Position, "node_id": ci.NodeID,
				"status": ci.Status, "segments_scanned": r.SegmentsScanned, "segments_rewritten": r.SegmentsRewritten,
				"records_redacted": r.RecordsRedacted, "bytes_before": r.BytesBefore, "bytes_after": r.BytesAfter,
				"bytes_reclaimed": r.BytesReclaimed, "duration": r.Duration.String(),
				"total_bytes_reclaimed": ci.Total.BytesReclaimed},
				fmt.Sprintf("compaction at index %d (position %d); reclaim on %s %s: %d of %d segments rewritten, %d events redacted, %d bytes reclaimed in %v",
					ci.LogIndex, ci.Position, ci.NodeID, ci.Status, r.SegmentsRewritten, r.SegmentsScanned, r.RecordsRedacted, r.BytesReclaimed, r.Duration))
		}),
	}
	compact.Flags().BoolVar(&noWait, "no-wait", false, "return once the compaction is applied, without waiting for the reclaim")

	raftCmd := &cobra.Command{Use: "raft", Short: "Raft settings of a node"}
	config := &cobra.Command{Use: "config", Short: "Get or set a node's reloadable raft settings"}
	get := &cobra.Command{
		Use: "get", Short: "Show a node's reloadable raft settings", Args: exactArgs(0),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, _ []string) error {
			rc, err := c.GetRaftConfig(ctx, nodeOpt()...)
			if err != nil {
				return err
			}
			return a.printRaftConfig(rc)
		}),
	}
	var set client.RaftConfig
	setCmd := &cobra.Command{
		Use:   "set",
		Short: "Change a node's reloadable raft settings (unset flags keep their value)",
		Long: `Change a node's reloadable raft settings. Each node has its own: run it against every node
(--node). Unset flags keep their current value.`,
		Args: exactArgs(0),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			if set == (client.RaftConfig{}) {
				return usagef("nothing to set: give at least one of --trailing-logs, --snapshot-interval, --snapshot-threshold, --heartbeat-timeout, --election-timeout")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			defer c.Close()
			rc, err := c.SetRaftConfig(ctx, set, nodeOpt()...)
			if err != nil {
				return err
			}
			return a.printRaftConfig(rc)
		}),
	}
	f := setCmd.Flags()
	f.Uint64Var(&set.TrailingLogs, "trailing-logs", 0, "log entries kept after a snapshot")
	f.DurationVar(&set.SnapshotInterval, "snapshot-interval", 0, "how often to check whether to snapshot")
	f.Uint64Var(&set.SnapshotThreshold, "snapshot-threshold", 0, "entries since the last snapshot that trigger one")
	f.DurationVar(&set.HeartbeatTimeout, "heartbeat-timeout", 0, "follower heartbeat timeout")
	f.DurationVar(&set.ElectionTimeout, "election-timeout", 0, "candidate election timeout")
	for _, c := range []*cobra.Command{get, setCmd} {
		c.Flags().StringVar(&node, "node", "", "gRPC address of the node (default: the first --addr)")
	}
	config.AddCommand(get, setCmd)
	raftCmd.AddCommand(config)

	return []*cobra.Command{
		join,
		simple("remove", "Remove a server from the raft configuration",
			"Remove a server from the raft configuration: the only way a dead voter leaves the cluster.",
			func(ctx context.Context, c *client.Client, id string) error { return c.RemoveServer(ctx, id) }, "removed"),
		simple("promote", "Make a non-voter a voter", "Make a non-voter a voter now, caught up or not.",
			func(ctx context.Context, c *client.Client, id string) error { return c.Promote(ctx, id) }, "promoted to voter"),
		simple("demote", "Make a voter a non-voter", `Make a voter a non-voter. A node that gossips as a voter is promoted back by the leader once
caught up: demote a node you are about to remove, or run read replicas with --non-voter.`,
			func(ctx context.Context, c *client.Client, id string) error { return c.Demote(ctx, id) }, "demoted to non-voter"),
		transfer, snapshot, compact, raftCmd,
	}
}

// withClient is run for commands that need a client: it opens one for the body and closes it.
func (a *app) withClient(body func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		defer c.Close()
		return body(ctx, c, cmd, args)
	})
}

// report prints v as JSON with --json, else the line.
func (a *app) report(v any, line string) error {
	if a.json {
		return a.printJSON(v)
	}
	_, err := fmt.Fprintln(a.io.out, line)
	return err
}

func (a *app) printRaftConfig(rc *client.RaftConfig) error {
	if a.json {
		return a.printJSON(map[string]any{"node_id": rc.NodeID, "trailing_logs": rc.TrailingLogs,
			"snapshot_interval": rc.SnapshotInterval.String(), "snapshot_threshold": rc.SnapshotThreshold,
			"heartbeat_timeout": rc.HeartbeatTimeout.String(), "election_timeout": rc.ElectionTimeout.String()})
	}
	tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"NODE", rc.NodeID},
		{"TRAILING LOGS", fmt.Sprint(rc.TrailingLogs)},
		{"SNAPSHOT INTERVAL", rc.SnapshotInterval.String()},
		{"SNAPSHOT THRESHOLD", fmt.Sprint(rc.SnapshotThreshold)},
		{"HEARTBEAT TIMEOUT", rc.HeartbeatTimeout.String()},
		{"ELECTION TIMEOUT", rc.ElectionTimeout.String()},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], strings.TrimSpace(row[1]))
	}
	return tw.Flush()
}
