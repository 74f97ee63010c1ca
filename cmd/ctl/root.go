package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// Exit codes (documented in the root command's help and in DESIGN.md).
const (
	exitOK          = 0
	exitUsage       = 1 // bad command line, or the server refused an argument (INVALID_ARGUMENT, limits)
	exitNotFound    = 2 // stream (or, for admin commands, server) not found
	exitConflict    = 3 // wrong expected revision, event id conflict, stream tombstoned
	exitUnavailable = 4 // no leader, node unreachable, not caught up, outcome unknown, timeout
	exitOther       = 5 // anything else
)

const exitCodesHelp = `Exit codes:
  0  ok
  1  usage error or invalid argument (also: over a size limit)
  2  not found (stream has no events)
  3  wrong expected revision, event id conflict, or stream tombstoned
  4  unavailable or timeout (no leader, node unreachable or not serving, not caught up,
     outcome unknown: an append retried with the same --id is safe)
  5  any other error`

// defaultAddr is the node address used when neither --addr nor CAIRN_ADDR is set.
const defaultAddr = "127.0.0.1:7101"

// stdio is where a command reads and writes.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// app is one invocation of cairnctl: its I/O, environment and global flags. Every command is
// built by newRootCommand around one app, so nothing is global.
type app struct {
	io      stdio
	getenv  func(string) string
	addr    string
	json    bool
	timeout time.Duration
	token   string // --token; CAIRN_TOKEN when empty (read at use, so help never shows it)
	// tls names the CA, client certificate and key (--ca --cert --key); none means plaintext,
	// which only a node in INSECURE dev mode (cairnd --dev-insecure) accepts.
	tls tlsutil.Files
	// ran is set once a command's own code starts: an error before that is cobra's (unknown
	// command, bad flag, missing argument), i.e. a usage error.
	ran bool
}

// usageError is an invalid command line found by a command's own checks.
type usageError struct{ err error }

// Error returns the underlying message.
func (e *usageError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error.
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// execute runs cairnctl with args and returns the process exit code.
func execute(ctx context.Context, args []string, sio stdio, getenv func(string) string) int {
	a := &app{io: sio, getenv: getenv}
	root := newRootCommand(a)
	root.SetArgs(args)
	root.SetIn(sio.in)
	root.SetOut(sio.out)
	root.SetErr(sio.err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if !a.ran {
		code = exitUsage
	}
	fmt.Fprintf(sio.err, "Error: %v\n", err)
	if code == exitUsage && !a.ran {
		fmt.Fprintf(sio.err, "Run '%s --help' for usage.\n", root.CommandPath())
	}
	return code
}

// exitCode maps an error to its exit code.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, client.ErrWrongExpectedRevision), errors.Is(err, client.ErrEventIDConflict),
		errors.Is(err, client.ErrStreamTombstoned):
		return exitConflict
	case errors.Is(err, client.ErrInvalidArgument), errors.Is(err, client.ErrLimitExceeded):
		return exitUsage
	case errors.Is(err, client.ErrStreamNotFound), errors.Is(err, client.ErrServerNotFound):
		return exitNotFound
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrNotLeader), errors.Is(err, client.ErrOutcomeUnknown),
		errors.Is(err, client.ErrNotCaughtUp), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, errNotServing):
		return exitUnavailable
	}
	return exitOther
}

// newRootCommand builds the cairnctl command tree around a.
func newRootCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "cairnctl",
		Short: "Administer a Cairn cluster and append and read events",
		Long: `cairnctl administers a Cairn cluster and appends and reads events.

Commands talk to the nodes given with --addr (comma-separated host:port gRPC addresses; default
$CAIRN_ADDR, else ` + defaultAddr + `). Any node will do: writes and linearizable reads are
forwarded to the leader. Output is a table for people by default, JSON with --json.

Connections are mutual TLS with --ca, --cert and --key (or CAIRN_CA, CAIRN_CERT, CAIRN_KEY),
as written by 'cairnctl tls init'; without them cairnctl speaks plaintext, which only a node in
INSECURE dev mode (cairnd --dev-insecure) accepts.

` + exitCodesHelp,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	addrDefault := defaultAddr
	if env := strings.TrimSpace(a.getenv("CAIRN_ADDR")); env != "" {
		addrDefault = env
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", addrDefault, "comma-separated gRPC addresses of cluster nodes (env CAIRN_ADDR)")
	pf.BoolVar(&a.json, "json", false, "print machine-readable JSON instead of tables")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "bound on the whole command, retries included")
	pf.StringVar(&a.token, "token", "", "bearer token for a cluster running with --auth (env CAIRN_TOKEN, preferred: flags show in ps)")
	pf.StringVar(&a.tls.CA, "ca", strings.TrimSpace(a.getenv("CAIRN_CA")), "cluster CA certificate for mutual TLS (env CAIRN_CA)")
	pf.StringVar(&a.tls.Cert, "cert", strings.TrimSpace(a.getenv("CAIRN_CERT")), "client certificate for mutual TLS (env CAIRN_CERT; cairnctl tls init writes client-admin.crt)")
	pf.StringVar(&a.tls.Key, "key", strings.TrimSpace(a.getenv("CAIRN_KEY")), "private key of --cert (env CAIRN_KEY)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })

	root.AddCommand(
		newStatusCommand(a),
		newMembersCommand(a),
		newAppendCommand(a),
		newReadCommand(a),
		newReadAllCommand(a),
		newTombstoneCommand(a),
		newTailCommand(a),
		newHealthCommand(a),
		newDevCommand(a),
		newTLSCommand(a),
	)
	root.AddCommand(newAdminCommands(a)...)
	root.AddCommand(newStreamCommand(a))
	root.AddCommand(newTokenCommand(a))
	return root
}

// run wraps a command's body: it marks the invocation as past argument parsing and bounds it by
// --timeout.
func (a *app) run(body func(ctx context.Context, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.ran = true
		if a.timeout <= 0 {
			return usagef("--timeout must be positive")
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
		defer cancel()
		return body(ctx, cmd, args)
	}
}

// addrs returns the --addr list.
func (a *app) addrs() ([]string, error) {
	var out []string
	for _, s := range strings.Split(a.addr, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, usagef("--addr names no address")
	}
	return out, nil
}

// client returns a client for the --addr nodes; the caller closes it.
func (a *app) client() (*client.Client, error) {
	addrs, err := a.addrs()
	if err != nil {
		return nil, err
	}
	opts, err := a.clientOptions()
	if err != nil {
		return nil, err
	}
	c, err := client.New(addrs, opts...)
	if err != nil {
		return nil, usagef("%w", err)
	}
	return c, nil
}

// clientOptions returns the options every command's client uses: mutual TLS from
// --ca/--cert/--key (or plaintext when none is given) and the bearer token, if any.
func (a *app) clientOptions() ([]client.Option, error) {
	var opts []client.Option
	tok := a.token
	if tok == "" {
		tok = strings.TrimSpace(a.getenv("CAIRN_TOKEN"))
	}
	if tok != "" {
		opts = append(opts, client.WithToken(tok))
	}
	if !a.tls.Any() {
		return opts, nil
	}
	if !a.tls.Complete() {
		return nil, usagef("mutual TLS needs all of --ca, --cert and --key (got ca=%q cert=%q key=%q)", a.tls.CA, a.tls.Cert, a.tls.Key)
	}
	cfg, err := client.LoadTLS(a.tls.CA, a.tls.Cert, a.tls.Key)
	if err != nil {
		return nil, usagef("%w", err)
	}
	return append(opts, client.WithTLS(cfg)), nil
}

// security describes the connection mode for status: a node that answered a plaintext call is
// in INSECURE dev mode, since a TLS node refuses plaintext.
func (a *app) security() string {
	if a.tls.Any() {
		return "mutual TLS"
	}
	return "INSECURE dev mode (plaintext, no TLS)"
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.io.out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// exactArgs is cobra.ExactArgs with the error marked as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &usageError{err: err}
		}
		return nil
	}
}
