package driver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// process is one child process in its own process group. Signals go to the whole group, and the
// child dies with the harness (PR_SET_PDEATHSIG) even if the harness is killed with SIGKILL.
type process struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

// spawner starts every child from one OS thread that lives as long as the harness: the parent
// death signal fires when the *thread* that forked the child exits, so forking from arbitrary
// goroutines (whose threads Go may retire) could kill children early.
var spawner = sync.OnceValue(func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: this thread is never retired
		for f := range ch {
			f()
		}
	}()
	return ch
})

func startProcess(bin string, args, env []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("driver: open log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	errCh := make(chan error, 1)
	spawner() <- func() { errCh <- cmd.Start() }
	if err := <-errCh; err != nil {
		logf.Close()
		return nil, fmt.Errorf("driver: start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *process) signal(sig syscall.Signal) error {
	if !p.alive() {
		return errors.New("driver: process is not running")
	}
	// The negative pid addresses the process group (Setpgid made the child its leader).
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("driver: signal %v: %w", sig, err)
	}
	return nil
}

// kill sends SIGKILL to the group and waits (bounded) until the child is reaped.
func (p *process) kill() error {
	if !p.alive() {
		return nil
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		return errors.New("driver: process not reaped 10 s after SIGKILL")
	}
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	return nil
}

// stop sends SIGTERM (continuing a paused child first) and kills after timeout.
func (p *process) stop(timeout time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = p.signal(syscall.SIGCONT)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return p.kill()
	}
}

func (p *process) pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
	return nil
}

func (p *process) resume() error {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	return p.signal(syscall.SIGCONT)
}

func (p *process) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused && p.alive()
}
