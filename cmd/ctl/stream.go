package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairndb/cairn/client"
)

// newStreamCommand groups per-stream commands: info, meta get|set, delete, tombstone.
func newStreamCommand(a *app) *cobra.Command {
	stream := &cobra.Command{Use: "stream", Short: "Per-stream commands"}
	var consistency string
	info := &cobra.Command{
		Use:   "info <stream>",
		Short: "Show a stream's state: exists, deleted, tombstoned, visible revisions and count, created/updated, metadata",
		Args:  exactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			cons, err := parseConsistency(consistency)
			if err != nil {
				return err
			}
			si, err := c.GetStreamInfo(ctx, args[0], client.ReadOptions{Consistency: cons})
			if err != nil {
				return err
			}
			ts := func(t time.Time) string {
				if t.IsZero() {
					return "-"
				}
				return t.UTC().Format(time.RFC3339Nano)
			}
			if a.json {
				out := map[string]any{"stream": si.Stream, "exists": si.Exists, "deleted": si.Deleted, "tombstoned": si.Tombstoned,
					"first_revision": si.FirstRevision, "last_revision": si.LastRevision, "last_position": si.LastPosition,
					"event_count": si.EventCount, "created": ts(si.Created), "updated": ts(si.Updated),
					"served_by": toServedByJSON(si.ServedBy)}
				if si.Metadata != nil {
					out["metadata_revision"], out["metadata"] = si.MetadataRevision, toMetadataJSON(si.Metadata)
				}
				return a.printJSON(out)
			}
			tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
			rows := [][2]string{
				{"STREAM", si.Stream},
				{"EXISTS", strconv.FormatBool(si.Exists)},
				{"DELETED", strconv.FormatBool(si.Deleted)},
				{"TOMBSTONED", strconv.FormatBool(si.Tombstoned)},
				{"EVENTS", strconv.FormatUint(si.EventCount, 10)},
				{"REVISIONS", fmt.Sprintf("%d..%d", si.FirstRevision, si.LastRevision)},
				{"LAST POSITION", strconv.FormatUint(si.LastPosition, 10)},
				{"CREATED", ts(si.Created)},
				{"UPDATED", ts(si.Updated)},
			}
			if si.Metadata != nil {
				rows = append(rows, [2]string{"METADATA REVISION", strconv.FormatUint(si.MetadataRevision, 10)})
				rows = append(rows, metadataRows(si.Metadata)...)
			}
			for _, row := range rows {
				fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
			}
			return tw.Flush()
		}),
	}
	info.Flags().StringVar(&consistency, "consistency", "linearizable", "linearizable, leader or stale")
	stream.AddCommand(info, newMetaCommand(a), newDeleteCommand(a), newTombstoneCommand(a))
	return stream
}
