package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/cairndb/cairn/client"
)

// parseExpected parses --expected: any, no-stream, exists, or a revision.
func parseExpected(s string) (client.Expected, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "any", "":
		return client.Any(), nil
	case "no-stream", "no_stream", "nostream":
		return client.NoStream(), nil
	case "exists", "stream-exists", "stream_exists":
		return client.StreamExists(), nil
	}
	rev, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return client.Expected{}, usagef("--expected %q: want any, no-stream, exists or a revision number", s)
	}
	return client.Exact(rev), nil
}

// parseConsistency parses --consistency.
func parseConsistency(s string) (client.Consistency, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "linearizable", "":
		return client.Linearizable, nil
	case "leader":
		return client.Leader, nil
	case "stale":
		return client.Stale, nil
	}
	return 0, usagef("--consistency %q: want linearizable, leader or stale", s)
}

// isJSONContentType reports whether a content type says JSON (application/json, */*+json).
func isJSONContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

type appendFlags struct {
	expected, eventType, data, dataFile, metadata, contentType, id string
	tags                                                           []string
}

// readData returns the event data from --data or --data-file ("-" in either reads stdin).
func (a *app) readData(f *appendFlags) ([]byte, error) {
	src := f.dataFile
	if f.data == "-" {
		src = "-"
	} else if f.dataFile == "" {
		return []byte(f.data), nil
	}
	if src == "-" {
		b, err := io.ReadAll(a.io.in)
		if err != nil {
			return nil, fmt.Errorf("read data from stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, usagef("--data-file: %w", err)
	}
	return b, nil
}

// appendJSON is the --json form of an append result.
type appendJSON struct {
	Stream        string    `json:"stream"`
	FirstRevision uint64    `json:"first_revision"`
	LastRevision  uint64    `json:"last_revision"`
	FirstPosition uint64    `json:"first_position"`
	LastPosition  uint64    `json:"last_position"`
	LogIndex      uint64    `json:"log_index"`
	CommitTime    time.Time `json:"commit_time"`
	Idempotent    bool      `json:"idempotent"`
	EventIDs      []string  `json:"event_ids"`
}

func newAppendCommand(a *app) *cobra.Command {
	f := &appendFlags{}
	cmd := &cobra.Command{
		Use:   "append <stream>",
		Short: "Append one event to a stream",
		Long: `Append one event to a stream, if --expected holds.

The data comes from --data, or from --data-file (a path, or - for stdin; --data - reads stdin
too). With a JSON content type (the default) the data must be valid JSON.

Without --id the event gets a random id, so running the command twice appends twice. Pass --id
to make the command safe to repeat: an append whose event is already stored returns the original
result ("idempotent") and writes nothing — the thing to do after exit code 4.`,
		Example: `  cairnctl append orders-1 --type OrderPlaced --data '{"id":1}'
  cairnctl append orders-1 --expected 0 --type OrderPaid --data-file paid.json
  echo '{"id":1}' | cairnctl append orders-1 --type OrderShipped --data-file -`,
		Args: exactArgs(1),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			stream := args[0]
			expected, err := parseExpected(f.expected)
			if err != nil {
				return err
			}
			data, err := a.readData(f)
			if err != nil {
				return err
			}
			if isJSONContentType(f.contentType) && len(data) > 0 && !json.Valid(data) {
				return usagef("the data is not valid JSON; pass --content-type to append other data")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ev := client.EventData{ID: f.id, Type: f.eventType, ContentType: f.contentType, Data: data, Tags: f.tags}
			if f.metadata != "" {
				ev.Metadata = []byte(f.metadata)
			}
			res, err := c.Append(ctx, stream, expected, []client.EventData{ev})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(appendJSON{
					Stream: stream, FirstRevision: res.FirstRevision, LastRevision: res.LastRevision,
					FirstPosition: res.FirstPosition, LastPosition: res.LastPosition, LogIndex: res.LogIndex,
					CommitTime: res.CommitTime.UTC(), Idempotent: res.Idempotent, EventIDs: res.EventIDs,
				})
			}
			verb := "appended"
			if res.Idempotent {
				verb = "already stored (idempotent retry, nothing written)"
			}
			fmt.Fprintf(a.io.out, "%s: %s revision %d, position %d\n", verb, stream, res.LastRevision, res.LastPosition)
			tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "EVENT ID\t%s\n", strings.Join(res.EventIDs, ","))
			fmt.Fprintf(tw, "LOG INDEX\t%d\n", res.LogIndex)
			fmt.Fprintf(tw, "COMMITTED\t%s\n", res.CommitTime.UTC().Format(time.RFC3339Nano))
			return tw.Flush()
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.expected, "expected", "any", "expected revision: any, no-stream, exists, or the revision of the stream's last event")
	fl.StringVar(&f.eventType, "type", "", "event type (required)")
	fl.StringVar(&f.data, "data", "", "event data (- reads stdin)")
	fl.StringVar(&f.dataFile, "data-file", "", "read the event data from this file (- for stdin)")
	fl.StringVar(&f.metadata, "metadata", "", "event metadata")
	fl.StringVar(&f.contentType, "content-type", "application/json", "content type of the data")
	fl.StringArrayVar(&f.tags, "tag", nil, "tag the event (repeatable)")
	fl.StringVar(&f.id, "id", "", "event id (UUID); default: a random one")
	_ = cmd.MarkFlagRequired("type")
	cmd.MarkFlagsMutuallyExclusive("data", "data-file")
	return cmd
}

// readFlags are the flags shared by read and read-all.
type readFlags struct {
	from         uint64
	fromEnd      bool
	backwards    bool
	limit        int
	consistency  string
	minLogIndex  uint64
	maxStaleness time.Duration
	// Time travel: raw flag values, parsed by parse.
	fromTimeRaw, asOfTimeRaw string
	asOfPosition             uint64
	fromTime, asOfTime       time.Time
}

func (r *readFlags) register(cmd *cobra.Command, fromHelp string) {
	fl := cmd.Flags()
	fl.Uint64Var(&r.from, "from", 0, fromHelp)
	fl.BoolVar(&r.fromEnd, "from-end", false, "start at the last event")
	fl.BoolVar(&r.backwards, "backwards", false, "read backwards")
	fl.IntVar(&r.limit, "limit", 0, "most events to return (0: the server default, 100)")
	fl.StringVar(&r.consistency, "consistency", "linearizable", "linearizable, leader or stale")
	fl.Uint64Var(&r.minLogIndex, "min-log-index", 0, "stale reads: wait until the serving node has applied this log index")
	fl.DurationVar(&r.maxStaleness, "max-staleness", 0, "stale reads: refuse if the node has not heard from a leader within this duration")
	fl.StringVar(&r.fromTimeRaw, "from-time", "", "start (forwards) at the first event committed at or after this time (RFC 3339, or a duration ago such as 10m)")
	fl.StringVar(&r.asOfTimeRaw, "as-of-time", "", "read as of this time: only events committed at or before it (RFC 3339, or a duration ago)")
	fl.Uint64Var(&r.asOfPosition, "as-of-position", 0, "read as of this position of $all: only events at or below it")
	cmd.MarkFlagsMutuallyExclusive("from", "from-time")
	cmd.MarkFlagsMutuallyExclusive("from-end", "from-time")
}

func (r *readFlags) parse() (client.Consistency, client.Direction, error) {
	cons, err := parseConsistency(r.consistency)
	if err != nil {
		return 0, 0, err
	}
	if cons != client.Stale && (r.minLogIndex > 0 || r.maxStaleness != 0) {
		return 0, 0, usagef("--min-log-index and --max-staleness need --consistency stale")
	}
	if r.maxStaleness < 0 {
		return 0, 0, usagef("--max-staleness must not be negative")
	}
	if r.limit < 0 {
		return 0, 0, usagef("--limit must not be negative")
	}
	now := time.Now()
	if r.fromTimeRaw != "" {
		if r.fromTime, err = parseTime(r.fromTimeRaw, now); err != nil {
			return 0, 0, err
		}
	}
	if r.asOfTimeRaw != "" {
		if r.asOfTime, err = parseTime(r.asOfTimeRaw, now); err != nil {
			return 0, 0, err
		}
	}
	dir := client.Forward
	if r.backwards {
		dir = client.Backward
	}
	return cons, dir, nil
}

// eventJSON is the --json form of an event. Data and metadata that are valid JSON appear as JSON
// values ("data", "metadata"); anything else appears base64-encoded ("data_base64",
// "metadata_base64"), so every byte survives.
type eventJSON struct {
	ID             string          `json:"id"`
	Stream         string          `json:"stream"`
	Revision       uint64          `json:"revision"`
	Position       uint64          `json:"position"`
	LogIndex       uint64          `json:"log_index"`
	Type           string          `json:"type"`
	ContentType    string          `json:"content_type,omitempty"`
	Data           json.RawMessage `json:"data,omitempty"`
	DataBase64     string          `json:"data_base64,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	MetadataBase64 string          `json:"metadata_base64,omitempty"`
	Tags           []string        `json:"tags,omitempty"`
	CommitTime     time.Time       `json:"commit_time"`
}

// servedByJSON is the --json form of ServedBy.
type servedByJSON struct {
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	LastContact  string `json:"last_contact"`
	Leader       bool   `json:"leader"`
}

func jsonOrBase64(b []byte) (json.RawMessage, string) {
	if len(b) == 0 {
		return nil, ""
	}
	if json.Valid(b) {
		return json.RawMessage(b), ""
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}

func toEventJSON(e client.RecordedEvent) eventJSON {
	out := eventJSON{
		ID: e.ID, Stream: e.Stream, Revision: e.Revision, Position: e.Position, LogIndex: e.LogIndex,
		Type: e.Type, ContentType: e.ContentType, Tags: e.Tags, CommitTime: e.CommitTime.UTC(),
	}
	out.Data, out.DataBase64 = jsonOrBase64(e.Data)
	out.Metadata, out.MetadataBase64 = jsonOrBase64(e.Metadata)
	return out
}

func toEventsJSON(evs []client.RecordedEvent) []eventJSON {
	out := make([]eventJSON, len(evs))
	for i, e := range evs {
		out[i] = toEventJSON(e)
	}
	return out
}

func toServedByJSON(s client.ServedBy) servedByJSON {
	return servedByJSON{NodeID: s.NodeID, AppliedIndex: s.AppliedIndex, LastContact: s.LastContact.String(), Leader: s.Leader}
}

// preview renders data for a table cell: printable UTF-8 text, shortened, or "<N bytes>".
func preview(b []byte) string {
	const maxRunes = 60
	if len(b) == 0 {
		return "-"
	}
	if !utf8.Valid(b) {
		return fmt.Sprintf("<%d bytes>", len(b))
	}
	var sb strings.Builder
	n := 0
	for _, r := range string(b) {
		if n == maxRunes {
			sb.WriteString("…")
			break
		}
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			r = ' '
		case !unicode.IsPrint(r):
			return fmt.Sprintf("<%d bytes>", len(b))
		}
		sb.WriteRune(r)
		n++
	}
	return sb.String()
}

func servedByLine(s client.ServedBy) string {
	who := s.NodeID
	if s.Leader {
		who += " (leader)"
	} else {
		who += fmt.Sprintf(" (follower, last leader contact %v ago)", s.LastContact)
	}
	return fmt.Sprintf("served by %s at applied index %d", who, s.AppliedIndex)
}

func newReadCommand(a *app) *cobra.Command {
	r := &readFlags{}
	cmd := &cobra.Command{
		Use:   "read <stream>",
		Short: "Read events of a stream",
		Long: `Read events of one stream, forwards from --from (a revision, inclusive) or backwards,
at most --limit events.

--consistency linearizable (default) is served by the leader after a quorum check; leader is the
leader's local state; stale is any node's local state, optionally waiting for --min-log-index
(the log index an append printed) and refusing if staler than --max-staleness.`,
		Example: `  cairnctl read orders-1
  cairnctl read orders-1 --from-end --backwards --limit 10
  cairnctl --addr 127.0.0.1:7102 read orders-1 --consistency stale --min-log-index 42 --json`,
		Args: exactArgs(1),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			cons, dir, err := r.parse()
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.Read(ctx, args[0], client.ReadOptions{
				From: r.from, FromEnd: r.fromEnd, Direction: dir, Limit: r.limit,
				Consistency: cons, MinLogIndex: r.minLogIndex, MaxStaleness: r.maxStaleness,
				FromTime: r.fromTime, StopAtTime: r.asOfTime, StopAtPosition: r.asOfPosition,
			})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(struct {
					Events      []eventJSON  `json:"events"`
					ServedBy    servedByJSON `json:"served_by"`
					EndOfStream bool         `json:"end_of_stream"`
				}{toEventsJSON(res.Events), toServedByJSON(res.ServedBy), res.EndOfStream})
			}
			tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tPOSITION\tTYPE\tID\tCOMMITTED\tDATA")
			for _, e := range res.Events {
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", e.Revision, e.Position, e.Type, dash(e.ID),
					e.CommitTime.UTC().Format(time.RFC3339Nano), preview(e.Data))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			end := "more events follow"
			if res.EndOfStream {
				end = "end of stream"
			}
			fmt.Fprintf(a.io.out, "(%d events, %s; %s)\n", len(res.Events), end, servedByLine(res.ServedBy))
			return nil
		}),
	}
	r.register(cmd, "first revision to return (inclusive)")
	return cmd
}

func newReadAllCommand(a *app) *cobra.Command {
	r := &readFlags{}
	var filter client.Filter
	cmd := &cobra.Command{
		Use:   "read-all",
		Short: "Read the global log ($all), optionally filtered",
		Long: `Read events of the global log, $all, from --from (a position, inclusive; positions start
at 1), optionally filtered by stream prefix, event type, type prefix and tags. Within one filter
flag any value may match; all given flags must match. A filtered read may stop early and print
a checkpoint: continue with --from <checkpoint+1>.`,
		Example: `  cairnctl read-all --limit 20
  cairnctl read-all --stream-prefix orders- --type OrderPlaced --json`,
		Args: exactArgs(0),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			cons, dir, err := r.parse()
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.ReadAll(ctx, client.ReadAllOptions{
				From: r.from, FromEnd: r.fromEnd, Direction: dir, Limit: r.limit, Filter: filter,
				Consistency: cons, MinLogIndex: r.minLogIndex, MaxStaleness: r.maxStaleness,
				FromTime: r.fromTime, StopAtTime: r.asOfTime, StopAtPosition: r.asOfPosition,
			})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(struct {
					Events     []eventJSON  `json:"events"`
					ServedBy   servedByJSON `json:"served_by"`
					Checkpoint uint64       `json:"checkpoint_position"`
					EndOfLog   bool         `json:"end_of_log"`
				}{toEventsJSON(res.Events), toServedByJSON(res.ServedBy), res.Checkpoint, res.EndOfLog})
			}
			tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POSITION\tSTREAM\tREVISION\tTYPE\tID\tCOMMITTED\tDATA")
			for _, e := range res.Events {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Position, e.Stream, e.Revision, e.Type, dash(e.ID),
					e.CommitTime.UTC().Format(time.RFC3339Nano), preview(e.Data))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			end := "more may follow"
			if res.EndOfLog {
				end = "end of log"
			}
			fmt.Fprintf(a.io.out, "(%d events, checkpoint %d, %s; %s)\n", len(res.Events), res.Checkpoint, end, servedByLine(res.ServedBy))
			return nil
		}),
	}
	r.register(cmd, "first position to return (inclusive; 0: the start)")
	fl := cmd.Flags()
	fl.StringArrayVar(&filter.StreamPrefixes, "stream-prefix", nil, "only streams whose name starts with this (repeatable)")
	fl.StringArrayVar(&filter.EventTypes, "type", nil, "only events of this type (repeatable)")
	fl.StringArrayVar(&filter.EventTypePrefixes, "type-prefix", nil, "only event types starting with this (repeatable)")
	fl.StringArrayVar(&filter.Tags, "tag", nil, "only events carrying this tag (repeatable; all must match)")
	return cmd
}

// newTombstoneCommand builds `tombstone <stream>`; `stream tombstone` is the same command, and
// the top-level one is kept for scripts written before it.
func newTombstoneCommand(a *app) *cobra.Command {
	var expected string
	cmd := &cobra.Command{
		Use:   "tombstone <stream>",
		Short: "Delete a stream for good: it can never be written or read again",
		Args:  exactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			exp, err := parseExpected(expected)
			if err != nil {
				return err
			}
			res, err := c.Tombstone(ctx, args[0], exp)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(writeResultJSON{args[0], res.Position, res.LogIndex, res.CommitTime.UTC()})
			}
			fmt.Fprintf(a.io.out, "tombstoned: %s at position %d, log index %d\n", args[0], res.Position, res.LogIndex)
			return nil
		}),
	}
	expectedFlag(cmd, &expected, "expected revision: any, exists, or the revision of the stream's last event")
	return cmd
}
