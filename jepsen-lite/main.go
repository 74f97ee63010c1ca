// Command jepsen-lite is Cairn's fault-injection harness: it runs a workload against a real
// cluster while a nemesis crashes, pauses and partitions nodes, then checks that nothing
// acknowledged was lost, duplicated or reordered and that linearizable reads were linearizable.
//
//	go run ./jepsen-lite run --workload streams --nemesis isolate-leader,kill-leader --duration 60s
//	go run ./jepsen-lite suite --set smoke        # CI's scenarios on the real build
//	go run ./jepsen-lite suite --set canary       # every planted bug must be caught
//	go run ./jepsen-lite check jepsen-lite/runs/latest
//
// Exit codes: 0 valid, 1 invalid (safety violated), 2 unknown (a checker could not decide),
// 3 harness error. See jepsen-lite/README.md for how to read a report.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries an exit code out of a command.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "jepsen-lite",
		Short:         "Fault-injection harness for Cairn: proves acknowledged events are never lost",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), suiteCmd(), checkCmd(), scenariosCmd())
	err := root.ExecuteContext(ctx)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "jepsen-lite:", err)
		os.Exit(3)
	}
}
