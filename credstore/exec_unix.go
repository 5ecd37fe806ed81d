//go:build unix

package credstore

import (
	"os/exec"
	"syscall"
)

// killProcessGroup runs the command in a process group of its own and
// makes a timeout kill the whole group, so that a shell script's children
// do not outlive it.
func killProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
