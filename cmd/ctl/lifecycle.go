package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cairndb/cairn/client"
)

// Stream lifecycle commands: `stream meta get|set`, `stream delete`, `stream tombstone` (and the
// older top-level `tombstone`). Each takes --expected-revision (alias --expected).

// expectedFlag registers --expected-revision on cmd, with --expected accepted as an alias.
func expectedFlag(cmd *cobra.Command, v *string, usage string) {
	cmd.Flags().StringVar(v, "expected-revision", "any", usage)
	cmd.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "expected" {
			name = "expected-revision"
		}
		return pflag.NormalizedName(name)
	})
}

// metadataJSON is the --json form of stream metadata. User values are strings when they are
// UTF-8 text and base64 (under user_base64) otherwise, so every byte survives.
type metadataJSON struct {
	MaxCount       *uint64           `json:"max_count,omitempty"`
	MaxAge         string            `json:"max_age,omitempty"`
	TruncateBefore *uint64           `json:"truncate_before,omitempty"`
	User           map[string]string `json:"user,omitempty"`
	UserBase64     map[string]string `json:"user_base64,omitempty"`
}

func toMetadataJSON(m *client.StreamMetadata) *metadataJSON {
	if m == nil {
		return nil
	}
	out := &metadataJSON{MaxCount: m.MaxCount, TruncateBefore: m.TruncateBefore}
	if m.MaxAge > 0 {
		out.MaxAge = m.MaxAge.String()
	}
	for k, v := range m.User {
		if utf8.Valid(v) {
			if out.User == nil {
				out.User = map[string]string{}
			}
			out.User[k] = string(v)
			continue
		}
		if out.UserBase64 == nil {
			out.UserBase64 = map[string]string{}
		}
		out.UserBase64[k] = base64.StdEncoding.EncodeToString(v)
	}
	return out
}

// metadataRows renders metadata as table rows.
func metadataRows(m *client.StreamMetadata) [][2]string {
	if m == nil {
		return nil
	}
	opt := func(v *uint64) string {
		if v == nil {
			return "-"
		}
		return strconv.FormatUint(*v, 10)
	}
	age := "-"
	if m.MaxAge > 0 {
		age = m.MaxAge.String()
	}
	rows := [][2]string{{"MAX COUNT", opt(m.MaxCount)}, {"MAX AGE", age}, {"TRUNCATE BEFORE", opt(m.TruncateBefore)}}
	keys := make([]string, 0, len(m.User))
	for k := range m.User {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rows = append(rows, [2]string{"USER " + k, preview(m.User[k])})
	}
	return rows
}

func newMetaCommand(a *app) *cobra.Command {
	meta := &cobra.Command{Use: "meta", Short: "Get or set a stream's metadata (max count, max age, truncate before, user keys)"}
	var consistency string
	get := &cobra.Command{
		Use:   "get <stream>",
		Short: "Show a stream's latest metadata and its revision",
		Args:  exactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			cons, err := parseConsistency(consistency)
			if err != nil {
				return err
			}
			md, err := c.GetStreamMetadata(ctx, args[0], client.ReadOptions{Consistency: cons})
			if err != nil {
				return err
			}
			if a.json {
				out := map[string]any{"stream": md.Stream, "exists": md.Exists, "served_by": toServedByJSON(md.ServedBy)}
				if md.Exists {
					out["metadata_revision"], out["metadata"] = md.Revision, toMetadataJSON(md.Metadata)
				}
				return a.printJSON(out)
			}
			if !md.Exists {
				fmt.Fprintf(a.io.out, "stream %s has no metadata\n", md.Stream)
				return nil
			}
			tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
			rows := append([][2]string{{"STREAM", md.Stream}, {"METADATA REVISION", strconv.FormatUint(md.Revision, 10)}},
				metadataRows(md.Metadata)...)
			for _, row := range rows {
				fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
			}
			return tw.Flush()
		}),
	}
	get.Flags().StringVar(&consistency, "consistency", "linearizable", "linearizable, leader or stale")

	var (
		expected, maxAge         string
		maxCount, truncateBefore string
		user                     []string
	)
	set := &cobra.Command{
		Use:   "set <stream>",
		Short: "Replace a stream's metadata (flags not given are cleared); hides what the limits exclude at once",
		Args:  exactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			exp, err := parseExpected(expected)
			if err != nil {
				return err
			}
			md, err := parseMetadataFlags(maxCount, maxAge, truncateBefore, user)
			if err != nil {
				return err
			}
			res, err := c.SetStreamMetadata(ctx, args[0], exp, md)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(struct {
					Stream           string    `json:"stream"`
					MetadataRevision uint64    `json:"metadata_revision"`
					Position         uint64    `json:"position"`
					LogIndex         uint64    `json:"log_index"`
					CommitTime       time.Time `json:"commit_time"`
				}{args[0], res.MetadataRevision, res.Position, res.LogIndex, res.CommitTime.UTC()})
			}
			fmt.Fprintf(a.io.out, "metadata of %s set: revision %d, log index %d\n", args[0], res.MetadataRevision, res.LogIndex)
			return nil
		}),
	}
	fl := set.Flags()
	fl.StringVar(&maxCount, "max-count", "", "keep only the newest N events visible (N >= 1)")
	fl.StringVar(&maxAge, "max-age", "", "hide events older than this duration (e.g. 720h)")
	fl.StringVar(&truncateBefore, "truncate-before", "", "hide revisions below this one")
	fl.StringArrayVar(&user, "user", nil, "user key as key=value (repeatable)")
	expectedFlag(set, &expected, "expected metadata revision: any, no-stream (none set yet), exists, or the latest metadata revision")
	meta.AddCommand(get, set)
	return meta
}

// parseMetadataFlags builds metadata from the `stream meta set` flags; empty strings are unset.
func parseMetadataFlags(maxCount, maxAge, truncateBefore string, user []string) (*client.StreamMetadata, error) {
	md := &client.StreamMetadata{}
	if maxCount != "" {
		n, err := strconv.ParseUint(maxCount, 10, 64)
		if err != nil || n == 0 {
			return nil, usagef("--max-count %q: want a whole number of at least 1", maxCount)
		}
		md.MaxCount = &n
	}
	if truncateBefore != "" {
		n, err := strconv.ParseUint(truncateBefore, 10, 64)
		if err != nil {
			return nil, usagef("--truncate-before %q: want a revision number", truncateBefore)
		}
		md.TruncateBefore = &n
	}
	if maxAge != "" {
		d, err := time.ParseDuration(maxAge)
		if err != nil || d <= 0 {
			return nil, usagef("--max-age %q: want a positive duration such as 720h", maxAge)
		}
		md.MaxAge = d
	}
	for _, kv := range user {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--user %q: want key=value", kv)
		}
		if md.User == nil {
			md.User = map[string][]byte{}
		}
		if _, dup := md.User[k]; dup {
			return nil, usagef("--user: key %q given twice", k)
		}
		md.User[k] = []byte(v)
	}
	return md, nil
}

// writeResultJSON is the --json form of delete and tombstone results.
type writeResultJSON struct {
	Stream     string    `json:"stream"`
	Position   uint64    `json:"position"`
	LogIndex   uint64    `json:"log_index"`
	CommitTime time.Time `json:"commit_time"`
}

func newDeleteCommand(a *app) *cobra.Command {
	var expected string
	cmd := &cobra.Command{
		Use:   "delete <stream>",
		Short: "Soft-delete a stream: it reads as not found until appended to again (revisions continue)",
		Args:  exactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			exp, err := parseExpected(expected)
			if err != nil {
				return err
			}
			res, err := c.DeleteStream(ctx, args[0], exp)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(writeResultJSON{args[0], res.Position, res.LogIndex, res.CommitTime.UTC()})
			}
			fmt.Fprintf(a.io.out, "deleted: %s at position %d, log index %d\n", args[0], res.Position, res.LogIndex)
			return nil
		}),
	}
	expectedFlag(cmd, &expected, "expected revision: any, exists, or the revision of the stream's last event")
	return cmd
}
