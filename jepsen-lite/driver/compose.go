package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/jepsen-lite/proxy"
)

// ComposeOptions configure the compose driver.
type ComposeOptions struct {
	// File is the compose file (the repository's docker-compose.yml).
	File string
	// Project is the compose project name; the driver owns it: it is taken down (volumes
	// included) before the run and after it.
	Project string
	// Dir is the run directory; node logs go to Dir/nodes/<service>/cairnd.log.
	Dir string
	// Image is the image the compose file uses (default cairn:dev); when it is missing the
	// driver runs `make images` in the module root first.
	Image string
}

// Compose drives the repository's docker-compose cluster: kill -9 (`kill -s SIGKILL`), restart
// (`start`), pause/unpause (cgroup freezer) and isolation (`docker network disconnect` /
// `connect`, which cuts the node off from everyone, clients included). Per-link faults, new
// nodes and replacements need the local driver.
type Compose struct {
	opts    ComposeOptions
	compose []string // "docker compose" or "docker-compose"
	conns   conns

	mu       sync.Mutex
	services []string
	ids      map[string]string // service -> container id
	addrs    map[string]string // service -> host gRPC address
	network  string
	isolated map[string]string // service -> its IP before the disconnect
	logs     map[string]string
	closed   bool
}

// NewCompose returns a compose driver; Start brings the cluster up.
func NewCompose(opts ComposeOptions) (*Compose, error) {
	if opts.File == "" {
		opts.File = "docker-compose.yml"
	}
	if opts.Project == "" {
		opts.Project = "cairn-jepsen"
	}
	if opts.Image == "" {
		opts.Image = "cairn:dev"
	}
	abs, err := filepath.Abs(opts.File)
	if err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	opts.File = abs
	if _, err := os.Stat(opts.File); err != nil {
		return nil, fmt.Errorf("driver: compose file: %w", err)
	}
	c := &Compose{opts: opts, ids: map[string]string{}, addrs: map[string]string{}, isolated: map[string]string{}, logs: map[string]string{}}
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		c.compose = []string{"docker", "compose"}
	} else if _, err := exec.LookPath("docker-compose"); err == nil {
		c.compose = []string{"docker-compose"}
	} else {
		return nil, errors.New("driver: neither `docker compose` nor `docker-compose` is available")
	}
	return c, nil
}

// run runs a command with a timeout and returns its trimmed stdout.
func run(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("driver: %s %s: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func (c *Compose) dc(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	all := append(append(append([]string(nil), c.compose[1:]...), "-p", c.opts.Project, "-f", c.opts.File), args...)
	return run(ctx, timeout, c.compose[0], all...)
}

// Name implements Driver.
func (c *Compose) Name() string { return "compose" }

// Caps implements Driver.
func (c *Compose) Caps() Caps { return Caps{} }

// Start implements Driver: a clean `up -d` of the project, then a wait for an agreed leader.
func (c *Compose) Start(ctx context.Context) error {
	if _, err := run(ctx, 30*time.Second, "docker", "image", "inspect", c.opts.Image); err != nil {
		root, rerr := ModuleRoot(filepath.Dir(c.opts.File))
		if rerr != nil {
			return fmt.Errorf("driver: image %s missing and no module to build it: %w", c.opts.Image, rerr)
		}
		if _, err := run(ctx, 15*time.Minute, "make", "-C", root, "images"); err != nil {
			return fmt.Errorf("driver: image %s missing; `make images` failed: %w", c.opts.Image, err)
		}
	}
	// The compose cluster runs with mutual TLS from material made on the host (make compose-tls);
	// connect with its admin client certificate.
	root, err := ModuleRoot(filepath.Dir(c.opts.File))
	if err != nil {
		return fmt.Errorf("driver: module root for TLS material: %w", err)
	}
	if _, err := run(ctx, 5*time.Minute, "make", "-C", root, "compose-tls"); err != nil {
		return fmt.Errorf("driver: make compose-tls: %w", err)
	}
	tlsDir := filepath.Join(root, ".cairn", "compose-tls")
	tlsCfg, err := client.LoadTLS(filepath.Join(tlsDir, "ca.crt"), filepath.Join(tlsDir, "client-admin.crt"),
		filepath.Join(tlsDir, "client-admin.key"))
	if err != nil {
		return fmt.Errorf("driver: compose TLS material: %w", err)
	}
	c.conns.mu.Lock()
	c.conns.creds = credentials.NewTLS(tlsCfg)
	c.conns.mu.Unlock()
	if _, err := c.dc(ctx, 2*time.Minute, "down", "-v", "--remove-orphans"); err != nil {
		return err
	}
	if _, err := c.dc(ctx, 3*time.Minute, "up", "-d", "--no-build"); err != nil {
		return err
	}
	svcOut, err := c.dc(ctx, time.Minute, "config", "--services")
	if err != nil {
		return err
	}
	services := strings.Fields(svcOut)
	sort.Strings(services)
	for _, s := range services {
		id, err := c.dc(ctx, time.Minute, "ps", "-q", s)
		if err != nil || id == "" {
			return fmt.Errorf("driver: container of %s: %w", s, err)
		}
		port, err := c.dc(ctx, time.Minute, "port", s, "7101")
		if err != nil || port == "" {
			return fmt.Errorf("driver: gRPC port of %s: %w", s, err)
		}
		port = strings.Replace(port, "0.0.0.0:", "127.0.0.1:", 1)
		c.mu.Lock()
		c.ids[s], c.addrs[s] = id, port
		c.mu.Unlock()
	}
	if len(services) > 0 {
		nets, err := run(ctx, time.Minute, "docker", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", c.ids[services[0]])
		if err != nil {
			return err
		}
		if f := strings.Fields(nets); len(f) > 0 {
			c.network = f[0]
		}
	}
	c.mu.Lock()
	c.services = services
	c.mu.Unlock()
	if _, err := WaitLeader(ctx, c); err != nil {
		return fmt.Errorf("driver: compose cluster did not elect a leader: %w", err)
	}
	return nil
}

// Nodes implements Driver: the compose services (each runs with CAIRN_NODE_ID = its name).
func (c *Compose) Nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.services...)
}

// Conn implements Driver, through the port the service publishes on 127.0.0.1.
func (c *Compose) Conn(node string) *grpc.ClientConn {
	c.mu.Lock()
	addr, ok := c.addrs[node]
	c.mu.Unlock()
	if !ok {
		addr = "127.0.0.1:1"
	}
	return c.conns.get(addr)
}

func (c *Compose) container(node string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[node]
	if !ok {
		return "", fmt.Errorf("driver: no service %q", node)
	}
	return id, nil
}

// Kill implements Driver.
func (c *Compose) Kill(node string) error {
	_, err := c.dc(context.Background(), time.Minute, "kill", "-s", "SIGKILL", node)
	return err
}

// StartNode implements Driver.
func (c *Compose) StartNode(node string) error {
	_, err := c.dc(context.Background(), time.Minute, "start", node)
	return err
}

// Pause implements Driver.
func (c *Compose) Pause(node string) error {
	_, err := c.dc(context.Background(), time.Minute, "pause", node)
	return err
}

// Resume implements Driver; resuming a node that is not paused is not an error.
func (c *Compose) Resume(node string) error {
	id, err := c.container(node)
	if err != nil {
		return err
	}
	state, _ := run(context.Background(), time.Minute, "docker", "inspect", "-f", "{{.State.Paused}}", id)
	if state != "true" {
		return nil
	}
	_, err = c.dc(context.Background(), time.Minute, "unpause", node)
	return err
}

// Running implements Driver.
func (c *Compose) Running(node string) bool {
	id, err := c.container(node)
	if err != nil {
		return false
	}
	state, err := run(context.Background(), time.Minute, "docker", "inspect", "-f", "{{.State.Running}}", id)
	return err == nil && state == "true"
}

// SetLink implements Driver: not supported (docker can only cut a container off as a whole).
func (c *Compose) SetLink(src, dst string, f proxy.Fault) error {
	return fmt.Errorf("%w: per-link faults (%s->%s)", ErrUnsupported, src, dst)
}

// Isolate implements Driver with `docker network disconnect`.
func (c *Compose) Isolate(node string) error {
	id, err := c.container(node)
	if err != nil {
		return err
	}
	ip, _ := run(context.Background(), time.Minute, "docker", "inspect", "-f",
		fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, c.network), id)
	if _, err := run(context.Background(), time.Minute, "docker", "network", "disconnect", c.network, id); err != nil {
		return err
	}
	c.mu.Lock()
	c.isolated[node] = ip
	c.mu.Unlock()
	return nil
}

// Rejoin implements Driver with `docker network connect`, keeping the service alias (and the old
// IP when docker allows it).
func (c *Compose) Rejoin(node string) error {
	c.mu.Lock()
	ip, ok := c.isolated[node]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	id, err := c.container(node)
	if err != nil {
		return err
	}
	args := []string{"network", "connect", "--alias", node}
	if ip != "" {
		if _, err := run(context.Background(), time.Minute, "docker", append(args, "--ip", ip, c.network, id)...); err == nil {
			c.mu.Lock()
			delete(c.isolated, node)
			c.mu.Unlock()
			return nil
		}
	}
	if _, err := run(context.Background(), time.Minute, "docker", append(args, c.network, id)...); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.isolated, node)
	c.mu.Unlock()
	return nil
}

// HealNetwork implements Driver.
func (c *Compose) HealNetwork() error {
	var errs []error
	for _, n := range c.Nodes() {
		errs = append(errs, c.Rejoin(n))
	}
	return errors.Join(errs...)
}

// AddNode implements Driver: not supported.
func (c *Compose) AddNode(context.Context) (string, error) {
	return "", fmt.Errorf("%w: adding nodes", ErrUnsupported)
}

// Replace implements Driver: not supported.
func (c *Compose) Replace(context.Context, string) (string, error) {
	return "", fmt.Errorf("%w: replacing nodes", ErrUnsupported)
}

// LogPaths implements Driver.
func (c *Compose) LogPaths() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for k, v := range c.logs {
		out[k] = v
	}
	return out
}

// Collect implements Driver: `docker logs` of every container into the run directory.
func (c *Compose) Collect(ctx context.Context) error {
	var errs []error
	for _, n := range c.Nodes() {
		id, err := c.container(n)
		if err != nil {
			continue
		}
		dir := filepath.Join(c.opts.Dir, "nodes", n)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		path := filepath.Join(dir, "cairnd.log")
		f, err := os.Create(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		cmd := exec.CommandContext(cctx, "docker", "logs", id)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Run(); err != nil {
			errs = append(errs, fmt.Errorf("driver: docker logs %s: %w", n, err))
		}
		cancel()
		f.Close()
		c.mu.Lock()
		c.logs[n] = path
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Close implements Driver: the project is taken down with its volumes (keepData is not
// supported: the data lives in docker volumes).
func (c *Compose) Close(keepData bool) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.conns.closeAll()
	_, err := c.dc(context.Background(), 3*time.Minute, "down", "-v", "--remove-orphans")
	return err
}
