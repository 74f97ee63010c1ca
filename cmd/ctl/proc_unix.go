//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup puts a dev node in its own process group, so that Ctrl-C in the terminal
// reaches only cairnctl, which then stops the nodes in order (SIGTERM, then SIGKILL).
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
