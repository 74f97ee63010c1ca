package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairndb/cairn/client"
)

// errNotServing is the error of a health check whose node answered but is not serving.
var errNotServing = errors.New("not serving")

// statusJSON is the --json form of status.
type statusJSON struct {
	Addr          string       `json:"addr"`
	NodeID        string       `json:"node_id"`
	Role          string       `json:"role"`
	LeaderID      string       `json:"leader_id"`
	LeaderAddress string       `json:"leader_address"`
	Term          uint64       `json:"term"`
	CommitIndex   uint64       `json:"commit_index"`
	AppliedIndex  uint64       `json:"applied_index"`
	LastLogIndex  uint64       `json:"last_log_index"`
	LastContact   string       `json:"last_contact,omitempty"`
	Version       string       `json:"version"`
	Security      string       `json:"security"`
	Reclaim       reclaimJSON  `json:"reclaim"`
	Members       []memberJSON `json:"members"`
}

// reclaimJSON is the --json form of a node's space reclaim state.
type reclaimJSON struct {
	Running             bool   `json:"running"`
	Compactions         uint64 `json:"compactions"`
	CoveredIndex        uint64 `json:"covered_index"`
	BytesReclaimedTotal int64  `json:"bytes_reclaimed_total"`
	SegmentsRewritten   int    `json:"segments_rewritten_total"`
	LastError           string `json:"last_error,omitempty"`
}

// memberJSON is the --json form of a member.
type memberJSON struct {
	ID           string `json:"id"`
	Suffrage     string `json:"suffrage"`
	Role         string `json:"role"`
	RaftAddress  string `json:"raft_address"`
	GRPCAddress  string `json:"grpc_address"`
	AppliedIndex uint64 `json:"applied_index"`
	Lag          uint64 `json:"lag"`
	Gossip       string `json:"gossip"`
}

func toStatusJSON(s *client.Status) statusJSON {
	out := statusJSON{
		Addr: s.Addr, NodeID: s.NodeID, Role: s.Role, LeaderID: s.LeaderID, LeaderAddress: s.LeaderAddress,
		Term: s.Term, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, LastLogIndex: s.LastLogIndex,
		Version: s.Version, Members: make([]memberJSON, len(s.Members)),
		Reclaim: reclaimJSON{Running: s.Reclaim.Running, Compactions: s.Reclaim.Compactions,
			CoveredIndex: s.Reclaim.CoveredIndex, BytesReclaimedTotal: s.Reclaim.Total.BytesReclaimed,
			SegmentsRewritten: s.Reclaim.Total.SegmentsRewritten, LastError: s.Reclaim.LastError},
	}
	if s.HasContact {
		out.LastContact = s.LastContact.String()
	}
	for i, m := range s.Members {
		out.Members[i] = memberJSON{
			ID: m.ID, Suffrage: m.Suffrage, Role: m.Role, RaftAddress: m.RaftAddress, GRPCAddress: m.GRPCAddress,
			AppliedIndex: m.AppliedIndex, Lag: m.Lag, Gossip: m.Gossip,
		}
	}
	return out
}

// nodeStatus asks the --addr nodes in order, each once, and returns the first answer: "this
// node's view" is the view of the first node that answers.
func (a *app) nodeStatus(ctx context.Context, withLag bool) (*client.Status, error) {
	addrs, err := a.addrs()
	if err != nil {
		return nil, err
	}
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var errs []error
	for _, addr := range addrs {
		s, err := c.Status(ctx, withLag, client.ToAddress(addr), client.MaxAttempts(1))
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func newStatusCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show a node's view: id, role, leader, term, indexes, last leader contact",
		Long: `Show the view of the first --addr node that answers: its id and role, the leader it
knows, its raft term, commit, applied and last log index, and the time since it last heard
from a leader, and SECURITY: "mutual TLS", or "INSECURE dev mode" when the node answered a
plaintext call (only a node started with --dev-insecure does).`,
		Args: exactArgs(0),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			s, err := a.nodeStatus(ctx, false)
			if err != nil {
				return err
			}
			if a.json {
				out := toStatusJSON(s)
				out.Security = a.security()
				return a.printJSON(out)
			}
			leader := "(none known)"
			if s.LeaderID != "" {
				leader = fmt.Sprintf("%s (%s)", s.LeaderID, s.LeaderAddress)
			}
			contact := "-"
			if s.HasContact {
				contact = s.LastContact.String() + " ago"
			}
			tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
			for _, row := range [][2]string{
				{"NODE", s.NodeID},
				{"ADDRESS", s.Addr},
				{"ROLE", s.Role},
				{"LEADER", leader},
				{"TERM", strconv.FormatUint(s.Term, 10)},
				{"COMMIT INDEX", strconv.FormatUint(s.CommitIndex, 10)},
				{"APPLIED INDEX", strconv.FormatUint(s.AppliedIndex, 10)},
				{"LAST LOG INDEX", strconv.FormatUint(s.LastLogIndex, 10)},
				{"LAST CONTACT", contact},
				{"MEMBERS", strconv.Itoa(len(s.Members))},
				{"VERSION", s.Version},
				{"SECURITY", a.security()},
				{"RECLAIM", reclaimSummary(s.Reclaim)},
			} {
				fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
			}
			return tw.Flush()
		}),
	}
}

func newMembersCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the cluster's members with roles, addresses, applied index and lag",
		Long: `List the members of the raft configuration as the first --addr node that answers
sees them. That node asks every member for its applied index, so LAG (the leader's commit index
minus the member's applied index) is shown; "-" means the member could not be asked.`,
		Args: exactArgs(0),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			s, err := a.nodeStatus(ctx, true)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(toStatusJSON(s).Members)
			}
			tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSUFFRAGE\tROLE\tRAFT ADDRESS\tGRPC ADDRESS\tAPPLIED\tLAG\tGOSSIP")
			for _, m := range s.Members {
				applied, lag := "-", "-"
				if m.Role != "unknown" {
					applied, lag = strconv.FormatUint(m.AppliedIndex, 10), strconv.FormatUint(m.Lag, 10)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
					m.ID, m.Suffrage, m.Role, dash(m.RaftAddress), dash(m.GRPCAddress), applied, lag, m.Gossip)
			}
			return tw.Flush()
		}),
	}
}

// healthJSON is the --json form of one health check.
type healthJSON struct {
	Addr   string `json:"addr"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func newHealthCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Check that every --addr node is serving (gRPC health); for health checks",
		Long: `Ask every --addr node, with the standard gRPC health service, whether it is serving.
Exits 0 when all are SERVING, 4 otherwise. Made for container health checks:

  cairnctl --addr 127.0.0.1:7101 --timeout 2s health`,
		Args: exactArgs(0),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			addrs, err := a.addrs()
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			defer c.Close()
			var (
				results []healthJSON
				errs    []error
			)
			for _, addr := range addrs {
				r := healthJSON{Addr: addr, Status: "SERVING"}
				ok, err := c.Health(ctx, client.ToAddress(addr))
				switch {
				case err != nil:
					r.Status, r.Error = "UNREACHABLE", err.Error()
					errs = append(errs, err)
				case !ok:
					r.Status = "NOT_SERVING"
					errs = append(errs, fmt.Errorf("%s: %w", addr, errNotServing))
				}
				results = append(results, r)
			}
			if a.json {
				if err := a.printJSON(results); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					fmt.Fprintf(a.io.out, "%s\t%s\n", r.Addr, r.Status)
				}
			}
			return errors.Join(errs...)
		}),
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// reclaimSummary is the status line of a node's space reclaim.
func reclaimSummary(r client.ReclaimStatus) string {
	state := "idle"
	if r.Running {
		state = "running"
	}
	out := fmt.Sprintf("%s; %d compaction(s), covered to index %d; %d bytes reclaimed in %d segment rewrite(s) since start",
		state, r.Compactions, r.CoveredIndex, r.Total.BytesReclaimed, r.Total.SegmentsRewritten)
	if r.LastError != "" {
		out += "; last pass ended early: " + r.LastError
	}
	return out
}
