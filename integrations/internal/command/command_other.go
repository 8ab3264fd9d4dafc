//go:build !unix

package command

import (
	"errors"
	"os"
	"os/exec"
)

// setProcessGroup is a no-op where process groups are not available:
// cancellation kills the child only.
func setProcessGroup(cmd *exec.Cmd) {}

// executable reports whether p has an execute bit.
func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&0o111 == 0 {
		return errors.New("not executable")
	}
	return nil
}
