package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/client"
)

// tailFlags are tail's own flags.
type tailFlags struct {
	from        uint64
	fromStart   bool
	fromTime    string
	consistency string
	count       int
	filter      client.Filter
}

func newTailCommand(a *app) *cobra.Command {
	f := &tailFlags{}
	cmd := &cobra.Command{
		Use:   "tail [<stream>|$all]",
		Short: "Print events of a stream or of $all as they are appended, until Ctrl-C",
		Long: `Follow a stream, or the global log $all (the default; quote it for the shell), and print
its events as they are appended, until Ctrl-C.

By default only events appended from now on are printed. --from-start prints the whole history
first; --from N starts after revision N (a stream) or position N ($all) — N itself is not
printed; --from-time T starts at the first event committed at or after T (RFC 3339, or a
duration such as 10m meaning that long ago). The filter flags work as for read-all, on a stream too. Notices (caught up, served by
another node) go to stderr; stdout has one line per event, or one JSON object per line with
--json.

The subscription survives node failures: when its node dies it resumes on another node of
--addr without losing or repeating an event. --count stops after that many events; --timeout,
when given, stops after that long (both exit 0).`,
		Example: `  cairnctl tail orders-1
  cairnctl tail '$all' --from-start --type-prefix Order
  cairnctl tail --stream-prefix orders- --json | jq .type`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.MaximumNArgs(1)(cmd, args); err != nil {
				return &usageError{err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			a.ran = true
			stream := client.AllStream
			if len(args) == 1 {
				stream = args[0]
			}
			return a.tail(cmd, stream, f)
		},
	}
	fl := cmd.Flags()
	fl.Uint64Var(&f.from, "from", 0, "start after this revision (stream) or position ($all); exclusive")
	fl.BoolVar(&f.fromStart, "from-start", false, "print the whole history first")
	fl.StringVar(&f.fromTime, "from-time", "", "start at the first event committed at or after this time (RFC 3339, or a duration ago such as 10m)")
	fl.StringVar(&f.consistency, "consistency", "linearizable", "consistency of the start: linearizable, leader or stale")
	fl.IntVar(&f.count, "count", 0, "stop after this many events (0: never)")
	fl.StringArrayVar(&f.filter.StreamPrefixes, "stream-prefix", nil, "only streams whose name starts with this (repeatable)")
	fl.StringArrayVar(&f.filter.EventTypes, "type", nil, "only events of this type (repeatable)")
	fl.StringArrayVar(&f.filter.EventTypePrefixes, "type-prefix", nil, "only event types starting with this (repeatable)")
	fl.StringArrayVar(&f.filter.Tags, "tag", nil, "only events carrying this tag (repeatable; all must match)")
	cmd.MarkFlagsMutuallyExclusive("from", "from-start", "from-time")
	return cmd
}

// tail runs the subscription until the context ends (Ctrl-C, or an explicit --timeout), --count
// events were printed, or it fails.
func (a *app) tail(cmd *cobra.Command, stream string, f *tailFlags) error {
	cons, err := parseConsistency(f.consistency)
	if err != nil {
		return err
	}
	if f.count < 0 {
		return usagef("--count must not be negative")
	}
	opts := client.SubscribeOptions{Stream: stream, FromStart: f.fromStart, Filter: f.filter, Consistency: cons}
	switch {
	case cmd.Flags().Changed("from"):
		opts.From = f.from
	case f.fromTime != "":
		t, err := parseTime(f.fromTime, time.Now())
		if err != nil {
			return err
		}
		opts.FromTime = t
	case !f.fromStart:
		opts.FromEnd = true
	}
	ctx := cmd.Context()
	timed := cmd.Flags().Changed("timeout")
	if timed {
		if a.timeout <= 0 {
			return usagef("--timeout must be positive")
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, opts)
	if err != nil {
		return err
	}
	defer sub.Close()
	printed, node := 0, ""
	for f.count == 0 || printed < f.count {
		m, err := sub.Next()
		if err != nil {
			if ctx.Err() != nil {
				// Ctrl-C or --timeout: the normal end, whatever error the ending context surfaced
				// as (its own, a DEADLINE_EXCEEDED status, or a transport error mid-resume).
				return nil
			}
			if timed && isDeadline(err) {
				// gRPC sends --timeout's deadline to the server, whose clock may end the call a
				// moment before ours ends ctx: the same normal end, seen first from the server.
				<-ctx.Done()
				return nil
			}
			return err
		}
		if node != "" && m.NodeID != node {
			fmt.Fprintf(a.io.err, "-- now served by node %s (applied index %d) --\n", m.NodeID, m.AppliedIndex)
		}
		node = m.NodeID
		switch m.Kind {
		case client.MessageEvent:
			if err := a.printTailEvent(*m.Event); err != nil {
				return err
			}
			printed++
		case client.MessageCaughtUp:
			fmt.Fprintf(a.io.err, "-- caught up at position %d on node %s; waiting for new events (Ctrl-C to stop) --\n",
				m.Position, m.NodeID)
		case client.MessageFellBehind:
			fmt.Fprintf(a.io.err, "-- fell behind at position %d; catching up --\n", m.Position)
		}
	}
	return nil
}

// printTailEvent prints one event: a JSON object on one line with --json, else
// "position stream@revision type id data".
func (a *app) printTailEvent(e client.RecordedEvent) error {
	if a.json {
		b, err := json.Marshal(toEventJSON(e))
		if err != nil {
			return fmt.Errorf("encode event at position %d: %w", e.Position, err)
		}
		_, err = fmt.Fprintf(a.io.out, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(a.io.out, "%d  %s@%d  %s  %s  %s  %s\n", e.Position, e.Stream, e.Revision, e.Type, dash(e.ID),
		e.CommitTime.UTC().Format(time.RFC3339Nano), preview(e.Data))
	return err
}

// parseTime parses --from-time: an RFC 3339 time, or a positive duration meaning that long
// before now.
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("--from-time %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (10m)", s)
}

// isDeadline reports whether err is a deadline expiry, local or as a gRPC DEADLINE_EXCEEDED.
func isDeadline(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if st, ok := status.FromError(e); ok && st.Code() == codes.DeadlineExceeded {
			return true
		}
	}
	return false
}
