//go:build unix

package command

import (
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// setProcessGroup puts the child in a process group of its own and makes
// cancellation kill the whole group, so a shell script's children die with it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// executable reports whether this process may execute p (access(2) with
// X_OK: for root, some execute bit must be set).
func executable(p string) error { return unix.Access(p, unix.X_OK) }
