package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/tlsutil"
)

// devNodes is the size of the dev cluster.
const devNodes = 3

type devFlags struct {
	cairnd      string
	dataDir     string
	basePort    int
	logLevel    string
	waitTimeout time.Duration
	stopTimeout time.Duration
	tlsDir      string
	clusterName string
	insecure    bool
}

// devNode is one cairnd process of the dev cluster.
type devNode struct {
	name                    string
	grpc, raft, gossip, dir string
	cmd                     *exec.Cmd
	out                     *prefixWriter
	exited                  chan struct{} // closed when the process has exited
	err                     error         // Wait's result, valid after exited is closed
}

func newDevCommand(a *app) *cobra.Command {
	f := &devFlags{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local 3-node cluster in the foreground (development only)",
		Long: `Run a local three-node cluster on loopback in the foreground: three cairnd processes, node
i (1..3) at gRPC 127.0.0.1:710i, raft 127.0.0.1:720i and gossip 127.0.0.1:730i (with the default
--base-port 7100), data in --data/node<i>. Each node's log lines are prefixed with its name.
The command waits until a leader is elected, prints the addresses and an example command, and
runs until Ctrl-C or SIGTERM, which stops every node (SIGTERM, then SIGKILL after
--stop-timeout). A node that dies is reported.

The nodes run with mutual TLS: the command first runs the equivalent of 'cairnctl tls init' into
--tls-dir (default <data>/tls; the CA and gossip key are kept across runs) and prints the
CAIRN_CA/CAIRN_CERT/CAIRN_KEY settings that let cairnctl talk to the cluster. --insecure runs the
nodes in INSECURE dev mode instead (cairnd --dev-insecure: plaintext, no TLS).

cairnd is taken from --cairnd, else from the directory of the cairnctl executable, else from
PATH.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			a.ran = true
			return a.runDev(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cairnd, "cairnd", "", "path of the cairnd binary (default: next to cairnctl, else on PATH)")
	fl.StringVar(&f.dataDir, "data", filepath.Join(".cairn", "dev"), "data directory; node i uses <data>/node<i>")
	fl.IntVar(&f.basePort, "base-port", 7100, "node i listens on gRPC base+i, raft base+100+i, gossip base+200+i")
	fl.StringVar(&f.logLevel, "log-level", "info", "nodes' log level: debug, info, warn or error")
	fl.DurationVar(&f.waitTimeout, "wait-timeout", time.Minute, "how long to wait for a leader before giving up")
	fl.DurationVar(&f.stopTimeout, "stop-timeout", 10*time.Second, "how long nodes may take to stop after SIGTERM before SIGKILL")
	fl.StringVar(&f.tlsDir, "tls-dir", "", "folder of the cluster's TLS material (default <data>/tls)")
	fl.StringVar(&f.clusterName, "cluster-name", "dev", "cluster name in the certificates")
	fl.BoolVar(&f.insecure, "insecure", false, "run the nodes in INSECURE dev mode (no TLS) instead")
	return cmd
}

// findCairnd resolves the cairnd binary: flag, then next to this executable, then PATH.
func findCairnd(flag string) (string, error) {
	if flag != "" {
		if _, err := os.Stat(flag); err != nil {
			return "", usagef("--cairnd: %w", err)
		}
		return flag, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "cairnd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("cairnd")
	if err != nil {
		return "", usagef("cairnd not found next to cairnctl or on PATH (build it with 'make build', or pass --cairnd): %w", err)
	}
	return p, nil
}

func (a *app) runDev(ctx context.Context, f *devFlags) error {
	if f.basePort <= 0 || f.basePort+200+devNodes > 65535 {
		return usagef("--base-port %d out of range", f.basePort)
	}
	bin, err := findCairnd(f.cairnd)
	if err != nil {
		return err
	}
	if f.tlsDir == "" {
		f.tlsDir = filepath.Join(f.dataDir, "tls")
	}
	nodes := make([]*devNode, devNodes)
	var joins, names []string
	for i := range nodes {
		n := i + 1
		nodes[i] = &devNode{
			name:   fmt.Sprintf("node%d", n),
			grpc:   fmt.Sprintf("127.0.0.1:%d", f.basePort+n),
			raft:   fmt.Sprintf("127.0.0.1:%d", f.basePort+100+n),
			gossip: fmt.Sprintf("127.0.0.1:%d", f.basePort+200+n),
			dir:    filepath.Join(f.dataDir, fmt.Sprintf("node%d", n)),
			exited: make(chan struct{}),
		}
		joins = append(joins, nodes[i].gossip)
		names = append(names, nodes[i].name)
	}
	var clientTLS tlsutil.Files
	if !f.insecure {
		if err := tlsutil.ValidClusterName(f.clusterName); err != nil {
			return usagef("--cluster-name: %w", err)
		}
		if err := tlsutil.WriteDev(tlsutil.DevOptions{Dir: f.tlsDir, Cluster: f.clusterName, Nodes: names,
			Hosts: []string{"127.0.0.1", "localhost"}, Clients: []string{"admin"}}); err != nil {
			return fmt.Errorf("TLS material: %w", err)
		}
		clientTLS = tlsutil.ClientFiles(f.tlsDir, "admin")
		a.tls = clientTLS
	}
	var outMu sync.Mutex
	for _, n := range nodes {
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			a.stopDev(nodes, f.stopTimeout)
			return fmt.Errorf("data directory: %w", err)
		}
		n.out = &prefixWriter{mu: &outMu, w: a.io.out, prefix: fmt.Sprintf("%-5s | ", n.name)}
		security := []string{"--dev-insecure"}
		if !f.insecure {
			nf := tlsutil.NodeFiles(f.tlsDir, n.name)
			security = []string{"--tls-ca", nf.CA, "--tls-cert", nf.Cert, "--tls-key", nf.Key,
				"--cluster-name", f.clusterName, "--gossip-key-file", filepath.Join(f.tlsDir, tlsutil.GossipKeyFile)}
		}
		n.cmd = exec.Command(bin, append([]string{
			"--node-id", n.name,
			"--data-dir", n.dir,
			"--grpc-bind", n.grpc, "--grpc-advertise", n.grpc,
			"--raft-bind", n.raft, "--raft-advertise", n.raft,
			"--gossip-bind", n.gossip, "--gossip-advertise", n.gossip,
			"--join", strings.Join(joins, ","),
			"--bootstrap-expect", fmt.Sprint(devNodes),
			"--log-format", "text",
			"--log-level", f.logLevel,
		}, security...)...)
		n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
		ownProcessGroup(n.cmd)
		if err := n.cmd.Start(); err != nil {
			a.stopDev(nodes, f.stopTimeout)
			return fmt.Errorf("start %s: %w", n.name, err)
		}
		go func() {
			n.err = n.cmd.Wait()
			n.out.flush()
			close(n.exited)
		}()
	}
	a.say(&outMu, "cairnctl dev: started %d cairnd processes (%s); waiting for a leader\n", devNodes, bin)

	leader, err := a.waitDevLeader(ctx, nodes, f.waitTimeout)
	if err != nil {
		a.stopDev(nodes, f.stopTimeout)
		if ctx.Err() != nil {
			return nil // interrupted while starting: a normal stop
		}
		return err
	}
	var b strings.Builder
	if f.insecure {
		fmt.Fprintf(&b, "\ncairnctl dev: cluster is up, leader %s. INSECURE dev mode: no TLS, no authentication.\n", leader)
	} else {
		fmt.Fprintf(&b, "\ncairnctl dev: cluster is up, leader %s. Mutual TLS on every channel (cluster %q, material in %s).\n",
			leader, f.clusterName, f.tlsDir)
	}
	for _, n := range nodes {
		fmt.Fprintf(&b, "  %s  grpc %s  raft %s  gossip %s  data %s\n", n.name, n.grpc, n.raft, n.gossip, n.dir)
	}
	fmt.Fprintf(&b, "Try:\n")
	if !f.insecure {
		fmt.Fprintf(&b, "  export CAIRN_CA=%s CAIRN_CERT=%s CAIRN_KEY=%s\n", clientTLS.CA, clientTLS.Cert, clientTLS.Key)
	}
	fmt.Fprintf(&b, "  cairnctl --addr %s append orders-1 --type OrderPlaced --data '{\"id\":1}'\n", nodes[0].grpc)
	fmt.Fprintf(&b, "Press Ctrl-C to stop.\n\n")
	a.say(&outMu, "%s", b.String())

	reported := make([]bool, len(nodes))
	for {
		if ctx.Err() != nil {
			a.say(&outMu, "cairnctl dev: stopping the nodes\n")
			a.stopDev(nodes, f.stopTimeout)
			a.say(&outMu, "cairnctl dev: stopped\n")
			return nil
		}
		alive := 0
		for i, n := range nodes {
			select {
			case <-n.exited:
				if !reported[i] {
					reported[i] = true
					a.sayErr(&outMu, "cairnctl dev: %s exited unexpectedly: %v\n", n.name, exitDescription(n.err))
				}
			default:
				alive++
			}
		}
		if alive == 0 {
			return errors.New("every node has exited")
		}
		select {
		case <-ctx.Done():
		case <-anyExited(nodes, reported):
		}
	}
}

// anyExited returns a channel closed when a node not yet reported exits.
func anyExited(nodes []*devNode, reported []bool) <-chan struct{} {
	ch := make(chan struct{})
	var once sync.Once
	for i, n := range nodes {
		if reported[i] {
			continue
		}
		go func() {
			<-n.exited
			once.Do(func() { close(ch) })
		}()
	}
	return ch
}

func exitDescription(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// waitDevLeader polls the nodes' Status until one reports itself leader. It gives up when ctx
// ends, when timeout passes, or when every node has exited.
func (a *app) waitDevLeader(ctx context.Context, nodes []*devNode, timeout time.Duration) (string, error) {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.grpc
	}
	opts, err := a.clientOptions()
	if err != nil {
		return "", err
	}
	c, err := client.New(addrs, append(opts, client.WithLeaderRouting(false))...)
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		alive := 0
		for _, n := range nodes {
			select {
			case <-n.exited:
				continue
			default:
				alive++
			}
			actx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := c.Status(actx, false, client.ToAddress(n.grpc), client.MaxAttempts(1))
			cancel()
			if err == nil && st.Role == "leader" {
				return st.NodeID, nil
			}
		}
		if alive == 0 {
			return "", errors.New("every node exited before a leader was elected; see their logs above")
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			return "", fmt.Errorf("no leader after %v: %w", timeout, context.DeadlineExceeded)
		case <-tick.C:
		}
	}
}

// stopDev sends SIGTERM to every running node, then SIGKILL to those still running after
// timeout, and waits for all of them.
func (a *app) stopDev(nodes []*devNode, timeout time.Duration) {
	var running []*devNode
	for _, n := range nodes {
		if n == nil || n.cmd == nil || n.cmd.Process == nil {
			continue
		}
		running = append(running, n)
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, n := range running {
		select {
		case <-n.exited:
		case <-deadline.C:
			for _, m := range running {
				select {
				case <-m.exited:
				default:
					fmt.Fprintf(a.io.err, "cairnctl dev: %s did not stop within %v; killing it\n", m.name, timeout)
					_ = m.cmd.Process.Kill()
				}
			}
			for _, m := range running {
				<-m.exited
			}
			return
		}
	}
}

func (a *app) say(mu *sync.Mutex, format string, args ...any) {
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(a.io.out, format, args...)
}

func (a *app) sayErr(mu *sync.Mutex, format string, args ...any) {
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(a.io.err, format, args...)
}

// prefixWriter writes whole lines to w, each prefixed, under a mutex shared by every node so
// that lines of different nodes never interleave.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte // an unfinished line; touched only by the process's copying goroutine and flush
}

// Write buffers b and writes every complete line, prefixed. It never fails.
func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.emit(p.buf[:i+1])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// flush writes an unfinished last line, once the process has exited.
func (p *prefixWriter) flush() {
	if len(p.buf) > 0 {
		p.emit(append(p.buf, '\n'))
		p.buf = nil
	}
}

func (p *prefixWriter) emit(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = io.WriteString(p.w, p.prefix)
	_, _ = p.w.Write(line)
}
