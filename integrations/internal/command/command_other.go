//go:build !unix

package command

import "os/exec"

// setProcessGroup is a no-op where process groups are not available:
// cancellation kills the child only.
func setProcessGroup(cmd *exec.Cmd) {}
