package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairndb/cairn/client"
)

// newTokenCommand builds `cairnctl token create|list|revoke`: bearer tokens of a cluster running
// with --auth. Every subcommand needs an admin token (--token or CAIRN_TOKEN; the node's
// bootstrap token will do for the first ones).
func newTokenCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke bearer tokens (needs an admin token)",
		Long: `Manage the bearer tokens clients authenticate with on a cluster running with --auth.
Roles: admin (everything), writer (append and read), reader (read). --prefix limits a token to
streams whose names start with one of the prefixes; its $all reads and subscriptions then show
only those streams. The secret is printed once, at creation: the cluster keeps only its hash.`,
	}
	var (
		role     string
		prefixes []string
		name     string
	)
	create := &cobra.Command{
		Use:   "create --role admin|writer|reader [--prefix p]... [--name label]",
		Short: "Create a token and print its secret (shown only this once)",
		Args:  exactArgs(0),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, _ []string) error {
			switch role {
			case client.RoleAdmin, client.RoleWriter, client.RoleReader:
			default:
				return usagef("--role must be admin, writer or reader, not %q", role)
			}
			if role == client.RoleAdmin && len(prefixes) > 0 {
				return usagef("an admin token cannot be limited to prefixes")
			}
			secret, info, err := c.CreateToken(ctx, role, prefixes, name)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"token": info, "secret": secret})
			}
			scope := "all streams"
			if len(info.Prefixes) > 0 {
				scope = "streams " + strings.Join(info.Prefixes, ", ") + "*"
			}
			_, err = fmt.Fprintf(a.io.out, "%s\n# id %s, role %s, %s; the secret above is not shown again\n",
				secret, info.ID, info.Role, scope)
			return err
		}),
	}
	create.Flags().StringVar(&role, "role", "", "admin, writer or reader (required)")
	create.Flags().StringArrayVar(&prefixes, "prefix", nil, "limit the token to streams starting with this (repeatable)")
	create.Flags().StringVar(&name, "name", "", "a label, shown by list")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the live tokens (never their secrets)",
		Args:  exactArgs(0),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, _ []string) error {
			tokens, err := c.ListTokens(ctx)
			if err != nil {
				return err
			}
			if a.json {
				if tokens == nil {
					tokens = []client.TokenInfo{}
				}
				return a.printJSON(tokens)
			}
			tw := tabwriter.NewWriter(a.io.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tROLE\tPREFIXES\tNAME\tCREATED")
			for _, t := range tokens {
				p := strings.Join(t.Prefixes, ",")
				if p == "" {
					p = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Role, p, t.Name, t.Created.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		}),
	}
	revoke := &cobra.Command{
		Use:   "revoke <id>",
		Short: "Revoke a token by id",
		Args:  exactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *client.Client, _ *cobra.Command, args []string) error {
			if err := c.RevokeToken(ctx, args[0]); err != nil {
				return err
			}
			return a.report(map[string]string{"id": args[0], "result": "revoked"}, args[0]+": revoked")
		}),
	}
	root.AddCommand(create, list, revoke)
	return root
}
